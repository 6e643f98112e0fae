//! What a PostgreSQL session-setting text or startup packet does to one named setting (the
//! session-scope `SET`, `RESET`, `RESET ALL`, `DISCARD ALL`, and `-c name=value` in `options`),
//! and durations written as PostgreSQL reads them (`'1s'`, `500`, `'2 min'`).

use sqlparser::tokenizer::Token;

use super::pg::significant_tokens;
use super::pg_functions::is_kw;

/// A change a session-setting text makes to a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingChange {
    /// Set to this value (as written, unquoted).
    Set(String),
    /// Back to the session's default: `RESET`, `SET ... TO DEFAULT`, `RESET ALL`, `DISCARD ALL`.
    Reset,
    /// Set to something this parser does not read (a list, an expression).
    Unreadable,
}

/// The net effect on setting `name` of a session-setting text (the last of its statements that
/// touches it wins); `None` when it leaves the setting alone. `SET LOCAL` lasts for its
/// transaction only and is not a change of the session's setting.
pub fn setting_change(text: &str, name: &str) -> Option<SettingChange> {
    let mentions = |w: &str| {
        text.as_bytes()
            .windows(w.len())
            .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
    };
    if !(mentions(name) || mentions("reset") || mentions("discard")) {
        return None;
    }
    let Some(toks) = significant_tokens(text) else {
        return mentions(name).then_some(SettingChange::Unreadable);
    };
    toks.rsplit(|t| *t == Token::SemiColon)
        .find_map(|s| statement(s, name))
}

fn statement(toks: &[Token], name: &str) -> Option<SettingChange> {
    let kw = |i: usize, k: &str| toks.get(i).is_some_and(|t| is_kw(t, k));
    let is_name = |i: usize| matches!(toks.get(i), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case(name));
    if kw(0, "DISCARD") {
        return kw(1, "ALL").then_some(SettingChange::Reset);
    }
    if kw(0, "RESET") {
        return (kw(1, "ALL") || is_name(1)).then_some(SettingChange::Reset);
    }
    if !kw(0, "SET") || kw(1, "LOCAL") {
        return None;
    }
    let i = if kw(1, "SESSION") { 2 } else { 1 };
    if !is_name(i) {
        return None;
    }
    let value = match toks.get(i + 1) {
        Some(Token::Eq) => &toks[i + 2..],
        Some(t) if is_kw(t, "TO") => &toks[i + 2..],
        _ => return Some(SettingChange::Unreadable),
    };
    Some(match value {
        [t] if is_kw(t, "DEFAULT") => SettingChange::Reset,
        [Token::SingleQuotedString(s)] => SettingChange::Set(s.clone()),
        [Token::Number(n, _)] => SettingChange::Set(n.clone()),
        [Token::Word(w)] if w.quote_style.is_none() => SettingChange::Set(w.value.clone()),
        _ => SettingChange::Unreadable,
    })
}

/// The value the startup packet gives setting `name`: a parameter of that name, or
/// `-c name=value` / `--name=value` in `options` (the last one wins, as on the server).
pub fn startup_setting(params: &[(String, String)], name: &str) -> Option<String> {
    let mut out = None;
    for (k, v) in params {
        if k.eq_ignore_ascii_case(name) {
            out = Some(v.clone());
        } else if k == "options" {
            for a in option_args(v) {
                let a = a
                    .strip_prefix("--")
                    .or_else(|| a.strip_prefix("-c"))
                    .unwrap_or(&a);
                if let Some((n, value)) = a.split_once('=') {
                    if n.replace('-', "_").eq_ignore_ascii_case(name) {
                        out = Some(value.to_string());
                    }
                }
            }
        }
    }
    out
}

/// The arguments of an `options` string: split at unescaped blanks, `\` escaping.
fn option_args(options: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        args.push(cur);
    }
    args
}

/// A time setting's value in milliseconds, as PostgreSQL reads it: a number in the setting's
/// `default_unit_ms`, or with a unit (`us`, `ms`, `s`, `min`, `h`, `d`), fractions rounded.
/// `None` for anything else (the server refuses it too) or a negative value.
pub fn duration_ms(value: &str, default_unit_ms: f64) -> Option<u64> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match unit.trim() {
        "" => default_unit_ms,
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = (n * scale).round();
    (ms.is_finite() && ms >= 0.0 && ms <= i32::MAX as f64).then_some(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::SettingChange::{Reset, Set, Unreadable};
    use super::*;

    const NAME: &str = "idle_session_timeout";

    #[test]
    fn session_texts() {
        let set = |s: &str| Some(Set(s.to_string()));
        for (text, want) in [
            ("SET idle_session_timeout = '1s'", set("1s")),
            ("set session idle_session_timeout to 500", set("500")),
            ("SET idle_session_timeout = DEFAULT", Some(Reset)),
            ("RESET idle_session_timeout", Some(Reset)),
            ("RESET ALL", Some(Reset)),
            ("DISCARD ALL", Some(Reset)),
            ("SET LOCAL idle_session_timeout = '1s'", None),
            ("SET statement_timeout = '1s'", None),
            ("RESET statement_timeout", None),
            ("SET idle_session_timeout = 1, 2", Some(Unreadable)),
            ("SET idle_session_timeout = '1s'; RESET ALL", Some(Reset)),
            ("RESET ALL; SET idle_session_timeout = 0", set("0")),
        ] {
            assert_eq!(setting_change(text, NAME), want, "{text}");
        }
    }

    #[test]
    fn startup_packets() {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            startup_setting(&[p("idle_session_timeout", "2s")], NAME).as_deref(),
            Some("2s")
        );
        assert_eq!(
            startup_setting(
                &[p("options", "-c search_path=x -c idle_session_timeout=3s")],
                NAME
            )
            .as_deref(),
            Some("3s")
        );
        assert_eq!(
            startup_setting(&[p("options", "--idle-session-timeout=4min")], NAME).as_deref(),
            Some("4min")
        );
        assert_eq!(startup_setting(&[p("user", "app")], NAME), None);
    }

    #[test]
    fn durations() {
        for (v, want) in [
            ("1s", Some(1_000)),
            ("500", Some(500)),
            (" 2 min ", Some(120_000)),
            ("1.5s", Some(1_500)),
            ("0", Some(0)),
            ("1h", Some(3_600_000)),
            ("-1", None),
            ("1 fortnight", None),
            ("s", None),
        ] {
            assert_eq!(duration_ms(v, 1.0), want, "{v}");
        }
    }
}
