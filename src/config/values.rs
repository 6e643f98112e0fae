//! Scalar value parsing for the config: durations, sizes, host:port, function names, SCRAM verifier
//! shape, and `${ENV}` substitution over the YAML tree. Pure functions; errors are plain messages.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use base64::Engine as _;
use yaml_serde::Value;

/// Parses a human duration: `"500ms"`, `"5s"`, `"2m"`, `"1h"`, `"1.5s"`, compounds such as `"1m30s"`,
/// and a bare `"0"`. Units: `us`, `ms`, `s`, `m`, `h`, `d`. Returns a message on error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let (mantissa, after) = split_number(rest);
        if mantissa.is_empty() {
            return Err(format!(
                "expected a number at {rest:?} (durations look like \"500ms\", \"5s\", \"2m\", \"1h\")"
            ));
        }
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "" => return Err(format!("{mantissa:?} has no unit (use ms, s, m or h)")),
            other => {
                return Err(format!(
                    "unknown duration unit {other:?} (use ms, s, m or h)"
                ))
            }
        };
        let part =
            scale_decimal(mantissa, unit_nanos).ok_or_else(|| "duration too large".to_owned())?;
        total_nanos = total_nanos
            .checked_add(part)
            .ok_or_else(|| "duration too large".to_owned())?;
        rest = tail.trim_start();
    }
    let secs =
        u64::try_from(total_nanos / 1_000_000_000).map_err(|_| "duration too large".to_owned())?;
    // The remainder is < 1e9 and fits u32.
    let nanos =
        u32::try_from(total_nanos % 1_000_000_000).map_err(|_| "duration too large".to_owned())?;
    Ok(Duration::new(secs, nanos))
}

/// Parses a size: a bare integer (bytes) or a number with a unit `B`, `KiB`, `MiB`, `GiB`, `TiB`
/// (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000); units are case-insensitive and a
/// fraction (`"1.5GiB"`) is rounded down to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let (mantissa, after) = split_number(s);
    if mantissa.is_empty() {
        return Err("expected a size like 65536, \"16KiB\", \"64MiB\" or \"1GB\"".to_owned());
    }
    let unit = after.trim();
    let mult: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    if unit.is_empty() && mantissa.contains('.') {
        return Err("a size in bytes must be a whole number".to_owned());
    }
    let bytes = scale_decimal(mantissa, mult).ok_or_else(|| "size too large".to_owned())?;
    u64::try_from(bytes).map_err(|_| "size too large".to_owned())
}

/// Splits a leading unsigned decimal number (`"12"`, `"1.5"`) from the rest of the string.
fn split_number(s: &str) -> (&str, &str) {
    let mut seen_dot = false;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        if c.is_ascii_digit() {
            end = i + 1;
        } else if c == '.' && !seen_dot {
            seen_dot = true;
            end = i + 1;
        } else {
            break;
        }
    }
    let number = &s[..end];
    if number == "." {
        return ("", s);
    }
    (number, &s[end..])
}

/// `mantissa` (digits with an optional fraction) times `unit`, rounded down; `None` on overflow.
fn scale_decimal(mantissa: &str, unit: u128) -> Option<u128> {
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let mut total = int.checked_mul(unit)?;
    if !frac_part.is_empty() {
        // Limit the precision we honour; 18 digits is far below a nanosecond or a byte here.
        let digits = &frac_part[..frac_part.len().min(18)];
        let frac: u128 = digits.parse().ok()?;
        let scale = 10u128.checked_pow(u32::try_from(digits.len()).ok()?)?;
        total = total.checked_add(frac.checked_mul(unit)? / scale)?;
    }
    Some(total)
}

