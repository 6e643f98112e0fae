//! What a PostgreSQL session-setting text or startup packet does to the session's default
//! transaction isolation (a hot standby refuses serializable transactions, so the reads of a
//! serializable session need the primary).

use sqlparser::tokenizer::Token;

use super::pg::significant_tokens;
use super::pg_functions::is_kw;

/// A change a session-setting text makes to `default_transaction_isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationChange {
    /// Set to serializable (`true`) or to a level a hot standby runs (`false`).
    Set(bool),
    /// Back to the session's default: `RESET`, `SET ... TO DEFAULT`, `RESET ALL`, `DISCARD ALL`.
    Reset,
}

const SETTING: &str = "default_transaction_isolation";

/// The net effect of a session-setting text (the last of its statements that touches the setting
/// wins); `None` when it leaves the setting alone. A value it cannot read counts as serializable
/// (the primary serves every isolation level).
pub fn isolation_change(text: &str) -> Option<IsolationChange> {
    let mentions = |w: &str| {
        text.as_bytes()
            .windows(w.len())
            .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
    };
    // Cheap filter: most session texts (search_path, time zone, names) never get tokenized here.
    if !(mentions("isolation") || mentions("reset") || mentions("discard")) {
        return None;
    }
    let Some(toks) = significant_tokens(text) else {
        return mentions("isolation").then_some(IsolationChange::Set(true));
    };
    toks.rsplit(|t| *t == Token::SemiColon).find_map(statement)
}

fn statement(toks: &[Token]) -> Option<IsolationChange> {
    let kw = |i: usize, k: &str| toks.get(i).is_some_and(|t| is_kw(t, k));
    if kw(0, "DISCARD") {
        return kw(1, "ALL").then_some(IsolationChange::Reset);
    }
    if kw(0, "RESET") {
        return (kw(1, "ALL") || is_setting(toks.get(1))).then_some(IsolationChange::Reset);
    }
    if !kw(0, "SET") || kw(1, "LOCAL") {
        return None;
    }
    let mut i = 1;
    if kw(1, "SESSION") {
        if kw(2, "CHARACTERISTICS") {
            // SET SESSION CHARACTERISTICS AS TRANSACTION mode [, ...]
            let at = toks.iter().position(|t| is_kw(t, "ISOLATION"))?;
            return Some(IsolationChange::Set(!harmless_level(&toks[at + 2..])));
        }
        i = 2;
    }
    if !is_setting(toks.get(i)) {
        return None;
    }
    let value = match toks.get(i + 1) {
        Some(Token::Eq) => &toks[i + 2..],
        Some(t) if is_kw(t, "TO") => &toks[i + 2..],
        _ => return Some(IsolationChange::Set(true)),
    };
    match value {
        [t] if is_kw(t, "DEFAULT") => Some(IsolationChange::Reset),
        [Token::SingleQuotedString(s)] => Some(IsolationChange::Set(!harmless_text(s))),
        [Token::Word(w)] if w.quote_style.is_none() => {
            Some(IsolationChange::Set(!harmless_text(&w.value)))
        }
        _ => Some(IsolationChange::Set(true)),
    }
}

fn is_setting(t: Option<&Token>) -> bool {
    matches!(t, Some(Token::Word(w)) if w.value.eq_ignore_ascii_case(SETTING))
}

/// `READ COMMITTED` / `READ UNCOMMITTED` / `REPEATABLE READ` as keywords (a standby runs them).
fn harmless_level(toks: &[Token]) -> bool {
    let kw = |i: usize, k: &str| toks.get(i).is_some_and(|t| is_kw(t, k));
    (kw(0, "READ") && (kw(1, "COMMITTED") || kw(1, "UNCOMMITTED")))
        || (kw(0, "REPEATABLE") && kw(1, "READ"))
}

/// A level written as a value (`'read committed'`, `repeatable\ read` in a startup option).
fn harmless_text(value: &str) -> bool {
    let words: Vec<String> = value
        .split(|c: char| c.is_ascii_whitespace() || c == '\\')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    matches!(
        words.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ["read", "committed"] | ["read", "uncommitted"] | ["repeatable", "read"]
    )
}

