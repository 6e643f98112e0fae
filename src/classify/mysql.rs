//! MySQL/MariaDB SQL text -> [`Classification`]: a cheap token path, then per-statement dispatch.
//!
//! # How a text is classified
//! 1. The text is tokenized with sqlparser's MySQL tokenizer: `#`, `-- ` and `/* */` comments,
//!    backtick identifiers, `"` strings and `\'` escapes. Executable comments are SQL that the
//!    server runs, so their content is part of the statement: sqlparser expands `/*! ... */`
//!    and `/*!50100 ... */`, and MariaDB's `/*M! ... */` is expanded here. `@'name'` /
//!    `` @`name` `` become one `@name` word. A tokenizer error is Write / ParseError.
//! 2. Cheap path, for a text holding one statement: a first keyword that always writes
//!    (INSERT, UPDATE, DDL, ...) answers Write at once (`CREATE TEMPORARY`, `LOCK TABLES` answer
//!    Pin); a `SELECT` whose tokens hold no `(`, `FOR`, `INTO`, `LOCK`, `:=`, `@@` variable,
//!    `SQL_CALC_FOUND_ROWS` or sequence word answers Read: it calls no function, takes no lock
//!    and sets no variable, so it cannot write.
//! 3. Otherwise every `;`-separated statement is classified by its first keyword: queries go
//!    through [`super::mysql_query`] (parse plus token checks); writes are known from their
//!    keyword; transaction, SET, USE, SHOW, EXPLAIN, LOAD, FLUSH ... are read from tokens. An
//!    unknown first keyword is Write / Unknown when sqlparser parses it, else Write / ParseError.
//! 4. The statements are combined as for PostgreSQL: all Read -> Read; any Pin -> Pin; only
//!    SessionSet and Read -> SessionSet; a route SET among others -> Write / Unknown; otherwise
//!    Write with the reason of the first statement that is not Read.
//!
//! # Choices worth knowing
//! - User variables travel by replay: `SET @x = <constant>` is SessionSet / UserVariable. A
//!   value the replay could not reproduce (a function other than a few deterministic ones, a
//!   subquery, a `?` placeholder, a clock word, a global or server-specific `@@` variable) pins:
//!   Pin / UserVariable, as do `SELECT ... INTO @x`, `@x := ...` and `EXPLAIN ... INTO @x`.
//!   Reading `@x` is a plain read.
//! - mysqldump's `/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */` is
//!   SessionSet / UserVariable: session system variables are themselves replayed (in order),
//!   so the value read on any backend is the same.
//! - `SET TRANSACTION ...` (no scope) only shapes the next transaction: TxnControl.
//!   `SET SESSION TRANSACTION ...` lasts for the session: SessionSet. `SET GLOBAL ...`,
//!   `SET PERSIST ...`, `SET @@global.x = ...` are Write / Session (primary only). A scope
//!   keyword carries over to later assignments of the same SET, as in MySQL.
//! - Session variables that only make sense on the primary (`gtid_next`, `insert_id`,
//!   `pseudo_thread_id`, ...) are Write / Session, not replayed.
//! - `GET_LOCK()` pins (AdvisoryLock); `RELEASE_LOCK`, `IS_FREE_LOCK`, `LAST_INSERT_ID()`,
//!   `FOUND_ROWS()`, `ROW_COUNT()`, sequences and `@@last_insert_id`-style reads are
//!   Write / WriteFunction. `SHOW WARNINGS` / `SHOW ERRORS` / `GET DIAGNOSTICS` read the
//!   diagnostics of the previous statement: Write / Session (`GET DIAGNOSTICS` into user
//!   variables: Pin / UserVariable). `HANDLER` is Write / Session. Which statements read
//!   diagnostics at all is told apart by [`super::mysql_diag`].
//! - `LOCK TABLES`, `UNLOCK TABLES`, `FLUSH TABLES ... WITH READ LOCK | FOR EXPORT`,
//!   `LOCK INSTANCE FOR BACKUP` and MariaDB `BACKUP STAGE | LOCK` pin (LockTables).
//! - `SET @@switchyard_route`, `SET switchyard_route`, `SET @switchyard_route` (any case, value
//!   primary | replica | auto | default, quotes optional) are [`Intent::ProxyRoute`].
//! - sql_mode `NO_BACKSLASH_ESCAPES` changes where a string ends. When a text with a backslash
//!   would be routed away from the primary and tokenizing it without backslash escapes gives
//!   another answer, it is Write / ParseError.

use super::cls;
use sqlparser::dialect::{Dialect, MySqlDialect};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace, Word};

