//! MySQL/MariaDB functions and variables: which calls, `@@` reads and SET assignments write,
//! pin, are replayed, or are safe.
//!
//! Policy (fail closed), as for PostgreSQL: a read-only statement may call only built-ins on
//! [`SAFE`] (or a safe family prefix such as `json_`, `st_`, `regexp_`), unqualified and
//! unquoted. Any other call — every stored function (`db.f()`, `` `f`() ``, `f()`) — may write,
//! so the statement goes to the primary with [`Reason::WriteFunction`]. Configured extra
//! writers beat the safe list. `GET_LOCK()` pins the session (a named lock belongs to the
//! connection). Functions reading per-connection state of the server that ran the previous
//! statement (`LAST_INSERT_ID()`, `FOUND_ROWS()`, `ROW_COUNT()`) and the `RELEASE_LOCK` /
//! `IS_FREE_LOCK` family are writers: they are only meaningful on the primary.
//!
//! Without a call syntax, [`scan`] also flags: MariaDB sequences (`NEXT VALUE FOR s`,
//! `PREVIOUS VALUE FOR s`, `s.nextval`), `SQL_CALC_FOUND_ROWS` (it feeds a later
//! `FOUND_ROWS()`), and reads of per-connection diagnostic variables (`@@last_insert_id`,
//! `@@identity`, `@@insert_id`, `@@last_gtid`, `@@warning_count`, `@@error_count`). Other
//! system-variable reads (`@@version`, `@@server_id`, `@@session.sql_mode`) are reads.
//!
//! [`value_is_replayable`] decides whether a user-variable value (`SET @x = value`) gives the
//! same result when the session replays it on another server; [`set`] classifies a whole SET
//! statement (see the choices listed in [`super::mysql`]).
//!
//! The scan sees calls written as `name(`; it cannot see stored functions run by views or
//! triggers. Use a `/* switchyard: primary */` hint for those.

use super::cls;
use std::collections::HashSet;
use std::sync::LazyLock;

use sqlparser::tokenizer::{Token, Word};

use super::mysql::classify_statement;
use super::pg_functions::{is_kw, matching_paren, CallVerdict};
use super::{Classification, Intent, Reason, RouteOverride};

fn kw_at(toks: &[Token], i: usize, kw: &str) -> bool {
    toks.get(i).is_some_and(|t| is_kw(t, kw))
}

/// Built-ins that write, or read per-connection state that lives on the primary.
#[rustfmt::skip]
const WRITERS: &[&str] = &[
    "last_insert_id", "found_rows", "row_count", "release_lock", "release_all_locks",
    "is_free_lock", "is_used_lock", "nextval", "setval", "lastval", "master_pos_wait",
    "source_pos_wait", "master_gtid_wait", "wait_for_executed_gtid_set",
    "wait_until_sql_thread_after_gtids", "load_file", "sys_exec", "sys_eval",
];

