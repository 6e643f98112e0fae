//! Byte-level fast path for the most common statement, a plain `SELECT`: answered Read without
//! the tokenizer or the decision cache, and only when a single pass over the bytes proves it.
//!
//! A text takes the fast path only when all of this holds (anything else goes to the full
//! classifier, which is the reference; the fast path must never answer differently from it):
//! - it starts (after whitespace) with the word `SELECT`, so no leading comment and no hint;
//! - it is one statement: a `;` may only end it, followed by whitespace;
//! - it holds only ASCII letters, digits, `_`, space/tab/newline, and `, . = < > ! * + - / %`,
//!   plus `:` (PostgreSQL casts), `$n` parameters (PostgreSQL), `?` placeholders and backtick
//!   identifiers (MySQL);
//! - no `(` (so no function call and no subquery), no `--`, `/*` or `#` comment, no `@`
//!   variable, no backslash anywhere;
//! - quoted strings and identifiers are closed, hold no backslash, and a quote never follows a
//!   letter or digit (`E'..'`, `X'..'`, `N'..'`, `_utf8'..'` prefixes go the long way);
//! - no unquoted word is one of `FOR` (locking clauses), `INTO` (SELECT INTO), `LOCK`
//!   (`LOCK IN SHARE MODE`), `SQL_CALC_FOUND_ROWS`, `NEXTVAL` / `CURRVAL` / `LASTVAL`
//!   (sequences), `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `REPLACE`;
//! - a word starting with a digit is a plain number (`12`, `1e5`), never `1for` and the like.
//!
//! Those are the conditions of the token-level cheap paths of both dialects
//! ([`super::pg::cheap_path`], [`super::mysql::cheap_path`]), checked on bytes; the corpus and
//! randomised tests compare both on every text the fast path accepts.

use super::Dialect;

/// Unquoted words that send a `SELECT` to the full classifier (upper case).
const DENY: &[&[u8]] = &[
    b"FOR",
    b"INTO",
    b"LOCK",
    b"SQL_CALC_FOUND_ROWS",
    b"NEXTVAL",
    b"CURRVAL",
    b"LASTVAL",
    b"INSERT",
    b"UPDATE",
    b"DELETE",
    b"MERGE",
    b"REPLACE",
];