/// Replaces `${NAME}` and `${NAME:-default}` in `text`; `$$` is a literal `$`, and a `$` followed by
/// anything else is kept as written (so `SCRAM-SHA-256$4096:...` needs no escaping).
/// `:-default` applies when the variable is unset or empty, as in the shell.
pub fn substitute_env(
    text: &str,
    env: &dyn Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let close = body_and_tail.find('}').ok_or_else(|| {
                format!("unterminated \"${{\" in {text:?} (write \"$$\" for a literal \"$\")")
            })?;
            let body = &body_and_tail[..close];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            if !is_env_name(name) {
                return Err(format!(
                    "invalid substitution \"${{{body}}}\": expected ${{NAME}} or ${{NAME:-default}}"
                ));
            }
            match (env(name), default) {
                (Ok(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Ok(v), _) => out.push_str(&v),
                (Err(std::env::VarError::NotPresent), Some(d)) => out.push_str(d),
                (Err(std::env::VarError::NotPresent), None) => {
                    return Err(format!("environment variable {name} is not set"))
                }
                (Err(std::env::VarError::NotUnicode(_)), _) => {
                    return Err(format!("environment variable {name} is not valid UTF-8"))
                }
            }
            rest = &body_and_tail[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Applies [`substitute_env`] to every string scalar of a parsed YAML tree (not to keys), pushing
/// `(path, message)` for each failure; paths use the same spelling as serde_path_to_error.
pub fn substitute_tree(
    value: &mut Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Result<String, std::env::VarError>,
    errors: &mut Vec<(String, String)>,
) {
    match value {
        Value::String(s) => match substitute_env(s, env) {
            Ok(new) => *s = new,
            Err(message) => errors.push((display_path(path), message)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                substitute_tree(item, path, env, errors);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match key {
                    Value::String(k) => path.push_str(k),
                    Value::Bool(b) => path.push_str(&b.to_string()),
                    Value::Number(n) => path.push_str(&n.to_string()),
                    _ => path.push('?'),
                }
                substitute_tree(item, path, env, errors);
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => substitute_tree(&mut tagged.value, path, env, errors),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        ".".to_owned()
    } else {
        path.to_owned()
    }
}

/// Lower-cases a function name and strips any schema (`Audit.Log_Event` -> `log_event`).
pub fn normalize_function_name(raw: &str) -> Option<String> {
    let lower = raw.trim().to_ascii_lowercase();
    let name = lower.rsplit('.').next().unwrap_or("").trim();
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    ok.then(|| name.to_owned())
}

/// Splits `host:port`, where host is an IPv4 address, a DNS name or a bracketed IPv6 address.
/// The returned host has no brackets.
pub fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let s = text.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| "missing ']' after the IPv6 address".to_owned())?;
        inside
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{inside:?} is not an IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| "missing :port after the address".to_owned())?;
        (inside.to_owned(), port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| "missing :port (write host:port)".to_owned())?;
        if host.contains(':') {
            return Err("IPv6 addresses need brackets, e.g. [::1]:5432".to_owned());
        }
        if host.parse::<Ipv4Addr>().is_err() && !is_dns_name(host) {
            return Err(format!("{host:?} is neither an IP address nor a DNS name"));
        }
        (host.to_owned(), port)
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid port {port:?} (1-65535)"))?;
    if port == 0 {
        return Err("port 0 is not a server port".to_owned());
    }
    Ok((host, port))
}

fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Checks the shape of `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 parts,
/// iterations > 0, 32-byte keys), as stored in PostgreSQL's `pg_authid.rolpassword`.
pub fn check_scram_verifier(verifier: &str) -> Result<(), String> {
    const FORMAT: &str = "expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>";
    let b64 = base64::engine::general_purpose::STANDARD;
    let rest = verifier
        .strip_prefix("SCRAM-SHA-256$")
        .ok_or_else(|| format!("{FORMAT} (it must start with \"SCRAM-SHA-256$\")"))?;
    let (iter_salt, keys) = rest
        .split_once('$')
        .ok_or_else(|| format!("{FORMAT} (missing '$' before the keys)"))?;
    let (iterations, salt) = iter_salt
        .split_once(':')
        .ok_or_else(|| format!("{FORMAT} (missing ':' between iterations and salt)"))?;
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| format!("iteration count {iterations:?} is not a number"))?;
    if iterations == 0 {
        return Err("iteration count must be greater than zero".to_owned());
    }
    let salt = b64
        .decode(salt)
        .map_err(|e| format!("salt is not valid base64: {e}"))?;
    if salt.is_empty() {
        return Err("salt is empty".to_owned());
    }
    let (stored, server) = keys
        .split_once(':')
        .ok_or_else(|| format!("{FORMAT} (missing ':' between StoredKey and ServerKey)"))?;
    for (what, key) in [("StoredKey", stored), ("ServerKey", server)] {
        let bytes = b64
            .decode(key)
            .map_err(|e| format!("{what} is not valid base64: {e}"))?;
        if bytes.len() != 32 {
            return Err(format!(
                "{what} decodes to {} bytes, expected 32",
                bytes.len()
            ));
        }
    }
    Ok(())
}