/// Known-safe built-ins (lower case). Calls of these never write.
#[rustfmt::skip]
const SAFE: &[&str] = &[
    // aggregates and window functions
    "count", "sum", "avg", "min", "max", "group_concat", "bit_and", "bit_or", "bit_xor", "std",
    "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "any_value",
    "grouping", "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag",
    "lead", "first_value", "last_value", "nth_value", "median", "percentile_cont",
    "percentile_disc",
    // control flow
    "if", "ifnull", "nullif", "coalesce", "greatest", "least", "isnull", "interval", "nvl",
    "nvl2", "decode_oracle",
    // strings
    "ascii", "bin", "bit_length", "char", "char_length", "character_length", "chr", "concat",
    "concat_ws", "elt", "export_set", "field", "find_in_set", "format", "from_base64",
    "to_base64", "hex", "unhex", "insert", "instr", "lcase", "ucase", "lower", "upper", "left",
    "right", "length", "lengthb", "octet_length", "locate", "position", "lpad", "rpad", "ltrim",
    "rtrim", "trim", "make_set", "mid", "oct", "ord", "quote", "repeat", "replace", "reverse",
    "soundex", "space", "strcmp", "substr", "substring", "substring_index", "weight_string",
    "collation", "charset", "coercibility", "convert", "cast", "natural_sort_key", "sformat",
    "to_char", "match",
    // math
    "abs", "acos", "asin", "atan", "atan2", "ceil", "ceiling", "conv", "cos", "cot", "crc32",
    "crc32c", "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow",
    "power", "radians", "rand", "round", "sign", "sin", "sqrt", "tan", "truncate",
    // date and time
    "adddate", "addtime", "add_months", "convert_tz", "curdate", "current_date", "curtime",
    "current_time", "current_timestamp", "date", "date_add", "date_format", "date_sub",
    "datediff", "day", "dayname", "dayofmonth", "dayofweek", "dayofyear", "extract",
    "from_days", "from_unixtime", "get_format", "hour", "last_day", "localtime",
    "localtimestamp", "makedate", "maketime", "microsecond", "minute", "month", "monthname",
    "months_between", "now", "period_add", "period_diff", "quarter", "sec_to_time", "second",
    "str_to_date", "subdate", "subtime", "sysdate", "time", "time_format", "time_to_sec",
    "timediff", "timestamp", "timestampadd", "timestampdiff", "to_days", "to_seconds",
    "unix_timestamp", "utc_date", "utc_time", "utc_timestamp", "week", "weekday", "weekofyear",
    "year", "yearweek",
    // encryption, hashing, compression
    "aes_encrypt", "aes_decrypt", "compress", "uncompress", "uncompressed_length", "md5", "sha",
    "sha1", "sha2", "statement_digest", "statement_digest_text", "random_bytes",
    "validate_password_strength", "password", "kdf",
    // information
    "benchmark", "connection_id", "current_role", "current_user", "database", "schema", "user",
    "session_user", "system_user", "version", "icu_version", "roles_graphml",
    "ps_current_thread_id", "ps_thread_id", "format_bytes", "format_pico_time",
    // miscellaneous
    "inet_aton", "inet_ntoa", "inet6_aton", "inet6_ntoa", "is_ipv4", "is_ipv6",
    "is_ipv4_compat", "is_ipv4_mapped", "uuid", "uuid_short", "uuid_to_bin", "bin_to_uuid",
    "is_uuid", "sys_guid", "sleep", "default", "name_const", "gtid_subset", "gtid_subtract",
    "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
    "geometrycollection",
    // type names inside CAST / CONVERT and column definitions
    "varchar", "nchar", "binary", "varbinary", "decimal", "dec", "numeric", "float", "double",
    "real", "int", "integer", "bigint", "smallint", "tinyint", "mediumint", "datetime", "bit",
    "json",
];

/// Families of pure built-ins, by prefix.
const SAFE_PREFIXES: &[&str] = &["json_", "st_", "mbr", "regexp_", "column_"];

/// Deterministic built-ins: a user-variable value computed only with these (and constants)
/// gives the same result when replayed on another server.
#[rustfmt::skip]
const DETERMINISTIC: &[&str] = &[
    "cast", "convert", "concat", "concat_ws", "lower", "upper", "lcase", "ucase", "length",
    "char_length", "substring", "substr", "left", "right", "trim", "ltrim", "rtrim", "replace",
    "ifnull", "coalesce", "nullif", "if", "greatest", "least", "abs", "round", "floor", "ceil",
    "ceiling", "mod", "hex", "unhex", "md5", "sha1", "sha2", "lpad", "rpad", "repeat",
    "reverse", "json_object", "json_array", "json_quote", "json_extract", "json_unquote",
    "from_base64", "to_base64", "char", "ascii", "date_format", "str_to_date", "date_add",
    "date_sub", "datediff", "isnull", "elt", "field", "find_in_set", "format", "position",
    "locate", "instr", "truncate", "conv", "bin", "oct",
];

/// Niladic words that read the clock or the connection: not replayable elsewhere.
#[rustfmt::skip]
const NONDETERMINISTIC_WORDS: &[&str] = &[
    "CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME", "LOCALTIME", "LOCALTIMESTAMP",
    "UTC_DATE", "UTC_TIME", "UTC_TIMESTAMP", "CURRENT_USER", "CURRENT_ROLE",
];

