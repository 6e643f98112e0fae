//! Which MySQL statements read what the session's previous statement left behind (its
//! diagnostics area, `ROW_COUNT()`, `FOUND_ROWS()`) or the session's `LAST_INSERT_ID()`, and
//! which ones leave a count for a later `FOUND_ROWS()`: one pass over the bytes, no tokenizer.
//!
//! Transaction pooling uses it to run such a read on the server connection that ran the
//! statement before it (see `frontend::mysql::diag`). It errs towards "reads": a word in a
//! string, a comment or a quoted identifier counts too, which only keeps a connection a little
//! longer; a qualified column (`t.row_count`) or a longer name (`row_counts`) does not count.

/// What one statement text (COM_QUERY, or the text of a prepared statement) does with the
/// session's diagnostics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiagUse {
    /// Reads something the previous statement left: `ROW_COUNT()`, `FOUND_ROWS()`,
    /// `SHOW WARNINGS | ERRORS`, `SHOW COUNT(*) WARNINGS | ERRORS`, `GET DIAGNOSTICS`,
    /// `@@warning_count`, `@@error_count`.
    pub previous: bool,
    /// Reads the session's last generated id: `LAST_INSERT_ID()`, `@@identity`,
    /// `@@last_insert_id` (set by the last INSERT that generated one, not only the previous
    /// statement).
    pub insert_id: bool,
    /// `SQL_CALC_FOUND_ROWS`: the answer leaves a count for a later `FOUND_ROWS()`.
    pub calc_found_rows: bool,
    /// Of what the previous statements left, reads only `FOUND_ROWS()`: the count of the
    /// session's last statement answered with rows, not necessarily the previous one.
    pub found_rows: bool,
}

impl DiagUse {
    /// Reads the previous statement's diagnostics or the last insert id.
    pub fn reads(&self) -> bool {
        self.previous || self.insert_id
    }
}

/// Words (case-insensitive, whole words) that read the previous statement's diagnostics.
const READS: [&[u8]; 7] = [
    b"row_count",
    b"found_rows",
    b"warnings",
    b"errors",
    b"diagnostics",
    b"@@warning_count",
    b"@@error_count",
];

/// Words that read the session's last insert id.
const INSERT_ID: [&[u8]; 3] = [b"last_insert_id", b"@@identity", b"@@last_insert_id"];

fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'@' | b'.')
}

/// `@@session.x` and `@@local.x` are `@@x`.
fn unscoped(word: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    for scope in [&b"@@session."[..], b"@@local."] {
        if word.len() > scope.len() && word[..scope.len()].eq_ignore_ascii_case(scope) {
            let mut w = b"@@".to_vec();
            w.extend_from_slice(&word[scope.len()..]);
            return w.into();
        }
    }
    word.into()
}

/// One pass over `sql`: see [`DiagUse`].
pub fn diag_use(sql: &[u8]) -> DiagUse {
    let mut u = DiagUse::default();
    let mut other_reads = false;
    let mut i = 0;
    while i < sql.len() {
        if !word_byte(sql[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < sql.len() && word_byte(sql[i]) {
            i += 1;
        }
        let word = &sql[start..i];
        // The shortest word of interest has 6 bytes, the longest 19.
        if !(6..=24).contains(&word.len()) {
            continue;
        }
        let word = unscoped(word);
        let is = |list: &[&[u8]]| list.iter().any(|w| w.eq_ignore_ascii_case(&word));
        if is(&INSERT_ID) {
            u.insert_id = true;
        } else if is(&READS) {
            u.previous = true;
            if word.eq_ignore_ascii_case(b"found_rows") {
                u.found_rows = true;
            } else {
                other_reads = true;
            }
        } else if word.eq_ignore_ascii_case(b"sql_calc_found_rows") {
            u.calc_found_rows = true;
        }
    }
    u.found_rows &= !other_reads;
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(sql: &str) -> bool {
        diag_use(sql.as_bytes()).reads()
    }

    #[test]
    fn diagnostic_reads_are_recognised() {
        for sql in [
            "SELECT ROW_COUNT()",
            "select row_count() as n",
            "SELECT FOUND_ROWS()",
            "SHOW WARNINGS",
            "show warnings limit 1",
            "SHOW ERRORS",
            "SHOW COUNT(*) WARNINGS",
            "SHOW COUNT(*) ERRORS",
            "GET DIAGNOSTICS @n = NUMBER",
            "GET DIAGNOSTICS CONDITION 1 @e = MYSQL_ERRNO",
            "SELECT @@warning_count",
            "SELECT @@error_count, 1",
            "SELECT @@session.warning_count",
            "SELECT @@SESSION.ERROR_COUNT",
            "SELECT LAST_INSERT_ID()",
            "SELECT LAST_INSERT_ID() + 0",
            "SELECT @@identity",
            "SELECT @@last_insert_id",
            "SELECT @@local.identity",
            "INSERT INTO t VALUES (1); SELECT LAST_INSERT_ID()",
            "/* c */ SELECT `row_count`()",
        ] {
            assert!(reads(sql), "{sql}");
        }
        let found = |s: &str| diag_use(s.as_bytes()).found_rows;
        assert!(found("SELECT FOUND_ROWS()"));
        assert!(!found("SELECT FOUND_ROWS(), ROW_COUNT()"));
        assert!(!found("SHOW WARNINGS"));
        let id = |s: &str| diag_use(s.as_bytes()).insert_id;
        assert!(id("SELECT LAST_INSERT_ID() + 1"));
        assert!(id("SELECT @@IDENTITY"));
        assert!(!id("SELECT ROW_COUNT()"));
    }

    #[test]
    fn other_statements_do_not_read_diagnostics() {
        for sql in [
            "SELECT 1",
            "UPDATE t SET v = v + 1 WHERE g = 1",
            "INSERT INTO t (s) VALUES ('x')",
            "SELECT t.row_count FROM t",
            "SELECT row_counts FROM t",
            "SELECT warning FROM t",
            "SELECT @@insert_id",
            "SET @x = 1",
            "",
        ] {
            assert!(!reads(sql), "{sql}");
        }
        let calc = |s: &str| diag_use(s.as_bytes()).calc_found_rows;
        assert!(calc("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1"));
        assert!(calc("select sql_calc_found_rows a from t"));
        assert!(!calc("SELECT * FROM t LIMIT 1"));
    }
}
