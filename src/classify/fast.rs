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
//!
//! It runs on every simple-protocol query, so it is written for few instructions per byte: one
//! lookup in a 256-entry byte-class table per dialect decides what a byte starts; words and
//! quoted strings are consumed 8 bytes at a time by unrolled loops; a word is checked against
//! the deny-list only when its first letter and length fit a denied word (one more lookup), and
//! then by comparing it, packed into a `u64`, with the denied words of its length.

use super::Dialect;

/// Unquoted words that send a `SELECT` to the full classifier (upper case). The scanner checks
/// them through [`DENY_SHAPES`] and [`denied`]; a test keeps them in step.
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

// Byte classes: what a byte starts when the scanner meets it outside a word or string. Word
// bytes come first so that "is a word byte" is `class <= DIGIT`.
/// A letter that starts no word on [`DENY`], or `_`: a word that needs no deny-list check.
const NAME: u8 = 0;
/// A letter that starts some word on [`DENY`] (`F`, `I`, `L`, ...): a word to check.
const KEYWORD: u8 = 1;
/// `0-9`: a number, which must be plain.
const DIGIT: u8 = 2;
/// Whitespace and the operators that need no look-around: step over.
const SKIP: u8 = 3;
/// `-`: fine unless it starts a `--` comment.
const MINUS: u8 = 4;
/// `/`: fine unless it starts a `/*` comment.
const SLASH: u8 = 5;
/// `'`, `"`, and in MySQL the backtick: a quoted string or identifier.
const QUOTE: u8 = 6;
/// `$` (PostgreSQL only): a `$n` parameter.
const DOLLAR: u8 = 7;
/// `;`: must end the text.
const SEMI: u8 = 8;
/// Anything else: the fast path gives up.
const REJECT: u8 = 9;

/// The class of every byte for one dialect (see the class constants).
const fn class_table(mysql: bool) -> [u8; 256] {
    let mut table = [REJECT; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        table[i] = match c {
            b'a'..=b'z' | b'A'..=b'Z' if DENY_SHAPES[(c & 0x1F) as usize] != 0 => KEYWORD,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => NAME,
            b'0'..=b'9' => DIGIT,
            b' ' | b'\t' | b'\n' | b'\r' | b',' | b'.' | b'=' | b'<' | b'>' | b'!' | b'*'
            | b'+' | b'%' => SKIP,
            b'-' => MINUS,
            b'/' => SLASH,
            b'\'' | b'"' => QUOTE,
            b';' => SEMI,
            // `:=` assigns a user variable in MySQL; `::` is a cast in PostgreSQL.
            b':' if !mysql => SKIP,
            // A placeholder in MySQL; a jsonb operator in PostgreSQL.
            b'?' if mysql => SKIP,
            // A quoted identifier in MySQL; an operator or oddity in PostgreSQL.
            b'`' if mysql => QUOTE,
            // A parameter in PostgreSQL; part of an identifier in MySQL.
            b'$' if !mysql => DOLLAR,
            _ => REJECT,
        };
        i += 1;
    }
    table
}

static PG_CLASS: [u8; 256] = class_table(false);
static MYSQL_CLASS: [u8; 256] = class_table(true);