/// Per-connection diagnostic variables: reading them needs the server that ran the previous
/// statement, which is the primary for writes.
#[rustfmt::skip]
const SESSION_LOCAL_VARIABLES: &[&str] = &[
    "last_insert_id", "identity", "insert_id", "last_gtid", "warning_count", "error_count",
];

/// Variables whose value differs between servers of a cluster.
#[rustfmt::skip]
const SERVER_SPECIFIC_VARIABLES: &[&str] = &[
    "server_id", "server_uuid", "hostname", "port", "socket", "datadir", "basedir", "tmpdir",
    "pid_file", "report_host", "report_port", "read_only", "super_read_only", "innodb_read_only",
    "gtid_executed", "gtid_purged", "gtid_binlog_pos", "gtid_current_pos", "gtid_slave_pos",
    "gtid_binlog_state", "log_bin", "log_bin_basename", "version", "version_comment",
    "version_compile_os", "version_compile_machine", "rand_seed1", "rand_seed2", "timestamp",
];

/// Words followed by `(` that are syntax, not function calls.
#[rustfmt::skip]
const NOT_FUNCTIONS: &[&str] = &[
    "IN", "EXISTS", "ANY", "ALL", "SOME", "VALUES", "ROW", "OVER", "AS", "FROM", "JOIN", "ON",
    "WHERE", "AND", "OR", "XOR", "NOT", "SELECT", "USING", "BY", "HAVING", "WHEN", "THEN",
    "ELSE", "CASE", "LATERAL", "UNION", "INTERSECT", "EXCEPT", "SET", "INTO", "IS", "LIKE",
    "RLIKE", "REGEXP", "TO", "BETWEEN", "DISTINCT", "LIMIT", "OFFSET", "WITH", "TABLE", "ORDER",
    "PARTITION", "WINDOW", "INDEX", "KEY", "AGAINST", "COLUMNS", "OF", "GROUP", "ESCAPE",
    "RETURNING", "DIV", "FOR", "STRAIGHT_JOIN", "DUAL", "RECURSIVE", "PATH", "MODE",
];

static SAFE_SET: LazyLock<HashSet<&'static str>> = LazyLock::new(|| SAFE.iter().copied().collect());

fn word(t: &Token) -> Option<&Word> {
    match t {
        Token::Word(w) => Some(w),
        _ => None,
    }
}

/// Pin beats Write beats Safe.
pub fn strongest(a: CallVerdict, b: CallVerdict) -> CallVerdict {
    match (a, b) {
        (CallVerdict::Pin(r), _) | (_, CallVerdict::Pin(r)) => CallVerdict::Pin(r),
        (CallVerdict::Write, _) | (_, CallVerdict::Write) => CallVerdict::Write,
        _ => CallVerdict::Safe,
    }
}

fn is_safe_name(name: &str) -> bool {
    SAFE_SET.contains(name) || SAFE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A function call found in the tokens: the name and whether it is qualified (`db.f`).
struct Call<'a> {
    name: &'a Word,
    qualified: bool,
}

/// `name (` call patterns, skipping syntax keywords, column lists and CTE column lists.
fn calls(toks: &[Token]) -> Vec<Call<'_>> {
    let mut out = Vec::new();
    for i in 0..toks.len().saturating_sub(1) {
        if toks[i + 1] != Token::LParen {
            continue;
        }
        let Some(w) = word(&toks[i]) else { continue };
        if w.quote_style.is_none()
            && NOT_FUNCTIONS
                .iter()
                .any(|k| w.value.eq_ignore_ascii_case(k))
        {
            continue;
        }
        let prev = i.checked_sub(1).map(|p| &toks[p]);
        let close = matching_paren(toks, i + 1);
        // `(subquery) alias(a, b)` / `AS alias(a, b)`: derived-table column lists.
        let column_list = close.and_then(|c| toks.get(i + 2..c)).is_some_and(|inner| {
            !inner.is_empty()
                && inner
                    .iter()
                    .all(|t| matches!(t, Token::Word(_) | Token::Comma))
        });
        if column_list && matches!(prev, Some(Token::RParen)) {
            continue;
        }
        if prev.is_some_and(|p| is_kw(p, "AS")) {
            continue;
        }
        // `WITH name(cols) AS (`: CTE column lists.
        if let Some(c) = close {
            if toks.get(c + 1).is_some_and(|t| is_kw(t, "AS"))
                && toks.get(c + 2) == Some(&Token::LParen)
            {
                continue;
            }
        }
        out.push(Call {
            name: w,
            qualified: matches!(prev, Some(Token::Period)),
        });
    }
    out
}