/// Whether a text sets the current transaction's isolation to serializable (`SET TRANSACTION
/// ISOLATION LEVEL SERIALIZABLE`, `SET [LOCAL|SESSION] transaction_isolation = 'serializable'`),
/// which a hot standby refuses. A value it cannot read counts as serializable.
pub fn sets_transaction_serializable(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if !lower.contains("transaction") || !lower.contains("serializable") {
        return false;
    }
    let Some(toks) = significant_tokens(text) else {
        return true;
    };
    toks.split(|t| *t == Token::SemiColon).any(|st| {
        let kw = |i: usize, k: &str| st.get(i).is_some_and(|t| is_kw(t, k));
        if !kw(0, "SET") {
            return false;
        }
        let i = if kw(1, "LOCAL") || kw(1, "SESSION") { 2 } else { 1 };
        if kw(i, "TRANSACTION") {
            let at = st.iter().position(|t| is_kw(t, "ISOLATION"));
            return at.is_some_and(|at| !harmless_level(&st[at + 2..]));
        }
        let named = matches!(st.get(i), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("transaction_isolation"));
        named
            && match st.get(i + 2..) {
                Some([Token::SingleQuotedString(v)]) => !harmless_text(v),
                Some([Token::Word(w)]) => !harmless_text(&w.value),
                _ => true,
            }
    })
}

/// Whether the startup packet makes the session serializable: a `default_transaction_isolation`
/// parameter, or `-c default_transaction_isolation=...` / `--default_transaction_isolation=...` in
/// `options` (the last one wins, as on the server). `None`: the packet leaves it to the server.
pub fn startup_serializable(params: &[(String, String)]) -> Option<bool> {
    super::pg_setting::startup_setting(params, SETTING).map(|v| !harmless_text(&v))
}

#[cfg(test)]
mod tests {
    use super::IsolationChange::{Reset, Set};
    use super::*;

    #[test]
    fn transaction_serializable_settings() {
        for t in [
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "set transaction read only, isolation level serializable;",
            "SET transaction_isolation = 'serializable'",
            "SET LOCAL transaction_isolation TO serializable",
            "SET SESSION transaction_isolation = 'SERIALIZABLE'",
        ] {
            assert!(sets_transaction_serializable(t), "{t}");
        }
        for t in [
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "SET TRANSACTION READ ONLY",
            "SET default_transaction_isolation = 'serializable'",
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET transaction_isolation = 'read committed'",
            "SELECT 'transaction serializable'",
        ] {
            assert!(!sets_transaction_serializable(t), "{t}");
        }
    }

    #[test]
    fn session_texts() {
        for (text, want) in [
            ("SET default_transaction_isolation = 'serializable'", Some(Set(true))),
            ("set default_transaction_isolation to serializable", Some(Set(true))),
            ("SET SESSION default_transaction_isolation TO serializable", Some(Set(true))),
            ("SET default_transaction_isolation = 'read committed'", Some(Set(false))),
            ("SET default_transaction_isolation TO 'REPEATABLE READ'", Some(Set(false))),
            ("SET default_transaction_isolation = DEFAULT", Some(Reset)),
            ("SET default_transaction_isolation = 'bogus'", Some(Set(true))),
            ("SET default_transaction_isolation = $$serializable$$", Some(Set(true))),
            (
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                Some(Set(true)),
            ),
            (
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY, ISOLATION LEVEL READ COMMITTED",
                Some(Set(false)),
            ),
            ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", None),
            ("RESET default_transaction_isolation", Some(Reset)),
            ("RESET ALL", Some(Reset)),
            ("DISCARD ALL", Some(Reset)),
            ("RESET search_path", None),
            ("SET search_path = a, b", None),
            ("SET LOCAL default_transaction_isolation = serializable", None),
            (
                "SET default_transaction_isolation = serializable; RESET ALL",
                Some(Reset),
            ),
            (
                "RESET ALL; SET default_transaction_isolation = serializable",
                Some(Set(true)),
            ),
            ("SET default_transaction_deferrable = on", None),
            ("SET default_transaction_read_only = on", None),
        ] {
            assert_eq!(isolation_change(text), want, "{text}");
        }
    }

    #[test]
    fn startup_packets() {
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(startup_serializable(&p("user", "app")), None);
        assert_eq!(
            startup_serializable(&p(
                "options",
                "-c default_transaction_isolation=serializable"
            )),
            Some(true)
        );
        assert_eq!(
            startup_serializable(&p(
                "options",
                "--default-transaction-isolation=serializable"
            )),
            Some(true)
        );
        assert_eq!(
            startup_serializable(&p(
                "options",
                "-c search_path=x -c default_transaction_isolation=read\\ committed"
            )),
            Some(false)
        );
        assert_eq!(
            startup_serializable(&p(
                "options",
                "-cdefault_transaction_isolation=serializable"
            )),
            Some(true)
        );
        assert_eq!(
            startup_serializable(&p("default_transaction_isolation", "serializable")),
            Some(true)
        );
        assert_eq!(
            startup_serializable(&p("default_transaction_isolation", "repeatable read")),
            Some(false)
        );
    }
}
