//! The proxy's own session settings, read from a session's SET texts (PostgreSQL
//! `SET switchyard.<name>`, MySQL `SET @switchyard_<name>`) or startup `options`
//! (`-c switchyard.<name>=...`).

use crate::config::Consistency;

/// A `switchyard.consistency` setting inside a SET text or a startup `options` string
/// (`-c switchyard.consistency=strong`).
pub fn consistency_setting(text: &str) -> Option<Consistency> {
    match proxy_setting(text, "consistency")?.as_str() {
        "eventual" => Some(Consistency::Eventual),
        "read_your_writes" => Some(Consistency::ReadYourWrites),
        "global" => Some(Consistency::Global),
        "strong" => Some(Consistency::Strong),
        _ => None,
    }
}

/// `SET switchyard.debug = on|off` (also `-c switchyard.debug=on`, MySQL `SET @switchyard_debug =
/// 1`): log (and, on PostgreSQL, tell the client in a NOTICE) where each statement goes and why.
pub fn debug_setting(text: &str) -> Option<bool> {
    match proxy_setting(text, "debug")?.as_str() {
        "on" | "true" | "1" | "yes" => Some(true),
        "off" | "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// The value word of `switchyard.<name>` / `switchyard_<name>` assigned in `text`, lower case.
fn proxy_setting(text: &str, name: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let dotted = format!("switchyard.{name}");
    let at = lower
        .find(&dotted)
        .or_else(|| lower.find(&format!("switchyard_{name}")))?
        + dotted.len();
    let rest = lower[at..].trim_start();
    let rest = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix("to "))
        .unwrap_or(rest)
        .trim_start();
    Some(
        rest.trim_start_matches(['\'', '"'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect(),
    )
}

#[cfg(test)]
mod consistency_tests {
    use super::*;

    #[test]
    fn consistency_settings_are_read() {
        assert_eq!(
            consistency_setting("SET switchyard.consistency = strong"),
            Some(Consistency::Strong)
        );
        assert_eq!(
            consistency_setting("set switchyard.consistency to 'global';"),
            Some(Consistency::Global)
        );
        assert_eq!(
            consistency_setting("-c switchyard.consistency=eventual"),
            Some(Consistency::Eventual)
        );
        assert_eq!(
            consistency_setting("SET @switchyard_consistency = 'strong'"),
            Some(Consistency::Strong)
        );
        assert_eq!(consistency_setting("SET search_path = x"), None);
        assert_eq!(
            consistency_setting("SET switchyard.consistency = bogus"),
            None
        );
    }
}