fn call_verdict(call: &Call<'_>, extra: &[String]) -> CallVerdict {
    let lower = call.name.value.to_ascii_lowercase();
    if lower == "get_lock" {
        return CallVerdict::Pin(Reason::AdvisoryLock);
    }
    if WRITERS.contains(&lower.as_str()) || extra.iter().any(|e| e.eq_ignore_ascii_case(&lower)) {
        return CallVerdict::Write;
    }
    if call.name.quote_style.is_none() && !call.qualified && is_safe_name(&lower) {
        CallVerdict::Safe
    } else {
        CallVerdict::Write
    }
}

/// A system variable read (`@@name`, `@@session.name`, `@@global.name`): (scope, name) lower
/// case, and the number of tokens used. Scope is "" when not given.
pub fn system_variable(toks: &[Token]) -> Option<(String, String, usize)> {
    let w = word(toks.first()?)?;
    let rest = w.value.strip_prefix("@@")?.to_ascii_lowercase();
    let scoped = ["global", "session", "local", "persist", "persist_only"].contains(&rest.as_str());
    if scoped && toks.get(1) == Some(&Token::Period) {
        let name = word(toks.get(2)?)?.value.to_ascii_lowercase();
        return Some((rest, name, 3));
    }
    Some((String::new(), rest, 1))
}

/// Non-call constructs that need the primary.
fn word_verdict(toks: &[Token]) -> CallVerdict {
    for (i, t) in toks.iter().enumerate() {
        let at = |k: usize, kw: &str| toks.get(i + k).is_some_and(|t| is_kw(t, kw));
        let sequence = (is_kw(t, "NEXT") || is_kw(t, "PREVIOUS")) && at(1, "VALUE") && at(2, "FOR");
        let dotted_sequence =
            *t == Token::Period && (at(1, "NEXTVAL") || at(1, "CURRVAL") || at(1, "LASTVAL"));
        if sequence || dotted_sequence || is_kw(t, "SQL_CALC_FOUND_ROWS") {
            return CallVerdict::Write;
        }
        if let Some((_, name, _)) = system_variable(&toks[i..]) {
            if SESSION_LOCAL_VARIABLES.contains(&name.as_str()) {
                return CallVerdict::Write;
            }
        }
    }
    CallVerdict::Safe
}

/// The strongest verdict over every call and variable read in the tokens.
pub fn scan(toks: &[Token], extra: &[String]) -> CallVerdict {
    calls(toks)
        .iter()
        .map(|c| call_verdict(c, extra))
        .fold(word_verdict(toks), strongest)
}

/// True when a user-variable value gives the same result replayed on another server: no
/// subquery, no placeholder, no nested assignment, only deterministic built-ins, and no read of
/// a server-specific or global system variable.
pub fn value_is_replayable(toks: &[Token]) -> bool {
    let deterministic_calls = calls(toks).iter().all(|c| {
        c.name.quote_style.is_none()
            && !c.qualified
            && DETERMINISTIC.contains(&c.name.value.to_ascii_lowercase().as_str())
    });
    deterministic_calls
        && word_verdict(toks) == CallVerdict::Safe
        && toks.iter().enumerate().all(|(i, t)| {
            let server_var = system_variable(&toks[i..]).is_some_and(|(scope, name, _)| {
                scope == "global" || SERVER_SPECIFIC_VARIABLES.contains(&name.as_str())
            });
            !server_var
                && !matches!(t, Token::Assignment | Token::Placeholder(_))
                && !["SELECT", "TABLE", "VALUES"].iter().any(|k| is_kw(t, k))
                && !NONDETERMINISTIC_WORDS.iter().any(|k| is_kw(t, k))
        })
}