use super::hint::parse_leading_hint_mysql;
use super::mysql_functions::{scan, set};
use super::mysql_query::{classify_query, explain, parse_one, show};
use super::pg_functions::{is_kw, CallVerdict};
use super::{Classification, Intent, Reason};

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

/// Classifies one COM_QUERY or COM_STMT_PREPARE text (may hold several statements).
pub fn classify(sql: &str, extra_write_functions: &[String]) -> Classification {
    let mut c = classify_tokens(significant_tokens(sql), extra_write_functions);
    let leaves_primary = !matches!(c.intent, Intent::Write | Intent::Pin);
    if leaves_primary && sql.contains('\\') {
        let alt = tokenize(&NoBackslashEscapes, sql);
        if alt.is_some() && classify_tokens(alt, extra_write_functions) != c {
            c = cls(Intent::Write, Reason::ParseError);
        }
    }
    c.hint = parse_leading_hint_mysql(sql);
    c
}

fn classify_tokens(toks: Option<Vec<Token>>, extra: &[String]) -> Classification {
    match toks {
        Some(toks) => cheap_path(&toks).unwrap_or_else(|| full_path(&toks, extra)),
        None => cls(Intent::Write, Reason::ParseError),
    }
}

/// The MySQL tokenizer with sql_mode `NO_BACKSLASH_ESCAPES` (`\` is an ordinary character).
#[derive(Debug)]
struct NoBackslashEscapes;

impl Dialect for NoBackslashEscapes {
    fn dialect(&self) -> std::any::TypeId {
        std::any::TypeId::of::<MySqlDialect>()
    }
    fn is_identifier_start(&self, ch: char) -> bool {
        MySqlDialect {}.is_identifier_start(ch)
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        MySqlDialect {}.is_identifier_part(ch)
    }
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        MySqlDialect {}.is_delimited_identifier_start(ch)
    }
    fn supports_string_literal_backslash_escape(&self) -> bool {
        false
    }
    fn supports_numeric_prefix(&self) -> bool {
        true
    }
    fn supports_literal_prefix_in_qualified_name(&self) -> bool {
        true
    }
    fn requires_single_line_comment_whitespace(&self) -> bool {
        true
    }
    fn supports_hash_comment(&self) -> bool {
        true
    }
    fn supports_multiline_comment_hints(&self) -> bool {
        true
    }
    fn ignores_wildcard_escapes(&self) -> bool {
        true
    }
}

/// Tokens without whitespace and comments; `None` when the text does not tokenize.
pub(crate) fn significant_tokens(sql: &str) -> Option<Vec<Token>> {
    tokenize(&MySqlDialect {}, sql)
}

fn tokenize(dialect: &dyn Dialect, sql: &str) -> Option<Vec<Token>> {
    let raw = Tokenizer::new(dialect, sql).tokenize().ok()?;
    let mut toks: Vec<Token> = Vec::with_capacity(raw.len());
    for t in raw {
        match t {
            // MariaDB executable comment: `/*M! ... */` / `/*M!100100 ... */`.
            Token::Whitespace(Whitespace::MultiLineComment(c)) if c.starts_with("M!") => {
                let body = c[2..].trim_start_matches(|ch: char| ch.is_ascii_digit());
                toks.extend(tokenize(dialect, body)?);
            }
            Token::Whitespace(_) => {}
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s)
                if toks.last() == Some(&Token::AtSign) =>
            {
                toks.pop();
                toks.push(user_variable_word(&s));
            }
            Token::Word(w) if w.quote_style.is_some() && toks.last() == Some(&Token::AtSign) => {
                toks.pop();
                toks.push(user_variable_word(&w.value));
            }
            other => toks.push(other),
        }
    }
    Some(toks)
}

/// `@'name'` / `` @`name` `` as the single word `@name`.
fn user_variable_word(name: &str) -> Token {
    Token::Word(Word {
        value: format!("@{name}"),
        quote_style: None,
        keyword: Keyword::NoKeyword,
    })
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
        && !stmt.iter().any(|t| match t {
            Token::LParen | Token::Assignment | Token::AtSign | Token::AtAt => true,
            Token::Word(w) if w.value.starts_with("@@") => true,
            _ => [
                "FOR",
                "INTO",
                "LOCK",
                "SQL_CALC_FOUND_ROWS",
                "NEXTVAL",
                "CURRVAL",
                "LASTVAL",
            ]
            .iter()
            .any(|k| is_kw(t, k)),
        });
    plain_select.then(|| cls(Intent::Read, Reason::Read))
}

