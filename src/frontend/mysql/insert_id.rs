//! `SELECT LAST_INSERT_ID()` and `SELECT ROW_COUNT()` in transaction pooling, answered by the proxy
//! from the session's own answers: the statement that set them may have run on another pooled
//! connection, whose values are not the session's (ProxySQL answers LAST_INSERT_ID the same way).

use super::*;
use crate::wire::mysql::resultset::{single_signed, single_unsigned};

/// For `SELECT LAST_INSERT_ID()` (any case, optional `AS alias` or bare alias, trailing `;`):
/// the column name MySQL would give the answer. Anything else (comments, other expressions,
/// `LAST_INSERT_ID(expr)`) is `None` and goes to a server.
pub(super) fn column_name(sql: &str) -> Option<String> {
    expr_column(sql, "last_insert_id()")
}

/// [`column_name`] for `SELECT <expr>` with any other function call `expr` (lower case).
fn expr_column(sql: &str, expr: &str) -> Option<String> {
    let s = sql.trim().trim_end_matches(';').trim_end();
    let rest = s.get(..6).filter(|w| w.eq_ignore_ascii_case("select"))?;
    let rest = &s[rest.len()..];
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start();
    let written = rest
        .get(..expr.len())
        .filter(|e| e.eq_ignore_ascii_case(expr))?;
    let after = rest[expr.len()..].trim();
    if after.is_empty() {
        return Some(written.to_owned());
    }
    if after.eq_ignore_ascii_case("as") {
        return None;
    }
    let alias = match after.get(..3) {
        Some(w) if w[..2].eq_ignore_ascii_case("as") && w.ends_with(char::is_whitespace) => {
            after[2..].trim_start()
        }
        _ => after,
    };
    if let Some(quoted) = alias.strip_prefix('`').and_then(|a| a.strip_suffix('`')) {
        return (!quoted.is_empty() && !quoted.contains('`')).then(|| quoted.to_owned());
    }
    let plain = !alias.is_empty()
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    plain.then(|| alias.to_owned())
}

impl Relay {
    /// Answer `text` locally when it asks for `LAST_INSERT_ID()` and the session's connection
    /// may not be the one that ran its last INSERT (transaction pooling, outside a transaction,
    /// not pinned). True when answered.
    pub(super) fn answer_insert_id(&mut self, text: &str) -> bool {
        if !self.pooling() || self.txn.is_some() || self.pinned.is_some() {
            return false;
        }
        let Some(column) = column_name(text) else {
            return false;
        };
        let caps = self.login.capabilities;
        for p in single_unsigned(caps, &column, self.last_insert_id, self.status) {
            self.client.queue(&p);
        }
        true
    }

    /// Answer `text` locally when it is `SELECT ROW_COUNT()` and the connection that ran the
    /// session's previous statement is no longer the session's (transaction pooling, the
    /// diagnostics hold ran out): the proxy read that statement's count in its answer (affected
    /// rows of its OK, -1 after rows or an error). True when answered.
    pub(super) fn answer_row_count(&mut self, text: &str) -> bool {
        if !self.pooling() || self.txn.is_some() || self.pinned.is_some() {
            return false;
        }
        let Some(count) = self.diag_row_count_here() else {
            return false;
        };
        let Some(column) = expr_column(text, "row_count()") else {
            return false;
        };
        let caps = self.login.capabilities;
        for p in single_signed(caps, &column, count, self.status) {
            self.client.queue(&p);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::column_name;

    #[test]
    fn recognises_the_plain_query_and_its_aliases_only() {
        let ok = |s: &str| column_name(s);
        assert_eq!(
            ok("SELECT LAST_INSERT_ID()").as_deref(),
            Some("LAST_INSERT_ID()")
        );
        assert_eq!(
            ok("  select last_insert_id() ; ").as_deref(),
            Some("last_insert_id()")
        );
        assert_eq!(ok("SELECT LAST_INSERT_ID() AS id").as_deref(), Some("id"));
        assert_eq!(
            ok("select last_insert_id() as `new id`").as_deref(),
            Some("new id")
        );
        assert_eq!(ok("SELECT LAST_INSERT_ID() id").as_deref(), Some("id"));
        for other in [
            "SELECT LAST_INSERT_ID(5)",
            "SELECT LAST_INSERT_ID(), 1",
            "SELECT LAST_INSERT_ID() + 1",
            "/* x */ SELECT LAST_INSERT_ID()",
            "SELECTLAST_INSERT_ID()",
            "SELECT ROW_COUNT()",
            "SELECT LAST_INSERT_ID() AS",
            "SELECT LAST_INSERT_ID() FROM t",
            "select",
            "",
        ] {
            assert_eq!(column_name(other), None, "{other}");
        }
        assert_eq!(
            super::expr_column("select Row_Count() AS n;", "row_count()").as_deref(),
            Some("n")
        );
        assert_eq!(
            super::expr_column("SELECT ROW_COUNT()", "row_count()").as_deref(),
            Some("ROW_COUNT()")
        );
        assert_eq!(
            super::expr_column("SELECT ROW_COUNT() + 0", "row_count()"),
            None
        );
    }
}