/// The proxy's own route variable (`SET [@@|@]switchyard_route = ...`).
const ROUTE_VARIABLE: &str = "switchyard_route";

/// Session variables that only make sense on the primary: not replayed, sent there.
#[rustfmt::skip]
const PRIMARY_ONLY_VARIABLES: &[&str] = &[
    "gtid_next", "gtid_seq_no", "gtid_domain_id", "server_id", "pseudo_slave_mode",
    "pseudo_replica_mode", "pseudo_thread_id", "original_commit_timestamp",
    "original_server_version", "immediate_server_version", "skip_replication", "insert_id",
    "last_insert_id", "identity",
];

/// `SET ...`: session state (replayed), one-shot transaction characteristics, global state
/// (primary), user variables, or the proxy's route setting.
pub fn set(toks: &[Token], extra: &[String]) -> Classification {
    let session = cls(Intent::SessionSet, Reason::Session);
    let rest = &toks[1..];
    let scope_kw = ["GLOBAL", "SESSION", "LOCAL", "PERSIST", "PERSIST_ONLY"]
        .iter()
        .find(|k| kw_at(rest, 0, k));
    if kw_at(rest, 0, "TRANSACTION") {
        return cls(Intent::TxnControl, Reason::Transaction);
    }
    if scope_kw.is_some() && kw_at(rest, 1, "TRANSACTION") {
        return match scope_kw {
            Some(&"SESSION") | Some(&"LOCAL") => session,
            _ => cls(Intent::Write, Reason::Session),
        };
    }
    if kw_at(rest, 0, "PASSWORD") || (kw_at(rest, 0, "DEFAULT") && kw_at(rest, 1, "ROLE")) {
        return cls(Intent::Write, Reason::Write);
    }
    if kw_at(rest, 0, "RESOURCE") && kw_at(rest, 1, "GROUP") {
        return cls(Intent::Write, Reason::Session);
    }
    if kw_at(rest, 0, "ROLE") && rest.len() > 1 {
        return session;
    }
    if kw_at(rest, 0, "STATEMENT") {
        return set_statement(rest, extra);
    }
    let mut global = false;
    let mut parts = Vec::new();
    for a in split_top_level_commas(rest) {
        let (c, user) = assignment(a, &mut global, extra);
        parts.push((c, user));
    }
    match parts.as_slice() {
        [] => cls(Intent::Write, Reason::ParseError),
        [(one, _)] => *one,
        _ if parts
            .iter()
            .any(|(c, _)| matches!(c.intent, Intent::ProxyRoute(_))) =>
        {
            cls(Intent::Write, Reason::Unknown)
        }
        _ => {
            let find = |i: Intent| parts.iter().find(|(c, _)| c.intent == i).map(|(c, _)| *c);
            if let Some(c) = find(Intent::Pin).or_else(|| find(Intent::Write)) {
                return c;
            }
            if parts.iter().all(|(_, user)| *user) {
                cls(Intent::SessionSet, Reason::UserVariable)
            } else {
                session
            }
        }
    }
}

/// MariaDB `SET STATEMENT var = value [, ...] FOR stmt`: the variables hold for that statement
/// only, so it takes the class of `stmt` (and of any call in the values).
fn set_statement(rest: &[Token], extra: &[String]) -> Classification {
    let mut depth = 0usize;
    let mut for_at = None;
    for (i, t) in rest.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ if depth == 0 && is_kw(t, "FOR") => {
                for_at = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(at) = for_at.filter(|&at| at > 1 && at + 1 < rest.len()) else {
        return cls(Intent::Write, Reason::ParseError);
    };
    if let Some(c) = scan(&rest[1..at], extra).classification() {
        return c;
    }
    let c = classify_statement(&rest[at + 1..], extra);
    match c.intent {
        Intent::Read | Intent::Write | Intent::Pin => c,
        _ => cls(Intent::Write, Reason::Unknown),
    }
}

/// Splits at commas outside parentheses.
fn split_top_level_commas(toks: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, t) in toks.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Comma if depth == 0 => {
                out.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&toks[start..]);
    out
}