/// Word bytes (`A-Z a-z 0-9 _`) are the same in both dialects.
fn is_word_byte(b: u8) -> bool {
    PG_CLASS[b as usize] <= DIGIT
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// ASCII case folding of packed word bytes: clearing bit 5 upper-cases a letter. On the other
/// word bytes it yields no letter (digits become 0x10..0x19) and leaves `_` alone, so a folded
/// word equals a folded deny-list word exactly when the two are equal ignoring ASCII case.
const FOLD: u64 = 0xDFDF_DFDF_DFDF_DFDF;

/// `word` (at most 8 bytes) packed little-endian into a `u64` and case-folded with [`FOLD`];
/// the unused high bytes are zero, which no folded word byte is.
const fn pack(word: &[u8]) -> u64 {
    let mut packed = 0u64;
    let mut i = word.len();
    while i > 0 {
        i -= 1;
        packed = (packed << 8) | word[i] as u64;
    }
    packed & FOLD
}

const FOR: u64 = pack(b"FOR");
const INTO: u64 = pack(b"INTO");
const LOCK: u64 = pack(b"LOCK");
const MERGE: u64 = pack(b"MERGE");
const INSERT: u64 = pack(b"INSERT");
const UPDATE: u64 = pack(b"UPDATE");
const DELETE: u64 = pack(b"DELETE");
const NEXTVAL: u64 = pack(b"NEXTVAL");
const CURRVAL: u64 = pack(b"CURRVAL");
const LASTVAL: u64 = pack(b"LASTVAL");
const REPLACE: u64 = pack(b"REPLACE");
const SELECT: u64 = pack(b"SELECT");

/// For each letter, as `c & 0x1F` (`A`/`a` is 1, `Z`/`z` is 26; `_` is 31, which starts no
/// denied word), bit `n` is set when a denied word of `n` bytes starts with it. One lookup rules
/// out nearly every word: `FROM` (`F` only starts 3-byte `FOR`), `WHERE`, `aid`, ...
const DENY_SHAPES: [u32; 32] = deny_shapes();

const fn deny_shapes() -> [u32; 32] {
    let mut shapes = [0u32; 32];
    let mut k = 0;
    while k < DENY.len() {
        let word = DENY[k];
        shapes[(word[0] & 0x1F) as usize] |= 1 << word.len();
        k += 1;
    }
    shapes
}

/// The longest word on [`DENY`]; the shapes above fit in a `u32`.
const DENY_MAX: usize = 19;

/// The low `n` bytes of [`FOLD`]: folds a packed word and drops the bytes after its `n`.
const fn fold_low(n: u32) -> u64 {
    FOLD >> (64 - 8 * n)
}

/// Whether the word `text[start..end]` is on [`DENY`] (any case). Most words are ruled out by
/// their first letter and length ([`DENY_SHAPES`]); the others are packed into a `u64` (from
/// one 8-byte load when the text goes on that far) and compared with the denied words of their
/// length only.
fn denied(text: &[u8], start: usize, end: usize) -> bool {
    let len = end - start;
    let shapes = DENY_SHAPES[(text[start] & 0x1F) as usize];
    if len > DENY_MAX || (shapes >> len) & 1 == 0 {
        return false;
    }
    if len > 7 {
        return long_denied(&text[start..end]);
    }
    // The word and whatever follows it; each arm keeps only the word's own bytes.
    let word = match text.get(start..).and_then(<[u8]>::first_chunk::<8>) {
        Some(window) => u64::from_le_bytes(*window),
        None => pack_tail(&text[start..end]),
    };
    match len {
        3 => word & fold_low(3) == FOR,
        4 => matches!(word & fold_low(4), INTO | LOCK),
        5 => word & fold_low(5) == MERGE,
        6 => matches!(word & fold_low(6), INSERT | UPDATE | DELETE),
        _ => matches!(word & fold_low(7), NEXTVAL | CURRVAL | LASTVAL | REPLACE),
    }
}

/// [`denied`] for a word longer than 7 bytes (only `SQL_CALC_FOUND_ROWS`); rare, so out of line.
#[cold]
#[inline(never)]
fn long_denied(word: &[u8]) -> bool {
    word.eq_ignore_ascii_case(b"SQL_CALC_FOUND_ROWS")
}

/// [`pack`] for a word within 8 bytes of the end of the text; out of line, so that the hot loop
/// does not carry the (vectorised) packing code.
#[cold]
#[inline(never)]
fn pack_tail(word: &[u8]) -> u64 {
    pack(word)
}

/// The index of the first byte at or after `i` that is `stop` (or `b.len()`). Words and quoted
/// strings are the bulk of a query, so they are scanned 8 bytes at a time while the text lasts:
/// the fixed length lets the compiler unroll the loop and drop the bounds checks.
fn scan_until(b: &[u8], mut i: usize, stop: impl Fn(u8) -> bool) -> usize {
    while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        match chunk.iter().position(|&x| stop(x)) {
            Some(n) => return i + n,
            None => i += 8,
        }
    }
    while i < b.len() && !stop(b[i]) {
        i += 1;
    }
    i
}

