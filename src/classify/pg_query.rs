//! Classifies one PostgreSQL query statement (SELECT / WITH / VALUES / TABLE / `(`...).
//!
//! A query is Read only when sqlparser parses it as a query whose body and CTEs are all
//! SELECT/VALUES/TABLE, and the token-level checks find no locking clause, no `INTO`, no
//! data-modifying keyword and no call that may write or pin. The token checks are supersets of
//! the real conditions (fail closed) and also pick the reason when sqlparser cannot parse valid
//! PostgreSQL (for example `FOR NO KEY UPDATE`).

use super::cls;
use sqlparser::ast::{Query, SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::pg_functions::{is_kw, scan_calls, CallVerdict};
use super::{Classification, Intent, Reason};

/// Parses significant tokens as exactly one statement.
pub fn parse_one(toks: &[Token]) -> Option<Statement> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).with_tokens(toks.to_vec());
    let stmt = parser.parse_statement().ok()?;
    (parser.peek_token().token == Token::EOF).then_some(stmt)
}

/// `FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`, `FOR KEY SHARE` anywhere in the tokens.
pub fn has_locking_clause(toks: &[Token]) -> bool {
    toks.windows(2).any(|w| {
        is_kw(&w[0], "FOR")
            && (is_kw(&w[1], "UPDATE")
                || is_kw(&w[1], "SHARE")
                || is_kw(&w[1], "NO")
                || is_kw(&w[1], "KEY"))
    })
}

/// Data-modifying keywords (`UPDATE` that is not part of a locking clause).
fn has_dml_keyword(toks: &[Token]) -> bool {
    toks.iter().enumerate().any(|(i, t)| {
        is_kw(t, "INSERT")
            || is_kw(t, "DELETE")
            || is_kw(t, "MERGE")
            || (is_kw(t, "UPDATE")
                && !(i > 0 && (is_kw(&toks[i - 1], "FOR") || is_kw(&toks[i - 1], "KEY"))))
    })
}

/// `SELECT ... INTO [TEMP|TEMPORARY|UNLOGGED] [TABLE] name`: Some(temp?) when present.
fn select_into(toks: &[Token]) -> Option<bool> {
    let at = toks.iter().position(|t| is_kw(t, "INTO"))?;
    let mut i = at + 1;
    let mut temp = false;
    while let Some(t) = toks.get(i) {
        if is_kw(t, "TEMP") || is_kw(t, "TEMPORARY") {
            temp = true;
        } else if !(is_kw(t, "UNLOGGED") || is_kw(t, "TABLE")) {
            break;
        }
        i += 1;
    }
    let pg_temp = matches!(toks.get(i), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("pg_temp"))
        && toks.get(i + 1) == Some(&Token::Period);
    Some(temp || pg_temp)
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

/// Why the query's structure writes, if it does: a data-modifying CTE or a DML main body.
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

/// Classifies a query statement given its significant tokens (first token SELECT, WITH,
/// VALUES, TABLE or `(`).
pub fn classify_query(toks: &[Token], extra: &[String]) -> Classification {
    // `TABLE name` is `SELECT * FROM name`; sqlparser 0.64 does not parse it as a statement.
    let rewritten;
    let toks = if toks.first().is_some_and(|t| is_kw(t, "TABLE")) {
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

    let calls = scan_calls(toks, extra);
    if let CallVerdict::Pin(_) = calls {
        if let Some(c) = calls.classification() {
            return c;
        }
    }
    let into = select_into(toks);
    if into == Some(true) {
        return cls(Intent::Pin, Reason::TempTable);
    }
    let starts_with_with = toks.first().is_some_and(|t| is_kw(t, "WITH"));
    let structural = match parse_one(toks) {
        Some(Statement::Query(q)) => query_modifies(&q),
        Some(_) => Some(Reason::Write),
        None => {
            // Unparsable: Write, with the best reason the tokens give.
            let reason = if has_dml_keyword(toks) {
                if starts_with_with {
                    Reason::ModifyingCte
                } else {
                    Reason::Write
                }
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
        return cls(Intent::Write, Reason::ModifyingCte);
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
