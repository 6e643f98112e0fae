//! PostgreSQL SQL text -> [`Classification`]: a cheap token path, then per-statement dispatch.
//!
//! # How a text is classified
//! 1. The text is tokenized with sqlparser's PostgreSQL tokenizer (strings, `$$` quotes, nested
//!    comments are handled there); a tokenizer error is Write / ParseError.
//! 2. Cheap path, for a text holding one statement: a first keyword that always writes
//!    (INSERT, UPDATE, DDL, ...) answers Write at once (the fail-closed direction, no parse
//!    needed; `CREATE TEMP ...` answers Pin); a `SELECT` whose tokens contain no `(`, no `FOR`
//!    and no `INTO` answers Read. Such a SELECT calls no function, takes no lock and creates no
//!    table, so it cannot write; if it is malformed, the server reports the syntax error
//!    wherever it runs.
//! 3. Otherwise every `;`-separated statement is classified by its first keyword. Queries
//!    (SELECT / WITH / VALUES / TABLE) must parse with sqlparser and pass the checks in
//!    [`super::pg_query`] to be Read; statements that always write are classified from their
//!    keyword (no parse); transaction, SET/RESET, EXPLAIN, COPY, DECLARE are read from tokens.
//!    An unknown first keyword is parsed: Write / Unknown when it parses, Write / ParseError
//!    when it does not.
//! 4. The statements are combined: all Read -> Read; any Pin -> Pin; only SessionSet and Read
//!    -> SessionSet; a `SET switchyard.route` among others -> Write / Unknown; otherwise Write
//!    with the reason of the first statement that is not Read.
//!
//! # Function calls
//! See [`super::pg_functions`]: a read-only query may call only known-safe built-ins; any other
//! function (every user-defined function, which may be VOLATILE and write) sends it to the
//! primary with [`Reason::WriteFunction`]. Session advisory locks and `set_config` pin.
//!
//! # Choices worth knowing
//! - `COMMIT PREPARED` / `ROLLBACK PREPARED` are Write / Transaction (they must run on the
//!   primary and cannot run inside a transaction block), not TxnControl.
//! - `DECLARE ... CURSOR WITH HOLD` is Pin / SqlPrepare (a named server-side object outliving the
//!   transaction). A plain `DECLARE` takes the class of its query (Read if read-only).
//!   `FETCH` / `MOVE` / `CLOSE` are TxnControl: they belong wherever the cursor lives.
//! - `EXPLAIN` without `ANALYZE` is Read whatever it explains (nothing executes); with `ANALYZE`
//!   it takes the class of the explained statement.
//! - `COPY ... TO STDOUT` is Read when its table or query is; `COPY ... TO 'file'` / `PROGRAM`
//!   is Write (the file belongs on the primary); `COPY ... FROM` is Write.
//! - `SELECT ... INTO TEMP t` and `CREATE TABLE pg_temp.t` pin like `CREATE TEMP TABLE`.

use super::cls;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::hint::parse_leading_hint;
use super::pg_functions::{is_kw, matching_paren};
use super::pg_primary_state::touches_primary_state;
use super::pg_query::{classify_query, parse_one};
use super::{Classification, Intent, Reason, RouteOverride};

fn kw_at(toks: &[Token], i: usize, kw: &str) -> bool {
    toks.get(i).is_some_and(|t| is_kw(t, kw))
}

