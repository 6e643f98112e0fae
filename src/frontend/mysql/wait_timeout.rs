//! A session's own `wait_timeout`: a client that sets it is disconnected after that long idle,
//! as the server would disconnect it (the server connections the proxy holds say nothing of it:
//! a pooled one is not the client's, and a closed one is replaced).
//!
//! Only the value a client sets itself is honoured (`SET [SESSION | LOCAL] wait_timeout = n`,
//! `SET @@wait_timeout = n`, `SET @@session.wait_timeout = n`, also among other assignments of
//! the same SET); the server's global default is left to the proxy's own idle limits. `DEFAULT`
//! or a value the proxy cannot read turns it off again (the server's default is hours).

use std::time::Duration;

/// The wait timeout `sql` sets: `Some(Some(d))` a number of seconds, `Some(None)` a value that
/// is not a plain number (`DEFAULT`, an expression), `None` when `sql` does not set it.
pub(super) fn setting(sql: &str) -> Option<Option<Duration>> {
    let s = sql.trim().trim_end_matches(';').trim();
    let head = s.get(..4)?;
    if !head.eq_ignore_ascii_case("set ") {
        return None;
    }
    let mut found = None;
    for assignment in s[4..].split(',') {
        let Some((name, value)) = assignment.split_once('=') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let name = ["session ", "local ", "@@session.", "@@local.", "@@"]
            .iter()
            .fold(name.as_str(), |n, p| {
                n.strip_prefix(p).unwrap_or(n).trim_start()
            });
        if name == "wait_timeout" {
            let secs = value.trim().parse::<u64>().ok().filter(|n| *n > 0);
            found = Some(secs.map(Duration::from_secs));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_clients_use() {
        let one = Some(Some(Duration::from_secs(1)));
        assert_eq!(setting("SET wait_timeout=1"), one);
        assert_eq!(setting("set session wait_timeout = 1;"), one);
        assert_eq!(setting("SET @@wait_timeout = 1"), one);
        assert_eq!(setting("SET @@session.wait_timeout=1"), one);
        assert_eq!(setting("SET LOCAL wait_timeout=1"), one);
        assert_eq!(setting("SET NAMES utf8mb4, wait_timeout = 1"), one);
        assert_eq!(setting("SET wait_timeout = DEFAULT"), Some(None));
        assert_eq!(setting("SET wait_timeout = 0"), Some(None));
        assert_eq!(setting("SET interactive_timeout = 1"), None);
        assert_eq!(setting("SET GLOBAL wait_timeout = 1"), None);
        assert_eq!(setting("SELECT 1"), None);
    }
}