/// Dotted name at the start of `toks` (`a`, `a.b`), lower-cased, and the tokens used.
fn dotted_name(toks: &[Token]) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut i = 0;
    loop {
        let Some(Token::Word(w)) = toks.get(i) else {
            return None;
        };
        name.push_str(&w.value.to_ascii_lowercase());
        i += 1;
        if toks.get(i) == Some(&Token::Period) {
            name.push('.');
            i += 1;
        } else {
            return Some((name, i));
        }
    }
}

/// One assignment of a SET; `global` carries a GLOBAL/PERSIST keyword to later assignments.
/// Returns the class and whether the target is a user variable.
fn assignment(a: &[Token], global: &mut bool, extra: &[String]) -> (Classification, bool) {
    let bad = (cls(Intent::Write, Reason::ParseError), false);
    let mut i = 0;
    if ["GLOBAL", "PERSIST", "PERSIST_ONLY"]
        .iter()
        .any(|k| kw_at(a, 0, k))
    {
        *global = true;
        i = 1;
    } else if kw_at(a, 0, "SESSION") || kw_at(a, 0, "LOCAL") {
        *global = false;
        i = 1;
    }
    let charset = kw_at(a, i, "NAMES")
        || kw_at(a, i, "CHARSET")
        || (kw_at(a, i, "CHARACTER") && kw_at(a, i + 1, "SET"));
    if charset {
        let used = if kw_at(a, i, "CHARACTER") { 2 } else { 1 };
        return if a.len() > i + used {
            (cls(Intent::SessionSet, Reason::Session), false)
        } else {
            bad
        };
    }
    let target = &a[i.min(a.len())..];
    let (name, scope_global, user, used) = match target.first() {
        Some(Token::Word(w)) if w.quote_style.is_none() && w.value.starts_with("@@") => {
            let Some((scope, name, used)) = system_variable(target) else {
                return bad;
            };
            let g = ["global", "persist", "persist_only"].contains(&scope.as_str());
            (name, g, false, used)
        }
        Some(Token::Word(w)) if w.quote_style.is_none() && w.value.starts_with('@') => {
            (w.value[1..].to_ascii_lowercase(), false, true, 1)
        }
        _ => match dotted_name(target) {
            Some((name, used)) => (name, *global, false, used),
            None => return bad,
        },
    };
    let assign = matches!(target.get(used), Some(Token::Eq | Token::Assignment));
    let value = target.get(used + 1..).unwrap_or(&[]);
    if !assign || value.is_empty() {
        return bad;
    }
    let verdict = scan(value, extra);
    if let CallVerdict::Pin(r) = verdict {
        return (cls(Intent::Pin, r), user);
    }
    if name == ROUTE_VARIABLE {
        if scope_global {
            return (cls(Intent::Write, Reason::Unknown), false);
        }
        return (proxy_route(value), user);
    }
    let c = if user {
        if verdict == CallVerdict::Safe && value_is_replayable(value) {
            cls(Intent::SessionSet, Reason::UserVariable)
        } else {
            cls(Intent::Pin, Reason::UserVariable)
        }
    } else if scope_global || PRIMARY_ONLY_VARIABLES.contains(&name.as_str()) {
        cls(Intent::Write, Reason::Session)
    } else if verdict == CallVerdict::Write {
        cls(Intent::Write, Reason::WriteFunction)
    } else {
        cls(Intent::SessionSet, Reason::Session)
    };
    (c, user)
}

/// The value of the route variable: primary | replica | auto | default, quotes optional.
fn proxy_route(value: &[Token]) -> Classification {
    let text = match value {
        [Token::Word(w)] => w.value.to_ascii_lowercase(),
        [Token::SingleQuotedString(s)] | [Token::DoubleQuotedString(s)] => s.to_ascii_lowercase(),
        _ => return cls(Intent::Write, Reason::Unknown),
    };
    let route = match text.trim() {
        "primary" => RouteOverride::Primary,
        "replica" => RouteOverride::Replica,
        "auto" | "default" => RouteOverride::Auto,
        _ => return cls(Intent::Write, Reason::Unknown),
    };
    cls(Intent::ProxyRoute(route), Reason::Session)
}