/// The bytes that end a run of quoted text: a quote (the closing one, or another kind, which is
/// just text), or a backslash or NUL (the fast path gives up on those).
static QUOTED_STOP: [bool; 256] = {
    let mut table = [false; 256];
    table[b'\'' as usize] = true;
    table[b'"' as usize] = true;
    table[b'`' as usize] = true;
    table[b'\\' as usize] = true;
    table[0] = true;
    table
};

/// The index of the first byte at or after `i` that is not an ASCII digit (or `b.len()`).
fn skip_digits(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// The index just past the number starting at `i` (a digit), or None when it is not plain:
/// `12`, `12e5`, `12e` (then `-5`) are digits, optionally one `e` and digits, and then no word
/// byte. `1for`, `0x1f`, `1_000` are not (some tokenizers read a word there).
fn number_end(b: &[u8], i: usize) -> Option<usize> {
    let mut i = skip_digits(b, i + 1);
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i = skip_digits(b, i + 1);
    }
    match b.get(i) {
        Some(&x) if is_word_byte(x) => None,
        _ => Some(i),
    }
}

/// The index just past the `$n` parameter at `i` (a `$`, PostgreSQL), or None: it must start a
/// token (else a `$` inside an identifier), have digits, and not be followed by a word byte or
/// `$` (a dollar quote).
fn param_end(b: &[u8], i: usize) -> Option<usize> {
    if i == 0 || is_word_byte(b[i - 1]) || !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let end = skip_digits(b, i + 2);
    match b.get(end) {
        Some(&x) if is_word_byte(x) || x == b'$' => None,
        _ => Some(end),
    }
}

/// The index just past the quoted string or identifier whose opening quote is at `i`, or None.
/// A quote after a letter or digit is a prefix (`E'..'`, `x'..'`, `_utf8'..'`) that changes the
/// meaning; a backslash or NUL before the closing quote, or no closing quote, gives up too.
/// `'it''s'` is read as two adjacent strings, which is fine. One pass over the bytes, out of
/// line: the scanner's hot loop keeps its registers.
#[inline(never)]
fn quoted_end(b: &[u8], i: usize) -> Option<usize> {
    let q = *b.get(i)?;
    if i == 0 || is_word_byte(b[i - 1]) {
        return None;
    }
    let mut i = i + 1;
    loop {
        i = scan_until(b, i, |x| QUOTED_STOP[x as usize]);
        match b.get(i) {
            Some(&x) if x == q => return Some(i + 1),
            // A quote of another kind is text here.
            Some(b'\'' | b'"' | b'`') => i += 1,
            _ => return None,
        }
    }
}

/// True when `sql` is a plain single `SELECT` that provably reads only (see the module docs)
/// and, in PostgreSQL, names no per-instance state ([`super::pg_primary_state`]).
pub fn plain_select(sql: &str, dialect: Dialect) -> bool {
    scan(sql, dialect)
        && (dialect == Dialect::Mysql || !super::pg_primary_state::may_touch_primary_state(sql))
}