/// Whether `word` is on [`DENY`] (any case); most words are ruled out by their length.
fn denied(word: &[u8]) -> bool {
    matches!(word.len(), 3..=7 | 19) && DENY.iter().any(|d| d.eq_ignore_ascii_case(word))
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// True when `sql` is a plain single `SELECT` that provably reads only (see the module docs).
pub fn plain_select(sql: &str, dialect: Dialect) -> bool {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() && is_space(b[i]) {
        i += 1;
    }
    let starts = b.len() >= i + 6
        && b[i..i + 6].eq_ignore_ascii_case(b"SELECT")
        && b.get(i + 6).is_some_and(|&c| is_space(c) || c == b'*');
    if !starts {
        return false;
    }
    i += 6;
    let mysql = dialect == Dialect::Mysql;
    while i < b.len() {
        let c = b[i];
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = i;
                while i < b.len() && is_word_byte(b[i]) {
                    i += 1;
                }
                if denied(&b[start..i]) {
                    return false;
                }
                continue;
            }
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && is_word_byte(b[i]) {
                    i += 1;
                }
                if !plain_number(&b[start..i]) {
                    return false;
                }
                continue;
            }
            b'\'' | b'"' | b'`' => {
                if c == b'`' && !mysql {
                    return false;
                }
                if i > 0 && is_word_byte(b[i - 1]) {
                    return false;
                }
                let Some(len) = b[i + 1..].iter().position(|&x| x == c) else {
                    return false; // unterminated
                };
                if b[i + 1..i + 1 + len].iter().any(|&x| x == b'\\' || x == 0) {
                    return false;
                }
                i += len + 2;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => return false,
            b'/' if b.get(i + 1) == Some(&b'*') => return false,
            b'$' if !mysql => {
                // `$1`: a parameter, at the start of a token only (else a dollar quote or a
                // `$` inside an identifier).
                let after = b.get(i + 1).is_some_and(u8::is_ascii_digit);
                if !after || (i > 0 && is_word_byte(b[i - 1])) {
                    return false;
                }
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if b.get(i).is_some_and(|&x| is_word_byte(x) || x == b'$') {
                    return false;
                }
                continue;
            }
            b':' if mysql => return false, // `:=` assigns a user variable
            b'?' if !mysql => return false, // a jsonb operator in PostgreSQL
            b';' => return b[i + 1..].iter().all(|&x| is_space(x)),
            b' ' | b'\t' | b'\n' | b'\r' | b',' | b'.' | b'=' | b'<' | b'>' | b'!' | b'*'
            | b'+' | b'-' | b'/' | b'%' | b':' | b'?' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// `12`, `12e5`, `12e` (then `-5`): digits, optionally one `e` and digits. `1for`, `0x1f`,
/// `1_000` are not (some tokenizers read a word there).
fn plain_number(w: &[u8]) -> bool {
    let digits = w.iter().take_while(|c| c.is_ascii_digit()).count();
    match &w[digits..] {
        [] => true,
        [e, rest @ ..] if e.eq_ignore_ascii_case(&b'e') => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{cls, Classification, Classifier, ClassifierSettings, Hint, Intent, Reason};
    use super::*;

    /// A classifier corpus: SQL text and the expected (intent, reason).
    type Corpus = &'static [(&'static str, (Intent, Reason))];

    const PG: Dialect = Dialect::Postgres;
    const MY: Dialect = Dialect::Mysql;

    #[test]
    fn every_denied_word_is_caught_in_any_case() {
        for d in DENY {
            assert!(denied(d), "{}", String::from_utf8_lossy(d));
            assert!(denied(&d.to_ascii_lowercase()));
            let sql = format!("SELECT a FROM t {}", String::from_utf8_lossy(d));
            assert!(!plain_select(&sql, PG) && !plain_select(&sql, MY), "{sql}");
        }
    }

    #[test]
    fn common_reads_take_the_fast_path() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
            "select abalance from pgbench_accounts where aid = $1",
            "  SELECT * FROM t WHERE a = 'x' AND b <> 'it''s' ;  \n",
            "SELECT a, b FROM s.t WHERE c >= 1.5e3 OR d != -2",
            "SELECT\n\ta::int FROM t",
            "SELECT*FROM t",
            "SELECT \"for\" FROM t",
        ] {
            assert!(plain_select(sql, PG), "{sql}");
        }
        for sql in [
            "SELECT c FROM sbtest1 WHERE id=?",
            "SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c",
            "SELECT `for` FROM `t` WHERE a = \"x\"",
        ] {
            assert!(plain_select(sql, MY), "{sql}");
        }
    }

    #[test]
    fn writes_locks_calls_comments_and_oddities_do_not() {
        for sql in [
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t for share",
            "SELECT * FROM t FOR NO KEY UPDATE",
            "SELECT nextval('s')",
            "SELECT nextval FROM s",
            "SELECT a INTO b FROM t",
            "SELECT * INTO TEMP x FROM t",
            "SELECT count(*) FROM t",
            "SELECT my_writer(1)",
            "SELECT 1; DELETE FROM t",
            "SELECT 1; SELECT 2",
            "/* switchyard: primary */ SELECT 1",
            "-- hint\nSELECT 1",
            "SELECT 1 -- trailing",
            "SELECT 1 /* c */",
            "SELECT E'\\'' FROM t",
            "SELECT 'a\\' FROM t",
            "SELECT x'1f'",
            "SELECT 'unterminated",
            "SELECT \"unterminated",
            "SELECT $$dollar$$",
            "SELECT $tag$x$tag$",
            "SELECT a$1 FROM t",
            "SELECT $1abc",
            "SELECT 1for",
            "SELECT 0x1f",
            "SELECT 1_000",
            "SELECT a FROM t WHERE j ? 'k'",
            "SELECT `a` FROM t",
            "SELECT é FROM t",
            "SELECT a FROM t WHERE b = 1 \\g",
            "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
            "SELECTx FROM t",
            "SELECT",
            "UPDATE t SET a = 1",
            "select a from t where b in (1, 2)",
            "SELECT a FROM t LOCK IN SHARE MODE",
        ] {
            assert!(!plain_select(sql, PG), "{sql}");
        }
        for sql in [
            "SELECT @x",
            "SELECT @@last_insert_id",
            "SELECT a := 1",
            "SELECT a FROM t LOCK IN SHARE MODE",
            "SELECT SQL_CALC_FOUND_ROWS a FROM t",
            "SELECT a INTO @x FROM t",
            "SELECT a FROM t INTO OUTFILE '/tmp/x'",
            "SELECT NEXT VALUE FOR s",
            "SELECT s.nextval",
            "SELECT a FROM t # comment",
            "SELECT 'a\\'b' FROM t",
            "SELECT _utf8'x'",
            "SELECT $1",
            "/*!40101 SELECT 1 */",
        ] {
            assert!(!plain_select(sql, MY), "{sql}");
        }
    }

    fn extra() -> Vec<String> {
        vec!["my_writer".to_string(), "lower_but_writes".to_string()]
    }

    /// The reference answer: the dialect's full classifier (tokenizer, cheap path, parser).
    fn reference(sql: &str, dialect: Dialect) -> Classification {
        match dialect {
            Dialect::Postgres => super::super::pg::classify(sql, &extra()),
            Dialect::Mysql => super::super::mysql::classify(sql, &extra()),
        }
    }

    fn read() -> Classification {
        cls(Intent::Read, Reason::Read)
    }

    #[test]
    fn corpus_texts_on_the_fast_path_are_reads_for_the_full_classifier() {
        let corpora: [(Corpus, Dialect); 2] = [
            (super::super::tests::CORPUS, PG),
            (super::super::mysql_tests::CORPUS, MY),
        ];
        for (corpus, dialect) in corpora {
            let mut fast = 0;
            for (sql, want) in corpus {
                if plain_select(sql, dialect) {
                    fast += 1;
                    assert_eq!(*want, (read().intent, read().reason), "{dialect:?} {sql}");
                    assert_eq!(reference(sql, dialect), read(), "{dialect:?} {sql}");
                }
            }
            assert!(
                fast >= 5,
                "{dialect:?}: only {fast} corpus texts took the fast path"
            );
        }
    }

    #[test]
    fn the_classifier_skips_tokenizer_and_cache_only_for_plain_reads() {
        for dialect in [PG, MY] {
            let c = Classifier::new(ClassifierSettings {
                write_functions: extra(),
                cache_size: 16,
                dialect,
            });
            assert_eq!(c.classify("SELECT a FROM t WHERE id = 7"), read());
            // Plain reads are not cached: the cache keeps room for texts that need the parser.
            assert!(c.inner.cache.is_empty());
            for sql in [
                "SELECT my_writer(1)",
                "SELECT lower_but_writes('x') FROM t",
                "SELECT * FROM t FOR UPDATE",
                "SELECT a INTO b FROM t",
                "SELECT 1; DELETE FROM t",
            ] {
                let got = c.classify(sql);
                assert_ne!(got.intent, Intent::Read, "{dialect:?} {sql}");
                assert_eq!(got, reference(sql, dialect), "{dialect:?} {sql}");
            }
            let hinted = c.classify("/* switchyard: primary */ SELECT a FROM t");
            assert_eq!(
                (hinted.intent, hinted.reason, hinted.hint),
                (Intent::Read, Reason::Read, Some(Hint::Primary))
            );
        }
        let pg = Classifier::new(ClassifierSettings {
            write_functions: extra(),
            cache_size: 16,
            dialect: PG,
        });
        for sql in [
            "SELECT nextval('s')",
            "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
            "SELECT * INTO TEMP x FROM t",
        ] {
            assert_ne!(pg.classify(sql).intent, Intent::Read, "{sql}");
        }
    }

    /// xorshift64*: a fixed, dependency-free sequence for the randomised comparison.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
        }
    }

    /// Fragments a random statement is built of: ordinary SQL, every byte class the scanner
    /// treats specially, denied words, and odd adjacencies.
    const PIECES: &[&str] = &[
        "a",
        "t",
        "abalance",
        "pgbench_accounts",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "ORDER",
        "BY",
        "LIMIT",
        "UNION",
        "select",
        "for",
        "FOR",
        "update",
        "share",
        "into",
        "INTO",
        "lock",
        "nextval",
        "currval",
        "e",
        "E",
        "x",
        "N",
        "_utf8",
        "sql_calc_found_rows",
        "1",
        "42",
        "1e5",
        "1.5",
        ".5",
        "1for",
        "0x1f",
        "1_000",
        "$1",
        "$$",
        "$a$",
        "$",
        "?",
        "@",
        "@@x",
        ":=",
        "::",
        ":",
        "=",
        "<>",
        "!=",
        "<",
        ">",
        "*",
        "+",
        "-",
        "--",
        "/",
        "/*",
        "*/",
        "%",
        ",",
        ".",
        ";",
        "(",
        ")",
        "'",
        "''",
        "'x'",
        "'it''s'",
        "'a;b'",
        "'\\'",
        "\\",
        "\"",
        "\"for\"",
        "`",
        "`for`",
        "#",
        "\n",
        "\t",
        " ",
        " ",
        " ",
        "é",
        "[",
        "]",
        "|",
        "&",
        "~",
        "^",
        "{",
        "}",
    ];

    #[test]
    fn random_texts_on_the_fast_path_agree_with_the_full_classifier() {
        let mut rng = Rng(0x5EED_CAFE_F00D_0001);
        let mut accepted = [0usize; 2];
        for round in 0..40_000 {
            let dialect = if round % 2 == 0 { PG } else { MY };
            let mut sql = String::from(if round % 3 == 0 { "select " } else { "SELECT " });
            for _ in 0..1 + rng.below(12) {
                sql.push_str(PIECES[rng.below(PIECES.len())]);
                if rng.below(3) > 0 {
                    sql.push(' ');
                }
            }
            if plain_select(&sql, dialect) {
                accepted[round % 2] += 1;
                assert_eq!(reference(&sql, dialect), read(), "{dialect:?} {sql:?}");
            }
        }
        // The generator must exercise the accepting side too.
        assert!(accepted.iter().all(|&n| n > 500), "accepted {accepted:?}");
    }
}