/// The full path: classify each statement and combine.
pub(crate) fn full_path(toks: &[Token], extra: &[String]) -> Classification {
    let parts: Vec<Classification> = statements(toks)
        .into_iter()
        .map(|s| classify_statement(s, extra))
        .collect();
    super::combine_statements(&parts)
}

/// Statements whose first keyword settles them whatever follows.
fn always_writes(toks: &[Token]) -> Option<Classification> {
    let kw = first_keyword(toks)?;
    let (intent, reason) = match kw.as_str() {
        "INSERT" | "REPLACE" | "UPDATE" | "DELETE" | "TRUNCATE" | "GRANT" | "REVOKE"
        | "OPTIMIZE" | "REPAIR" | "CHECK" | "CHECKSUM" | "KILL" | "INSTALL" | "UNINSTALL"
        | "CHANGE" | "STOP" | "PURGE" | "RESET" | "SHUTDOWN" | "RESTART" | "CLONE" | "IMPORT"
        | "CACHE" | "BINLOG" => (Intent::Write, Reason::Write),
        "ALTER" | "RENAME" => (Intent::Write, Reason::Ddl),
        "CALL" => (Intent::Write, Reason::StoredProcedure),
        "XA" => (Intent::Write, Reason::Transaction),
        "HANDLER" => (Intent::Write, Reason::Session),
        "LOCK" | "UNLOCK" | "BACKUP" if toks.len() > 1 => (Intent::Pin, Reason::LockTables),
        "FLUSH" => return Some(flush(toks)),
        "LOAD" => return Some(load(toks)),
        "CREATE" => return Some(create(toks)),
        "DROP" => return Some(drop(toks)),
        _ => return None,
    };
    Some(cls(intent, reason))
}

/// `FLUSH TABLES [t, ...] WITH READ LOCK | FOR EXPORT` holds locks for the session: Pin.
fn flush(toks: &[Token]) -> Classification {
    let locks = toks
        .windows(3)
        .any(|w| is_kw(&w[0], "WITH") && is_kw(&w[1], "READ") && is_kw(&w[2], "LOCK"))
        || toks
            .windows(2)
            .any(|w| is_kw(&w[0], "FOR") && is_kw(&w[1], "EXPORT"));
    if locks {
        cls(Intent::Pin, Reason::LockTables)
    } else {
        cls(Intent::Write, Reason::Write)
    }
}

/// `LOAD DATA | XML [LOW_PRIORITY | CONCURRENT] [LOCAL] INFILE ...`, `LOAD INDEX INTO CACHE`.
fn load(toks: &[Token]) -> Classification {
    let infile = toks.iter().position(|t| is_kw(t, "INFILE"));
    let local = infile.is_some_and(|at| toks[..at].iter().any(|t| is_kw(t, "LOCAL")));
    if local {
        cls(Intent::Write, Reason::LocalInfile)
    } else {
        cls(Intent::Write, Reason::Write)
    }
}

/// `CREATE [OR REPLACE] TEMPORARY ...` pins; any other CREATE is DDL.
fn create(toks: &[Token]) -> Classification {
    for t in &toks[1..] {
        if is_kw(t, "TEMPORARY") {
            return cls(Intent::Pin, Reason::TempTable);
        }
        if !(is_kw(t, "OR") || is_kw(t, "REPLACE")) {
            break;
        }
    }
    cls(Intent::Write, Reason::Ddl)
}

/// `DROP PREPARE s` (SQL prepared statement), `DROP TEMPORARY TABLE` (pins), other DROP: DDL.
fn drop(toks: &[Token]) -> Classification {
    if kw_at(toks, 1, "PREPARE") {
        cls(Intent::Pin, Reason::SqlPrepare)
    } else if kw_at(toks, 1, "TEMPORARY") {
        cls(Intent::Pin, Reason::TempTable)
    } else {
        cls(Intent::Write, Reason::Ddl)
    }
}