/// The byte scan of [`plain_select`].
fn scan(sql: &str, dialect: Dialect) -> bool {
    let class = match dialect {
        Dialect::Postgres => &PG_CLASS,
        Dialect::Mysql => &MYSQL_CLASS,
    };
    let mut b = sql.as_bytes();
    while let [c, rest @ ..] = b {
        if !is_space(*c) {
            break;
        }
        b = rest;
    }
    // `SELECT` (any case) and then whitespace or `*`: both are SKIP bytes, so the scan can
    // start right after them.
    let Some(head) = b.first_chunk::<7>() else {
        return false;
    };
    let word = u64::from_le_bytes([head[0], head[1], head[2], head[3], head[4], head[5], 0, 0]);
    if word & FOLD != SELECT || !(is_space(head[6]) || head[6] == b'*') {
        return false;
    }
    let mut i = 7;
    loop {
        // Whitespace and operators are the most common bytes after word bytes: step over them
        // before dispatching on the class of the next byte.
        while i < b.len() && class[b[i] as usize] == SKIP {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            return true;
        };
        let kind = class[c as usize];
        if kind <= KEYWORD {
            // A word (most of a query): only one starting like a denied word is looked up.
            let start = i;
            i = scan_until(b, i + 1, |x| !is_word_byte(x));
            if kind == KEYWORD && denied(b, start, i) {
                return false;
            }
            continue;
        }
        match kind {
            DIGIT => match number_end(b, i) {
                Some(end) => i = end,
                None => return false,
            },
            QUOTE => match quoted_end(b, i) {
                Some(end) => i = end,
                None => return false,
            },
            MINUS if b.get(i + 1) == Some(&b'-') => return false,
            SLASH if b.get(i + 1) == Some(&b'*') => return false,
            MINUS | SLASH => i += 1,
            DOLLAR => match param_end(b, i) {
                Some(end) => i = end,
                None => return false,
            },
            SEMI => return b[i + 1..].iter().all(|&x| is_space(x)),
            _ => return false,
        }
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
            let lower = d.to_ascii_lowercase();
            // Alone (packed byte by byte) and followed by more text (packed from one load).
            assert!(denied(d, 0, d.len()), "{}", String::from_utf8_lossy(d));
            assert!(denied(&lower, 0, d.len()));
            let padded = [b"x ".as_slice(), &lower, b" FROM t WHERE a = 1"].concat();
            assert!(denied(&padded, 2, 2 + d.len()));
            let sql = format!("SELECT a FROM t {}", String::from_utf8_lossy(d));
            assert!(!plain_select(&sql, PG) && !plain_select(&sql, MY), "{sql}");
        }
    }

    /// The deny-list by definition: the word equals a listed one, ignoring ASCII case.
    fn on_deny_list(word: &[u8]) -> bool {
        DENY.iter().any(|d| d.eq_ignore_ascii_case(word))
    }

    #[test]
    fn denied_agrees_with_the_deny_list_on_near_misses() {
        let mut words: Vec<Vec<u8>> = ["FROM", "WHERE", "aid", "LIKE", "LEFT", "created", "FO"]
            .iter()
            .map(|w| w.as_bytes().to_vec())
            .collect();
        for d in DENY {
            words.push(d.to_vec());
            words.push(d.to_ascii_lowercase());
            words.push(d[..d.len() - 1].to_vec());
            for extra in [b'x', b'1', b'_', b'S'] {
                words.push([*d, &[extra]].concat());
            }
            for k in 0..d.len() {
                let mut flipped = d.to_vec();
                flipped[k] ^= 0x20; // a case flip (`_` becomes DEL, not a word byte: skipped)
                if flipped[k].is_ascii_alphanumeric() || flipped[k] == b'_' {
                    words.push(flipped);
                }
                for other in [b'x', b'0', b'_', d[k] ^ 0x01, d[k] ^ 0x10] {
                    let mut changed = d.to_vec();
                    changed[k] = other;
                    if other.is_ascii_alphanumeric() || other == b'_' {
                        words.push(changed);
                    }
                }
            }
        }
        for word in &words {
            let want = on_deny_list(word);
            // At the end of the text (packed byte by byte) and followed by more text (packed
            // from one 8-byte load).
            assert_eq!(denied(word, 0, word.len()), want, "{word:?}");
            let padded = [b"x ".as_slice(), word, b" FROM t WHERE a = 1"].concat();
            assert_eq!(denied(&padded, 2, 2 + word.len()), want, "{word:?}");
        }
    }

    #[test]
    fn class_tables_match_the_byte_rules() {
        for b in 0..=255u8 {
            let word = b.is_ascii_alphanumeric() || b == b'_';
            assert_eq!(is_word_byte(b), word, "{b:#x}");
            // A word is checked against the deny-list when its first letter starts a denied word.
            let starts_denied = DENY.iter().any(|d| d[0].eq_ignore_ascii_case(&b));
            for table in [&PG_CLASS, &MYSQL_CLASS] {
                assert_eq!(table[b as usize] == KEYWORD, starts_denied, "{b:#x}");
                assert_eq!(table[b as usize] <= DIGIT, word, "{b:#x}");
            }
        }
    }

    /// The byte scanner this table-driven one replaced, kept as its oracle: a plain match per
    /// byte, the deny-list by `eq_ignore_ascii_case`, quotes by `position`.
    fn reference_scanner(sql: &str, dialect: Dialect) -> bool {
        let word_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let plain_number = |w: &[u8]| {
            let digits = w.iter().take_while(|c| c.is_ascii_digit()).count();
            match &w[digits..] {
                [] => true,
                [e, rest @ ..] if e.eq_ignore_ascii_case(&b'e') => {
                    rest.iter().all(u8::is_ascii_digit)
                }
                _ => false,
            }
        };
        let b = sql.as_bytes();
        let mut i = 0;
        while i < b.len() && is_space(b[i]) {
            i += 1;
        }
        if !(b.len() >= i + 6
            && b[i..i + 6].eq_ignore_ascii_case(b"SELECT")
            && b.get(i + 6).is_some_and(|&c| is_space(c) || c == b'*'))
        {
            return false;
        }
        i += 6;
        let mysql = dialect == Dialect::Mysql;
        while i < b.len() {
            let c = b[i];
            match c {
                b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'0'..=b'9' => {
                    let start = i;
                    while i < b.len() && word_byte(b[i]) {
                        i += 1;
                    }
                    let w = &b[start..i];
                    if (c.is_ascii_digit() && !plain_number(w)) || on_deny_list(w) {
                        return false;
                    }
                    continue;
                }
                b'\'' | b'"' | b'`' => {
                    if (c == b'`' && !mysql) || word_byte(b[i - 1]) {
                        return false;
                    }
                    let Some(len) = b[i + 1..].iter().position(|&x| x == c) else {
                        return false;
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
                    if !b.get(i + 1).is_some_and(u8::is_ascii_digit) || word_byte(b[i - 1]) {
                        return false;
                    }
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    if b.get(i).is_some_and(|&x| word_byte(x) || x == b'$') {
                        return false;
                    }
                    continue;
                }
                b':' if mysql => return false,
                b'?' if !mysql => return false,
                b';' => return b[i + 1..].iter().all(|&x| is_space(x)),
                b' ' | b'\t' | b'\n' | b'\r' | b',' | b'.' | b'=' | b'<' | b'>' | b'!' | b'*'
                | b'+' | b'-' | b'/' | b'%' | b':' | b'?' => {}
                _ => return false,
            }
            i += 1;
        }
        true
    }

    #[test]
    fn random_texts_get_the_reference_scanners_answer() {
        let mut rng = Rng(0x0DDB_A115_EED0_0042);
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut sql = String::new();
            for _ in 0..rng.below(3) {
                sql.push([' ', '\t', '\n', '\r'][rng.below(4)]);
            }
            sql.push_str(["SELECT ", "select*", "Select\t", "SELECTx ", "SELEC"][rng.below(5)]);
            for _ in 0..rng.below(14) {
                if rng.below(8) == 0 {
                    // Any ASCII byte, so that every class meets every other.
                    sql.push(char::from(rng.below(128) as u8));
                } else {
                    sql.push_str(PIECES[rng.below(PIECES.len())]);
                }
                if rng.below(3) > 0 {
                    sql.push(' ');
                }
            }
            // Every prefix too, for the ends of text inside words, numbers and strings.
            let step = if round % 8 == 0 { 1 } else { sql.len() + 1 };
            for end in (0..=sql.len()).rev().step_by(step) {
                let Some(text) = sql.get(..end) else { continue };
                for dialect in [PG, MY] {
                    let want = reference_scanner(text, dialect);
                    assert_eq!(scan(text, dialect), want, "{dialect:?} {text:?}");
                    accepted += usize::from(want);
                }
            }
        }
        for (sql, _) in super::super::tests::CORPUS
            .iter()
            .chain(super::super::mysql_tests::CORPUS)
        {
            for dialect in [PG, MY] {
                assert_eq!(scan(sql, dialect), reference_scanner(sql, dialect), "{sql}");
            }
        }
        assert!(accepted > 2_000, "accepted {accepted}");
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
