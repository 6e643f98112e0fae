//! Classifies MySQL/MariaDB queries (SELECT / WITH / VALUES / TABLE / `(`), EXPLAIN and SHOW.
//!
//! A query is Read only when sqlparser (MySQL dialect) parses it as a query whose body and CTEs
//! are SELECT/VALUES/TABLE and the token checks find no locking clause (`FOR UPDATE`,
//! `FOR SHARE`, `LOCK IN SHARE MODE`), no `INTO`, no data-modifying keyword, no `:=` and no call
//! or variable read that writes or pins (see [`super::mysql_functions`]). Valid MySQL that
//! sqlparser cannot parse (`INTO OUTFILE`, `LOCK IN SHARE MODE`, trailing `INTO @x`,
//! `NEXT VALUE FOR`) is never Read anyway; the token checks pick its reason.

use super::cls;
use sqlparser::ast::{Query, SetExpr, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::mysql::classify_statement;
use super::mysql_functions::scan;
use super::pg_functions::{is_kw, CallVerdict};
use super::{Classification, Intent, Reason};

fn kw_at(toks: &[Token], i: usize, kw: &str) -> bool {
    toks.get(i).is_some_and(|t| is_kw(t, kw))
}

/// Parses significant tokens as exactly one statement (MySQL dialect).
pub fn parse_one(toks: &[Token]) -> Option<Statement> {
    let dialect = MySqlDialect {};
    let mut parser = Parser::new(&dialect).with_tokens(toks.to_vec());
    let stmt = parser.parse_statement().ok()?;
    (parser.peek_token().token == Token::EOF).then_some(stmt)
}

/// `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE` anywhere in the tokens.
pub fn has_locking_clause(toks: &[Token]) -> bool {
    toks.windows(2)
        .any(|w| is_kw(&w[0], "FOR") && (is_kw(&w[1], "UPDATE") || is_kw(&w[1], "SHARE")))
        || toks.windows(4).any(|w| {
            is_kw(&w[0], "LOCK")
                && is_kw(&w[1], "IN")
                && is_kw(&w[2], "SHARE")
                && is_kw(&w[3], "MODE")
        })
}

/// Data-modifying keywords: `INSERT` / `REPLACE` that are not the string functions, `DELETE`,
/// `UPDATE` that is not part of `FOR UPDATE`.
fn has_dml_keyword(toks: &[Token]) -> bool {
    toks.iter().enumerate().any(|(i, t)| {
        let call = toks.get(i + 1) == Some(&Token::LParen);
        ((is_kw(t, "INSERT") || is_kw(t, "REPLACE")) && !call)
            || is_kw(t, "DELETE")
            || (is_kw(t, "UPDATE") && !(i > 0 && is_kw(&toks[i - 1], "FOR")))
    })
}

/// Where `SELECT ... INTO` sends its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Into {
    /// `INTO @a, @b`: user variables (session state).
    UserVariables,
    /// `INTO OUTFILE` / `INTO DUMPFILE` / `INTO local_var`.
    Other,
}

/// The `INTO` clause of a SELECT, if any.
fn select_into(toks: &[Token]) -> Option<Into> {
    let at = toks.iter().position(|t| is_kw(t, "INTO"))?;
    let mut targets = 0;
    let mut i = at + 1;
    loop {
        match toks.get(i) {
            Some(Token::Word(w)) if w.quote_style.is_none() && w.value.starts_with('@') => {
                if w.value.starts_with("@@") {
                    return Some(Into::Other);
                }
                targets += 1;
                i += 1;
            }
            _ => return Some(Into::Other),
        }
        match toks.get(i) {
            Some(Token::Comma) => i += 1,
            None => break,
            Some(t) if targets > 0 && (is_kw(t, "FROM") || is_kw(t, "FOR") || is_kw(t, "LOCK")) => {
                break
            }
            Some(_) => return Some(Into::Other),
        }
    }
    Some(Into::UserVariables)
}

fn set_expr_modifies(e: &SetExpr) -> Option<Reason> {
    match e {
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => None,
        SetExpr::Query(q) => query_modifies(q),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr_modifies(left).or_else(|| set_expr_modifies(right))
        }
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            Some(Reason::Write)
        }
    }
}

/// Why the query's structure writes, if it does (MySQL 8 allows `WITH ... UPDATE/DELETE`).
fn query_modifies(q: &Query) -> Option<Reason> {
    if let Some(with) = &q.with {
        for cte in &with.cte_tables {
            if query_modifies(&cte.query).is_some() {
                return Some(Reason::ModifyingCte);
            }
        }
    }
    set_expr_modifies(&q.body)
}

