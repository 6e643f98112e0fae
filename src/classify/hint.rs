//! Leading-comment routing hints (`/* switchyard: primary */`, `-- switchyard: replica`).
//!
//! Only comments that come before the first statement count; a hint comment after any SQL text
//! is ignored. Accepted spellings (case-insensitive, whitespace tolerant, `:` or `=` after the
//! prefix):
//!
//! - `/* switchyard: primary */`, `/* switchyard: replica */`
//! - `/* switchyard_route: primary */`, `/* switchyard: route=replica */`
//! - `/* switchyard: consistency=strong */` (strong consistency means "read the primary")
//! - the same after `--` (up to the end of the line)
//!
//! Several leading comments may be present; the first one that is a valid hint wins.
//!
//! MySQL ([`parse_leading_hint_mysql`]) also accepts `# switchyard: primary`; there `--` starts a
//! comment only when followed by whitespace, block comments do not nest, and an executable
//! comment (`/*! ... */`, `/*M! ... */`) is SQL, so it ends the leading comments.

use super::Hint;

/// Returns the hint carried by the comments that precede the first statement, if any.
pub fn parse_leading_hint(sql: &str) -> Option<Hint> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            let end = after.find('\n').unwrap_or(after.len());
            if let Some(h) = hint_from_comment(&after[..end]) {
                return Some(h);
            }
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("/*") {
            // PostgreSQL block comments nest.
            let (body, remaining) = split_block_comment(after)?;
            if let Some(h) = hint_from_comment(body) {
                return Some(h);
            }
            rest = remaining;
        } else {
            return None;
        }
    }
}

/// MySQL/MariaDB flavour of [`parse_leading_hint`].
pub fn parse_leading_hint_mysql(sql: &str) -> Option<Hint> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        let line_body = rest.strip_prefix('#').or_else(|| {
            rest.strip_prefix("--")
                .filter(|a| a.is_empty() || a.starts_with(|c: char| c.is_whitespace()))
        });
        if let Some(after) = line_body {
            let end = after.find('\n').unwrap_or(after.len());
            if let Some(h) = hint_from_comment(&after[..end]) {
                return Some(h);
            }
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("/*") {
            if after.starts_with('!') || after.starts_with("M!") {
                return None;
            }
            let end = after.find("*/")?;
            if let Some(h) = hint_from_comment(&after[..end]) {
                return Some(h);
            }
            rest = &after[end + 2..];
        } else {
            return None;
        }
    }
}

/// Splits `after` (the text just after an opening `/*`) into the comment body and the text after
/// the matching `*/`. Returns `None` for an unterminated comment.
fn split_block_comment(after: &str) -> Option<(&str, &str)> {
    let bytes = after.as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                if depth == 0 {
                    return Some((&after[..i], &after[i + 2..]));
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// Interprets one comment body (without its delimiters).
fn hint_from_comment(body: &str) -> Option<Hint> {
    let text = body.trim().to_ascii_lowercase();
    let after_prefix = text
        .strip_prefix("switchyard_route")
        .or_else(|| text.strip_prefix("switchyard"))?;
    let after_sep = after_prefix
        .trim_start()
        .strip_prefix(':')
        .or_else(|| after_prefix.trim_start().strip_prefix('='))?;
    let value = after_sep.trim();
    let value = match value.split_once('=') {
        Some((key, v)) => {
            let v = v.trim();
            match key.trim() {
                "route" | "target" => v,
                "consistency" if v == "strong" => "primary",
                _ => return None,
            }
        }
        None => value,
    };
    match value {
        "primary" => Some(Hint::Primary),
        "replica" => Some(Hint::Replica),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_spellings() {
        let cases = [
            ("/* switchyard: primary */ SELECT 1", Some(Hint::Primary)),
            ("/*switchyard:replica*/SELECT 1", Some(Hint::Replica)),
            (
                "  /*  SwitchYard :  PRIMARY  */ SELECT 1",
                Some(Hint::Primary),
            ),
            ("-- switchyard: replica\nSELECT 1", Some(Hint::Replica)),
            ("--switchyard:primary\nSELECT 1", Some(Hint::Primary)),
            (
                "/* switchyard_route: primary */ SELECT 1",
                Some(Hint::Primary),
            ),
            (
                "/* switchyard_route = replica */ SELECT 1",
                Some(Hint::Replica),
            ),
            (
                "/* switchyard: route=replica */ SELECT 1",
                Some(Hint::Replica),
            ),
            (
                "/* switchyard: consistency=strong */ SELECT 1",
                Some(Hint::Primary),
            ),
            (
                "/* app=x */ /* switchyard: replica */ SELECT 1",
                Some(Hint::Replica),
            ),
            (
                "/* outer /* nested */ still */ -- switchyard: primary\nSELECT 1",
                Some(Hint::Primary),
            ),
            ("-- switchyard: primary", Some(Hint::Primary)),
        ];
        for (sql, want) in cases {
            assert_eq!(parse_leading_hint(sql), want, "{sql}");
        }
    }

    #[test]
    fn mysql_spellings() {
        let cases = [
            ("/* switchyard: primary */ SELECT 1", Some(Hint::Primary)),
            ("# switchyard: primary\nSELECT 1", Some(Hint::Primary)),
            ("#switchyard: replica\nSELECT 1", Some(Hint::Replica)),
            ("-- switchyard: replica\nSELECT 1", Some(Hint::Replica)),
            ("--\tswitchyard: primary\nSELECT 1", Some(Hint::Primary)),
            (
                "# app\n-- x\n/* switchyard: route=replica */ SELECT 1",
                Some(Hint::Replica),
            ),
            // `--` without whitespace is two minus signs in MySQL, not a comment.
            ("--switchyard:primary\nSELECT 1", None),
            // Executable comments are SQL: no hint after them counts.
            ("/*!40101 SET NAMES utf8 */ /* switchyard: primary */", None),
            ("/*M!100100 SELECT 1 */ /* switchyard: primary */", None),
            // MySQL block comments do not nest: the hint is outside the comment here.
            ("/* a /* b */ switchyard: primary */ SELECT 1", None),
            ("/* unterminated switchyard: primary", None),
            ("SELECT 1 # switchyard: primary", None),
        ];
        for (sql, want) in cases {
            assert_eq!(parse_leading_hint_mysql(sql), want, "{sql}");
        }
    }

    #[test]
    fn rejected_spellings() {
        let cases = [
            "SELECT 1 /* switchyard: primary */",
            "SELECT 1; /* switchyard: primary */ SELECT 2",
            "/* switchyard: elsewhere */ SELECT 1",
            "/* switchyard: consistency=eventual */ SELECT 1",
            "/* switchyard primary */ SELECT 1",
            "/* switchyardx: primary */ SELECT 1",
            "/* switchyard: primary SELECT 1",
            "",
            "/* nothing */",
        ];
        for sql in cases {
            assert_eq!(parse_leading_hint(sql), None, "{sql}");
        }
    }
}