/// Upper-cased first keyword of a statement, if it starts with an unquoted word.
fn first_keyword(toks: &[Token]) -> Option<String> {
    match toks.first()? {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Classifies one simple-Query or Parse text (may hold several statements).
pub fn classify(sql: &str, extra_write_functions: &[String]) -> Classification {
    let mut c = match significant_tokens(sql) {
        Some(toks) => cheap_path(&toks).unwrap_or_else(|| full_path(&toks, extra_write_functions)),
        None => cls(Intent::Write, Reason::ParseError),
    };
    c.hint = parse_leading_hint(sql);
    c
}

/// Tokens without whitespace and comments; `None` when the text does not tokenize.
pub(crate) fn significant_tokens(sql: &str) -> Option<Vec<Token>> {
    let dialect = PostgreSqlDialect {};
    let mut toks = Tokenizer::new(&dialect, sql).tokenize().ok()?;
    toks.retain(|t| !matches!(t, Token::Whitespace(_)));
    Some(toks)
}

/// Non-empty `;`-separated statements.
fn statements(toks: &[Token]) -> Vec<&[Token]> {
    toks.split(|t| *t == Token::SemiColon)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The fast answer for a single statement, when tokens alone settle it.
pub(crate) fn cheap_path(toks: &[Token]) -> Option<Classification> {
    let stmts = statements(toks);
    let [stmt] = stmts.as_slice() else {
        return None;
    };
    if let Some(c) = always_writes(stmt) {
        return Some(c);
    }
    let plain_select = kw_at(stmt, 0, "SELECT")
        && !stmt
            .iter()
            .any(|t| *t == Token::LParen || is_kw(t, "FOR") || is_kw(t, "INTO"));
    (plain_select && !touches_primary_state(stmt)).then(|| cls(Intent::Read, Reason::Read))
}

/// The full path: classify each statement and combine.
pub(crate) fn full_path(toks: &[Token], extra: &[String]) -> Classification {
    let parts: Vec<Classification> = statements(toks)
        .into_iter()
        .map(|s| classify_statement(s, extra))
        .collect();
    super::combine_statements(&parts)
}

/// Statements whose first keyword means Write whatever follows (or Pin for temp objects).
fn always_writes(toks: &[Token]) -> Option<Classification> {
    let kw = first_keyword(toks)?;
    let reason = match kw.as_str() {
        "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "TRUNCATE" | "CALL" | "DO" | "LOCK"
        | "VACUUM" | "ANALYZE" | "ANALYSE" | "CLUSTER" | "REINDEX" | "REFRESH" | "GRANT"
        | "REVOKE" | "COMMENT" | "SECURITY" | "CHECKPOINT" | "NOTIFY" | "REASSIGN" | "LOAD" => {
            Reason::Write
        }
        "ALTER" | "DROP" | "IMPORT" => Reason::Ddl,
        "CREATE" => return Some(create(toks)),
        _ => return None,
    };
    Some(cls(Intent::Write, reason))
}

/// `CREATE [OR REPLACE] [GLOBAL|LOCAL] TEMP|TEMPORARY ...` or an object in `pg_temp` pins.
fn create(toks: &[Token]) -> Classification {
    let mut temp = false;
    for t in &toks[1..] {
        if is_kw(t, "TEMP") || is_kw(t, "TEMPORARY") {
            temp = true;
        } else if !["OR", "REPLACE", "GLOBAL", "LOCAL", "UNLOGGED", "RECURSIVE"]
            .iter()
            .any(|k| is_kw(t, k))
        {
            break;
        }
    }
    let pg_temp = toks.windows(2).any(|w| {
        matches!(&w[0], Token::Word(x) if x.value.eq_ignore_ascii_case("pg_temp"))
            && w[1] == Token::Period
    });
    if temp || pg_temp {
        cls(Intent::Pin, Reason::TempTable)
    } else {
        cls(Intent::Write, Reason::Ddl)
    }
}

/// Classifies one non-empty statement (significant tokens, no `;`). A read of per-instance state
/// ([`super::pg_primary_state`]) goes to the primary.
pub(crate) fn classify_statement(toks: &[Token], extra: &[String]) -> Classification {
    let c = statement_class(toks, extra);
    if c.intent == Intent::Read && touches_primary_state(toks) {
        return cls(Intent::Write, Reason::PrimaryState);
    }
    c
}

fn statement_class(toks: &[Token], extra: &[String]) -> Classification {
    if toks.first() == Some(&Token::LParen) {
        return classify_query(toks, extra);
    }
    if let Some(c) = always_writes(toks) {
        return c;
    }
    let txn = cls(Intent::TxnControl, Reason::Transaction);
    let Some(kw) = first_keyword(toks) else {
        return unknown(toks);
    };
    match kw.as_str() {
        "SELECT" | "WITH" | "VALUES" | "TABLE" => classify_query(toks, extra),
        "EXPLAIN" => explain(toks, extra),
        "COPY" => copy(toks, extra),
        "SHOW" | "DISCARD" if toks.len() == 1 => cls(Intent::Write, Reason::ParseError),
        "SHOW" => cls(Intent::Read, Reason::Read),
        "BEGIN" | "START" => begin(toks),
        "COMMIT" | "ROLLBACK" if kw_at(toks, 1, "PREPARED") => {
            cls(Intent::Write, Reason::Transaction)
        }
        "COMMIT" | "ROLLBACK" | "END" | "ABORT" | "SAVEPOINT" | "RELEASE" => txn,
        "PREPARE" if kw_at(toks, 1, "TRANSACTION") => txn,
        "PREPARE" | "EXECUTE" | "DEALLOCATE" => cls(Intent::Pin, Reason::SqlPrepare),
        "SET" => set(toks),
        "RESET" => reset(toks),
        "DISCARD" => cls(Intent::SessionSet, Reason::Session),
        "LISTEN" | "UNLISTEN" => cls(Intent::Pin, Reason::Listen),
        "DECLARE" => declare(toks, extra),
        "FETCH" | "MOVE" | "CLOSE" => txn,
        _ => unknown(toks),
    }
}

/// Not a statement we know: Unknown if sqlparser accepts it, ParseError if not.
fn unknown(toks: &[Token]) -> Classification {
    match parse_one(toks) {
        Some(_) => cls(Intent::Write, Reason::Unknown),
        None => cls(Intent::Write, Reason::ParseError),
    }
}

/// `BEGIN [WORK|TRANSACTION] [modes]` / `START TRANSACTION [modes]`; `read_only` (a replica may
/// run it) for `READ ONLY` without `ISOLATION LEVEL SERIALIZABLE`.
fn begin(toks: &[Token]) -> Classification {
    let bad = cls(Intent::Write, Reason::ParseError);
    let mut i = 1;
    if kw_at(toks, 0, "START") {
        if !kw_at(toks, 1, "TRANSACTION") {
            return bad;
        }
        i = 2;
    } else if kw_at(toks, 1, "WORK") || kw_at(toks, 1, "TRANSACTION") {
        i = 2;
    }
    let (mut read_only, mut read_write) = (false, false);
    while i < toks.len() {
        let at = |k: usize, kw: &str| kw_at(toks, i + k, kw);
        if toks[i] == Token::Comma {
            i += 1;
        } else if at(0, "ISOLATION") && at(1, "LEVEL") {
            if at(2, "SERIALIZABLE") {
                // A hot standby refuses serializable transactions: the primary, even READ ONLY.
                read_write = true;
                i += 3;
            } else if (at(2, "REPEATABLE") && at(3, "READ"))
                || (at(2, "READ") && (at(3, "COMMITTED") || at(3, "UNCOMMITTED")))
            {
                i += 4;
            } else {
                return bad;
            }
        } else if at(0, "READ") && at(1, "ONLY") {
            read_only = true;
            i += 2;
        } else if at(0, "READ") && at(1, "WRITE") {
            read_write = true;
            i += 2;
        } else if at(0, "DEFERRABLE") {
            i += 1;
        } else if at(0, "NOT") && at(1, "DEFERRABLE") {
            i += 2;
        } else {
            return bad;
        }
    }
    cls(
        Intent::Begin {
            read_only: read_only && !read_write,
        },
        Reason::Transaction,
    )
}

/// Dotted name at the start of `toks` (`a`, `a.b`), lower-cased, and the tokens used.
fn dotted_name(toks: &[Token]) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut i = 0;
    loop {
        let Some(Token::Word(w)) = toks.get(i) else {
            return None;
        };
        name.push_str(&w.value.to_ascii_lowercase());
        i += 1;
        if toks.get(i) == Some(&Token::Period) {
            name.push('.');
            i += 1;
        } else {
            return Some((name, i));
        }
    }
}

const ROUTE_SETTING: &str = "switchyard.route";

/// `SET ...`: session state, transaction-local state, or the proxy's own route setting.
fn set(toks: &[Token]) -> Classification {
    let session = cls(Intent::SessionSet, Reason::Session);
    let txn = cls(Intent::TxnControl, Reason::Transaction);
    // The current transaction's mode: no session state, and outside a transaction block a
    // standby refuses what the primary only warns about (read-write mode, serializable), so it
    // goes where a transaction runs, else to the primary.
    let txn_mode = cls(Intent::Write, Reason::Transaction);
    let is_txn_mode = |rest: &[Token]| {
        dotted_name(rest).is_some_and(|(n, _)| {
            matches!(
                n.as_str(),
                "transaction_isolation" | "transaction_read_only" | "transaction_deferrable"
            )
        })
    };
    let mut rest = &toks[1..];
    if kw_at(rest, 0, "LOCAL") {
        if dotted_name(&rest[1..]).is_some_and(|(n, _)| n == ROUTE_SETTING) {
            return cls(Intent::Write, Reason::Unknown);
        }
        if is_txn_mode(&rest[1..]) {
            return txn_mode;
        }
        return txn;
    }
    if kw_at(rest, 0, "TRANSACTION") {
        return txn_mode;
    }
    if kw_at(rest, 0, "CONSTRAINTS") {
        return txn;
    }
    if kw_at(rest, 0, "SESSION") {
        if kw_at(rest, 1, "CHARACTERISTICS") || kw_at(rest, 1, "AUTHORIZATION") {
            return session;
        }
        rest = &rest[1..];
    }
    if is_txn_mode(rest) {
        return txn_mode;
    }
    let special = (kw_at(rest, 0, "TIME") && kw_at(rest, 1, "ZONE"))
        || (kw_at(rest, 0, "XML") && kw_at(rest, 1, "OPTION"))
        || kw_at(rest, 0, "NAMES")
        || kw_at(rest, 0, "ROLE")
        || kw_at(rest, 0, "SCHEMA");
    if special && rest.len() > 1 {
        return session;
    }
    let Some((name, used)) = dotted_name(rest) else {
        return cls(Intent::Write, Reason::ParseError);
    };
    let assign = rest.get(used) == Some(&Token::Eq) || kw_at(rest, used, "TO");
    let value = rest.get(used + 1..).unwrap_or(&[]);
    if !assign || value.is_empty() {
        return cls(Intent::Write, Reason::ParseError);
    }
    if name == ROUTE_SETTING {
        return proxy_route(value);
    }
    session
}

/// The value of `SET switchyard.route`: primary | replica | auto | default, quotes optional.
fn proxy_route(value: &[Token]) -> Classification {
    let text = match value {
        [Token::Word(w)] => w.value.to_ascii_lowercase(),
        [Token::SingleQuotedString(s)] => s.to_ascii_lowercase(),
        _ => return cls(Intent::Write, Reason::Unknown),
    };
    let route = match text.trim() {
        "primary" => RouteOverride::Primary,
        "replica" => RouteOverride::Replica,
        "auto" | "default" => RouteOverride::Auto,
        _ => return cls(Intent::Write, Reason::Unknown),
    };
    cls(Intent::ProxyRoute(route), Reason::Session)
}

/// `RESET name` / `RESET ALL`; `RESET switchyard.route` goes back to automatic routing.
fn reset(toks: &[Token]) -> Classification {
    match dotted_name(&toks[1..]) {
        Some((name, used)) if name == ROUTE_SETTING && used + 1 == toks.len() => {
            cls(Intent::ProxyRoute(RouteOverride::Auto), Reason::Session)
        }
        Some(_) => cls(Intent::SessionSet, Reason::Session),
        None => cls(Intent::Write, Reason::ParseError),
    }
}

/// Statements EXPLAIN accepts.
fn explainable(toks: &[Token]) -> bool {
    toks.first() == Some(&Token::LParen)
        || [
            "SELECT", "WITH", "VALUES", "TABLE", "INSERT", "UPDATE", "DELETE", "MERGE", "EXECUTE",
            "DECLARE", "CREATE",
        ]
        .iter()
        .any(|k| kw_at(toks, 0, k))
}

/// `EXPLAIN [ANALYZE] [VERBOSE] stmt` / `EXPLAIN (option [value], ...) stmt`.
fn explain(toks: &[Token], extra: &[String]) -> Classification {
    let mut i = 1;
    let mut analyze = false;
    if toks.get(1) == Some(&Token::LParen) {
        let Some(close) = matching_paren(toks, 1) else {
            return cls(Intent::Write, Reason::ParseError);
        };
        for opt in toks[2..close].split(|t| *t == Token::Comma) {
            if kw_at(opt, 0, "ANALYZE") || kw_at(opt, 0, "ANALYSE") {
                let off = match opt.get(1) {
                    None => false,
                    Some(Token::Word(w)) => ["false", "off", "no"]
                        .iter()
                        .any(|f| w.value.eq_ignore_ascii_case(f)),
                    Some(Token::SingleQuotedString(s)) => ["false", "off", "no", "0"]
                        .iter()
                        .any(|f| s.eq_ignore_ascii_case(f)),
                    Some(Token::Number(n, _)) => n == "0",
                    Some(_) => false,
                };
                analyze = !off;
            }
        }
        i = close + 1;
    } else {
        if kw_at(toks, i, "ANALYZE") || kw_at(toks, i, "ANALYSE") {
            analyze = true;
            i += 1;
        }
        if kw_at(toks, i, "VERBOSE") {
            i += 1;
        }
    }
    let inner = &toks[i.min(toks.len())..];
    if inner.is_empty() {
        return cls(Intent::Write, Reason::ParseError);
    }
    if !explainable(inner) {
        return cls(Intent::Write, Reason::Unknown);
    }
    let c = classify_statement(inner, extra);
    if c.reason == Reason::ParseError {
        return c;
    }
    if !analyze {
        return cls(Intent::Read, Reason::Read);
    }
    match c.intent {
        Intent::Read | Intent::Write | Intent::Pin => c,
        _ => cls(Intent::Write, Reason::Unknown),
    }
}

/// `COPY table|(query) FROM ... | TO STDOUT | TO 'file' | TO PROGRAM ...`.
fn copy(toks: &[Token], extra: &[String]) -> Classification {
    let write = cls(Intent::Write, Reason::Write);
    let bad = cls(Intent::Write, Reason::ParseError);
    let mut i = if kw_at(toks, 1, "BINARY") { 2 } else { 1 };
    let mut inner = None;
    if toks.get(i) == Some(&Token::LParen) {
        let Some(close) = matching_paren(toks, i) else {
            return bad;
        };
        if close == i + 1 {
            return bad;
        }
        inner = Some(&toks[i + 1..close]);
        i = close + 1;
    } else {
        // Skip `table [(columns)]` to the first FROM / TO outside parentheses.
        let mut depth = 0usize;
        while let Some(t) = toks.get(i) {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                _ if depth == 0 && (is_kw(t, "FROM") || is_kw(t, "TO")) => break,
                _ => {}
            }
            i += 1;
        }
    }
    if kw_at(toks, i, "FROM") {
        return write;
    }
    if !kw_at(toks, i, "TO") {
        return bad;
    }
    if !kw_at(toks, i + 1, "STDOUT") {
        return write;
    }
    let Some(query) = inner else {
        return cls(Intent::Read, Reason::Read);
    };
    let c = classify_statement(query, extra);
    match c.intent {
        Intent::Read | Intent::Write | Intent::Pin => c,
        _ => cls(Intent::Write, Reason::Unknown),
    }
}

/// `DECLARE name [options] CURSOR [WITH|WITHOUT HOLD] FOR query`.
fn declare(toks: &[Token], extra: &[String]) -> Classification {
    let bad = cls(Intent::Write, Reason::ParseError);
    let Some(cursor) = toks.iter().position(|t| is_kw(t, "CURSOR")) else {
        return bad;
    };
    let mut i = cursor + 1;
    let mut hold = false;
    if kw_at(toks, i, "WITH") && kw_at(toks, i + 1, "HOLD") {
        hold = true;
        i += 2;
    } else if kw_at(toks, i, "WITHOUT") && kw_at(toks, i + 1, "HOLD") {
        i += 2;
    }
    if !kw_at(toks, i, "FOR") || i + 1 >= toks.len() {
        return bad;
    }
    if hold {
        return cls(Intent::Pin, Reason::SqlPrepare);
    }
    let c = classify_statement(&toks[i + 1..], extra);
    match c.intent {
        Intent::Read | Intent::Write | Intent::Pin => c,
        _ => cls(Intent::Write, Reason::Unknown),
    }
}