/// Classifies one non-empty statement (significant tokens, no `;`).
pub(crate) fn classify_statement(toks: &[Token], extra: &[String]) -> Classification {
    if toks.first() == Some(&Token::LParen) {
        return classify_query(toks, extra);
    }
    if let Some(c) = always_writes(toks) {
        return c;
    }
    let txn = cls(Intent::TxnControl, Reason::Transaction);
    let bad = cls(Intent::Write, Reason::ParseError);
    let Some(kw) = first_keyword(toks) else {
        return unknown(toks);
    };
    match kw.as_str() {
        "SELECT" | "WITH" | "VALUES" | "TABLE" => classify_query(toks, extra),
        "EXPLAIN" | "DESCRIBE" | "DESC" => explain(toks, extra, 1, false),
        "ANALYZE" => {
            let table = ["TABLE", "TABLES", "NO_WRITE_TO_BINLOG", "LOCAL"];
            if table.iter().any(|k| kw_at(toks, 1, k)) {
                cls(Intent::Write, Reason::Write)
            } else {
                // MariaDB `ANALYZE [FORMAT=JSON] stmt` runs the statement.
                explain(toks, extra, 1, true)
            }
        }
        "SHOW" => show(toks, extra),
        "HELP" if toks.len() > 1 => cls(Intent::Read, Reason::Read),
        "USE" if toks.len() == 2 => cls(Intent::SessionSet, Reason::Session),
        "SET" => set(toks, extra),
        "BEGIN" => begin(toks),
        "START" if kw_at(toks, 1, "TRANSACTION") => start_transaction(toks),
        "START" if toks.len() > 1 => cls(Intent::Write, Reason::Write),
        "COMMIT" | "ROLLBACK" | "SAVEPOINT" => txn,
        "RELEASE" if kw_at(toks, 1, "SAVEPOINT") => txn,
        "PREPARE" | "EXECUTE" | "DEALLOCATE" if toks.len() > 1 => {
            cls(Intent::Pin, Reason::SqlPrepare)
        }
        "DO" if toks.len() > 1 => match scan(&toks[1..], extra) {
            CallVerdict::Pin(r) => cls(Intent::Pin, r),
            _ => cls(Intent::Write, Reason::Write),
        },
        "GET" if toks.iter().any(|t| is_kw(t, "DIAGNOSTICS")) => get_diagnostics(toks),
        "HELP" | "USE" | "START" | "RELEASE" | "PREPARE" | "EXECUTE" | "DEALLOCATE" | "DO" => bad,
        _ => unknown(toks),
    }
}

/// `GET [CURRENT | STACKED] DIAGNOSTICS ...` reads the previous statement's diagnostics; into
/// user variables (what a client outside a program can do) it sets values no replay could
/// reproduce: Pin / UserVariable, as `SELECT ... INTO @x`. Otherwise Write / Session.
fn get_diagnostics(toks: &[Token]) -> Classification {
    let into_user_variable = toks.iter().any(|t| match t {
        Token::AtSign => true,
        Token::Word(w) => w.value.starts_with('@'),
        _ => false,
    });
    if into_user_variable {
        cls(Intent::Pin, Reason::UserVariable)
    } else {
        cls(Intent::Write, Reason::Session)
    }
}

/// Not a statement we know: Unknown if sqlparser accepts it, ParseError if not.
fn unknown(toks: &[Token]) -> Classification {
    match parse_one(toks) {
        Some(_) => cls(Intent::Write, Reason::Unknown),
        None => cls(Intent::Write, Reason::ParseError),
    }
}

/// `BEGIN [WORK]`; MariaDB's `BEGIN NOT ATOMIC ...` compound statement is a program.
fn begin(toks: &[Token]) -> Classification {
    match toks {
        [_] => cls(Intent::Begin { read_only: false }, Reason::Transaction),
        [_, w] if is_kw(w, "WORK") => cls(Intent::Begin { read_only: false }, Reason::Transaction),
        [_, n, a, ..] if is_kw(n, "NOT") && is_kw(a, "ATOMIC") => {
            cls(Intent::Write, Reason::StoredProcedure)
        }
        _ => cls(Intent::Write, Reason::ParseError),
    }
}

/// `START TRANSACTION [WITH CONSISTENT SNAPSHOT | READ ONLY | READ WRITE] [, ...]`.
fn start_transaction(toks: &[Token]) -> Classification {
    let (mut read_only, mut read_write) = (false, false);
    let mut i = 2;
    while i < toks.len() {
        let at = |k: usize, kw: &str| kw_at(toks, i + k, kw);
        if toks[i] == Token::Comma {
            i += 1;
        } else if at(0, "WITH") && at(1, "CONSISTENT") && at(2, "SNAPSHOT") {
            i += 3;
        } else if at(0, "READ") && at(1, "ONLY") {
            read_only = true;
            i += 2;
        } else if at(0, "READ") && at(1, "WRITE") {
            read_write = true;
            i += 2;
        } else {
            return cls(Intent::Write, Reason::ParseError);
        }
    }
    cls(
        Intent::Begin {
            read_only: read_only && !read_write,
        },
        Reason::Transaction,
    )
}
