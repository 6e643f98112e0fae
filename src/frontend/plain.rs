//! Recognising a statement by its exact words (a plain `BEGIN`, `COMMIT`...), for what the
//! sessions answer themselves.

/// Whether `text` is exactly one of the `words` lists: ASCII case-insensitive, blanks and one final
/// `;` allowed, nothing else (no comments, options or further statements).
pub fn is_plain(text: &str, words: &[&[&str]]) -> bool {
    let text = text.trim();
    let text = text.strip_suffix(';').unwrap_or(text);
    words.iter().any(|w| {
        let mut got = text.split_ascii_whitespace();
        w.iter()
            .all(|x| got.next().is_some_and(|g| g.eq_ignore_ascii_case(x)))
            && got.next().is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_words_match() {
        let begin: &[&[&str]] = &[&["BEGIN"], &["START", "TRANSACTION"]];
        for t in [
            "BEGIN",
            "begin;",
            "  Begin ; ",
            "start  transaction;",
            "\tBEGIN\n",
        ] {
            assert!(is_plain(t, begin), "{t:?}");
        }
        for t in [
            "",
            ";",
            "BEGIN;;",
            "BEGIN; SELECT 1",
            "BEGIN WORK",
            "START TRANSACTION READ ONLY",
            "/* c */ BEGIN",
            "BEGIN -- c",
        ] {
            assert!(!is_plain(t, begin), "{t:?}");
        }
    }
}