/// Classifies a query statement (first token SELECT, WITH, VALUES, TABLE or `(`).
pub fn classify_query(toks: &[Token], extra: &[String]) -> Classification {
    // MySQL 8 `TABLE t` is `SELECT * FROM t`; sqlparser does not parse it as a statement.
    let rewritten;
    let toks = if kw_at(toks, 0, "TABLE") {
        let mut v = Vec::with_capacity(toks.len() + 2);
        v.push(Token::make_keyword("SELECT"));
        v.push(Token::Mul);
        v.push(Token::make_keyword("FROM"));
        v.extend_from_slice(&toks[1..]);
        rewritten = v;
        &rewritten[..]
    } else {
        toks
    };

    let calls = scan(toks, extra);
    if let CallVerdict::Pin(r) = calls {
        return cls(Intent::Pin, r);
    }
    let into = select_into(toks);
    if toks.contains(&Token::Assignment) || into == Some(Into::UserVariables) {
        return cls(Intent::Pin, Reason::UserVariable);
    }
    let structural = match parse_one(toks) {
        Some(Statement::Query(q)) => query_modifies(&q),
        Some(_) => Some(Reason::Write),
        None => {
            // Unparsable: Write, with the best reason the tokens give.
            let reason = if has_dml_keyword(toks) {
                Reason::Write
            } else if has_locking_clause(toks) {
                Reason::LockingRead
            } else if into.is_some() {
                Reason::SelectInto
            } else if calls == CallVerdict::Write {
                Reason::WriteFunction
            } else {
                Reason::ParseError
            };
            return cls(Intent::Write, reason);
        }
    };
    if let Some(reason) = structural {
        return cls(Intent::Write, reason);
    }
    if has_dml_keyword(toks) {
        return cls(Intent::Write, Reason::Write);
    }
    if has_locking_clause(toks) {
        return cls(Intent::Write, Reason::LockingRead);
    }
    if into.is_some() {
        return cls(Intent::Write, Reason::SelectInto);
    }
    if let Some(c) = calls.classification() {
        return c;
    }
    cls(Intent::Read, Reason::Read)
}

/// Statements EXPLAIN accepts as its subject (rather than a table name).
fn explainable(toks: &[Token]) -> bool {
    toks.first() == Some(&Token::LParen)
        || [
            "SELECT", "WITH", "VALUES", "TABLE", "INSERT", "REPLACE", "UPDATE", "DELETE",
        ]
        .iter()
        .any(|k| kw_at(toks, 0, k))
}

/// `EXPLAIN | DESCRIBE | DESC [EXTENDED | PARTITIONS] [ANALYZE] [FORMAT = x] [INTO @v] stmt`,
/// `EXPLAIN tbl [col | 'wild']`, `EXPLAIN FOR CONNECTION n`; MariaDB `ANALYZE stmt`
/// (`analyze` set, options from `start`).
///
/// Without ANALYZE nothing executes: Read, unless the explained statement calls a function
/// that writes or pins (the optimizer may evaluate constant calls). With ANALYZE the statement
/// runs and EXPLAIN takes its class.
pub fn explain(
    toks: &[Token],
    extra: &[String],
    start: usize,
    mut analyze: bool,
) -> Classification {
    let bad = cls(Intent::Write, Reason::ParseError);
    let mut i = start;
    let mut into_variable = false;
    loop {
        if kw_at(toks, i, "EXTENDED") || kw_at(toks, i, "PARTITIONS") {
            i += 1;
        } else if kw_at(toks, i, "ANALYZE") {
            analyze = true;
            i += 1;
        } else if kw_at(toks, i, "FORMAT") {
            i += if toks.get(i + 1) == Some(&Token::Eq) {
                3
            } else {
                2
            };
        } else if kw_at(toks, i, "INTO") {
            into_variable = true;
            i += 2;
        } else {
            break;
        }
    }
    if kw_at(toks, i, "FOR") && kw_at(toks, i + 1, "CONNECTION") {
        // A connection id names a connection of one server: ask the primary.
        return cls(Intent::Write, Reason::Session);
    }
    let inner = toks.get(i..).unwrap_or(&[]);
    if inner.is_empty() {
        return bad;
    }
    if !explainable(inner) {
        // `EXPLAIN tbl [column | 'pattern']` lists columns, like SHOW COLUMNS.
        let table_form = !analyze
            && !into_variable
            && inner.len() <= 5
            && inner.iter().all(|t| {
                matches!(
                    t,
                    Token::Word(_) | Token::Period | Token::SingleQuotedString(_)
                )
            });
        return if table_form {
            cls(Intent::Read, Reason::Read)
        } else {
            bad
        };
    }
    let c = classify_statement(inner, extra);
    if c.reason == Reason::ParseError {
        return c;
    }
    if into_variable {
        return cls(Intent::Pin, Reason::UserVariable);
    }
    if analyze {
        return match c.intent {
            Intent::Read | Intent::Write | Intent::Pin => c,
            _ => cls(Intent::Write, Reason::Unknown),
        };
    }
    match scan(inner, extra) {
        CallVerdict::Safe => cls(Intent::Read, Reason::Read),
        v => v
            .classification()
            .unwrap_or(cls(Intent::Write, Reason::WriteFunction)),
    }
}

/// `SHOW ...`: Read, except the per-connection diagnostics of the previous statement
/// (`SHOW WARNINGS`, `SHOW ERRORS`, `SHOW COUNT(*) WARNINGS`, `SHOW PROFILE[S]`), which must go
/// where that statement ran: the primary.
pub fn show(toks: &[Token], extra: &[String]) -> Classification {
    if toks.len() == 1 {
        return cls(Intent::Write, Reason::ParseError);
    }
    let diagnostics = ["WARNINGS", "ERRORS", "PROFILE", "PROFILES"];
    let count_form = kw_at(toks, 1, "COUNT")
        && toks.get(2) == Some(&Token::LParen)
        && toks.get(3) == Some(&Token::Mul)
        && toks.get(4) == Some(&Token::RParen);
    let subject = if count_form { 5 } else { 1 };
    if diagnostics.iter().any(|k| kw_at(toks, subject, k)) {
        return cls(Intent::Write, Reason::Session);
    }
    match scan(toks, extra).classification() {
        Some(c) => c,
        None => cls(Intent::Read, Reason::Read),
    }
}
