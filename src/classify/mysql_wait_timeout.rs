//! The session `wait_timeout` a MySQL `SET` statement gives, so that the proxy can end an idle
//! client session when the server would have (a server connection killed for idleness behind a
//! pooled session would otherwise go unnoticed: the proxy answers on another one).
//!
//! Recognised: `SET [SESSION | LOCAL] wait_timeout = n`, `SET @@[session. | local.]wait_timeout
//! := n`, `DEFAULT`, and any of these among other assignments of one `SET` separated by commas.
//! `SET GLOBAL` / `@@global.` changes only later sessions; `interactive_timeout` only what a new
//! interactive session starts with: neither changes this session's timeout.

/// What a statement does to the session's `wait_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitTimeout {
    /// Set to this many seconds.
    Seconds(u64),
    /// Set back to the global value (`DEFAULT`).
    Default,
}

/// MariaDB's and MySQL's upper bound for `wait_timeout` (a larger value is clipped to it).
const MAX_SECONDS: u64 = 31_536_000;

/// The last `wait_timeout` assignment of a `SET` statement, if it has one.
pub fn wait_timeout_setting(sql: &str) -> Option<WaitTimeout> {
    let text = sql.trim().trim_end_matches(';').trim_end();
    let rest = strip_word(text, "set")?;
    let mut found = None;
    for item in split_top_level(rest) {
        if let Some(v) = assignment(item) {
            found = Some(v);
        }
    }
    found
}

/// `item` (one assignment of a `SET`) if it sets the session's `wait_timeout`.
fn assignment(item: &str) -> Option<WaitTimeout> {
    let item = item.trim();
    let (name, value) = match item.split_once(":=") {
        Some(nv) => nv,
        None => item.split_once('=')?,
    };
    let mut name = name.trim();
    if let Some(rest) = strip_word(name, "session").or_else(|| strip_word(name, "local")) {
        name = rest.trim_start();
    }
    let lower = name.to_ascii_lowercase();
    let var = lower
        .strip_prefix("@@session.")
        .or_else(|| lower.strip_prefix("@@local."))
        .or_else(|| lower.strip_prefix("@@"))
        .unwrap_or(&lower);
    if var.trim_matches('`') != "wait_timeout" {
        return None;
    }
    let value = value.trim();
    if value.eq_ignore_ascii_case("default") {
        return Some(WaitTimeout::Default);
    }
    let digits = value.trim_start_matches('+');
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.parse::<u64>().unwrap_or(MAX_SECONDS);
    Some(WaitTimeout::Seconds(n.clamp(1, MAX_SECONDS)))
}

/// `text` without its leading keyword `word` (case-insensitive, followed by a space or `@`).
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    let sep = rest.chars().next()?;
    (head.eq_ignore_ascii_case(word) && (sep.is_whitespace() || sep == '@'))
        .then(|| rest.trim_start())
}

/// The comma-separated assignments of a `SET`, outside quotes and parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<u8>, 0);
    for (i, b) in text.bytes().enumerate() {
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"' | b'`') => quote = Some(b),
            (None, b'(') => depth += 1,
            (None, b')') => depth -= 1,
            (None, b',') if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_assignments_are_recognised() {
        use WaitTimeout::*;
        let cases = [
            ("SET wait_timeout=1", Some(Seconds(1))),
            ("set session wait_timeout = 30;", Some(Seconds(30))),
            ("SET LOCAL wait_timeout=5", Some(Seconds(5))),
            ("SET @@wait_timeout := 7", Some(Seconds(7))),
            ("SET @@session.wait_timeout=8", Some(Seconds(8))),
            ("SET @@local.WAIT_TIMEOUT=9", Some(Seconds(9))),
            ("SET sql_mode='a,b', wait_timeout = 2", Some(Seconds(2))),
            ("SET wait_timeout = DEFAULT", Some(Default)),
            ("SET wait_timeout = 0", Some(Seconds(1))),
            (
                "SET wait_timeout = 99999999999999999999",
                Some(Seconds(MAX_SECONDS)),
            ),
            ("SET GLOBAL wait_timeout = 3", None),
            ("SET @@global.wait_timeout = 3", None),
            ("SET interactive_timeout = 3", None),
            ("SET @wait_timeout = 3", None),
            ("SET wait_timeout = @x", None),
            ("SELECT 1", None),
            ("SET sql_mode = 'wait_timeout=1'", None),
            ("SETwait_timeout=1", None),
        ];
        for (sql, want) in cases {
            assert_eq!(wait_timeout_setting(sql), want, "{sql}");
        }
    }
}
