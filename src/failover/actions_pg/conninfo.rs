//! libpq connection strings (`primary_conninfo`): parse, quote, repoint; PostgreSQL SQL literals.

/// A SQL string literal in escape-string syntax (`E'...'`), safe whatever
/// `standard_conforming_strings` says.
pub fn sql_literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Parses a libpq `key=value` connection string (values optionally single-quoted; a backslash
/// escapes the next character, quoted or not). URIs and malformed strings are errors.
pub fn parse_conninfo(s: &str) -> Result<Vec<(String, String)>, String> {
    let t = s.trim_start();
    if t.starts_with("postgresql://") || t.starts_with("postgres://") {
        return Err("connection URIs are not supported; use key=value form".into());
    }
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut pairs = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            return Ok(pairs);
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        skip_ws(&mut i);
        if i >= chars.len() || chars[i] != '=' {
            return Err(format!("missing \"=\" after {key:?}"));
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = String::new();
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated quoted value of {key:?}")),
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') if i + 1 < chars.len() => {
                        value.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
        }
        pairs.push((key, value));
    }
}

/// One conninfo value, quoted when it is empty or holds whitespace, quotes or backslashes.
pub fn quote_conninfo_value(v: &str) -> String {
    let plain = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Formats `key=value` pairs as a conninfo string.
pub fn format_conninfo(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", quote_conninfo_value(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `conninfo` pointed at `host`:`port`: the first `host` and `port` are replaced in place (or
/// appended), further ones and any `hostaddr` dropped; every other key is kept as it was.
pub fn repoint_conninfo(conninfo: &str, host: &str, port: u16) -> Result<String, String> {
    let mut out = Vec::new();
    let (mut host_done, mut port_done) = (false, false);
    for (k, v) in parse_conninfo(conninfo)? {
        match k.as_str() {
            "host" if !host_done => {
                out.push((k, host.to_owned()));
                host_done = true;
            }
            "host" | "hostaddr" => {}
            "port" if !port_done => {
                out.push((k, port.to_string()));
                port_done = true;
            }
            "port" => {}
            _ => out.push((k, v)),
        }
    }
    if !host_done {
        out.push(("host".into(), host.to_owned()));
    }
    if !port_done {
        out.push(("port".into(), port.to_string()));
    }
    Ok(format_conninfo(&out))
}

/// The `host` and `port` of a conninfo, for logs (never the password).
pub(super) fn conninfo_target(conninfo: &str) -> String {
    let pairs = parse_conninfo(conninfo).unwrap_or_default();
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or("?", |(_, v)| v.as_str())
            .to_owned()
    };
    format!("{}:{}", get("host"), get("port"))
}

/// Replication slot names are lower-case letters, digits and underscores.
pub(super) fn valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, String)> {
        parse_conninfo(s).unwrap()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn conninfo_parses_plain_and_quoted_values() {
        assert_eq!(
            pairs("user=postgres password='a b\\'c\\\\' host = 10.0.0.1 port=5432"),
            vec![
                kv("user", "postgres"),
                kv("password", "a b'c\\"),
                kv("host", "10.0.0.1"),
                kv("port", "5432")
            ]
        );
        assert_eq!(pairs("  "), vec![]);
        assert_eq!(
            pairs("password=x\\ y sslmode=''"),
            vec![kv("password", "x y"), kv("sslmode", "")]
        );
        assert_eq!(pairs("options='-c a=b'"), vec![kv("options", "-c a=b")]);
    }

    #[test]
    fn conninfo_rejects_garbage_and_uris() {
        assert!(parse_conninfo("host").is_err());
        assert!(parse_conninfo("host 5").is_err());
        assert!(parse_conninfo("password='open").is_err());
        assert!(parse_conninfo("postgresql://u@h:5/db").is_err());
        assert!(parse_conninfo(" postgres://h").is_err());
    }

    #[test]
    fn conninfo_values_quote_when_needed() {
        assert_eq!(quote_conninfo_value("abc"), "abc");
        assert_eq!(quote_conninfo_value(""), "''");
        assert_eq!(quote_conninfo_value("a b"), "'a b'");
        assert_eq!(quote_conninfo_value("it's"), "'it\\'s'");
        assert_eq!(quote_conninfo_value("back\\slash"), "'back\\\\slash'");
        for v in ["", "a b", "it's", "x\\'y z", "plain", "=\t="] {
            let text = format_conninfo(&[kv("password", v)]);
            assert_eq!(pairs(&text), vec![kv("password", v)], "{text}");
        }
    }

    #[test]
    fn repoint_replaces_host_and_port_and_keeps_the_rest() {
        let old = "user=postgres password='p w' channel_binding=prefer host=127.0.0.1 port=5432 \
                   sslmode=prefer application_name=replica2";
        let new = repoint_conninfo(old, "10.1.1.1", 6000).unwrap();
        assert_eq!(
            new,
            "user=postgres password='p w' channel_binding=prefer host=10.1.1.1 port=6000 \
             sslmode=prefer application_name=replica2"
        );
        // Idempotent.
        assert_eq!(repoint_conninfo(&new, "10.1.1.1", 6000).unwrap(), new);
    }

    #[test]
    fn repoint_drops_hostaddr_and_extra_hosts_and_appends_missing_keys() {
        assert_eq!(
            repoint_conninfo("hostaddr=1.2.3.4 host=a,b port=1,2 user=u", "h", 7).unwrap(),
            "host=h port=7 user=u"
        );
        assert_eq!(
            repoint_conninfo("user=u", "db.example", 5433).unwrap(),
            "user=u host=db.example port=5433"
        );
        assert!(repoint_conninfo("user", "h", 1).is_err());
    }

    #[test]
    fn sql_literals_escape_quotes_and_backslashes() {
        assert_eq!(sql_literal("abc"), "E'abc'");
        assert_eq!(sql_literal("a'b\\c"), "E'a''b\\\\c'");
    }

    #[test]
    fn slot_names_are_checked() {
        assert!(valid_slot_name("replica_2"));
        assert!(!valid_slot_name(""));
        assert!(!valid_slot_name("x'; DROP"));
        assert!(!valid_slot_name("Upper"));
    }

    #[test]
    fn target_is_shown_without_password() {
        let t = conninfo_target("user=u password=secret host=h port=5");
        assert_eq!(t, "h:5");
    }
}
