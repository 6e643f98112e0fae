//! PostgreSQL function-call scan: which calls in a query pin, write, or are known to be safe.
//!
//! Policy (fail closed): a read-only statement may call only functions on [`SAFE`] (common
//! immutable/stable built-ins plus harmless volatile ones such as `random()` or `pg_sleep()`),
//! or matching a safe catalog-helper pattern (`pg_get_*`, `pg_*_is_visible`, `has_*_privilege`,
//! `*_description`). Any other function — including every user-defined function — may write
//! (it could be `VOLATILE` and modify data), so the statement goes to the primary with
//! [`Reason::WriteFunction`]. Safe names only count when unqualified or qualified with
//! `pg_catalog` (a `myschema.lower()` is a user function). Writer and pin names are matched
//! case-insensitively whatever the schema; the configured extra writers beat the safe list.
//!
//! The scan sees calls written as `name(`; it cannot see code that runs without one: functions
//! called through views, rules, custom operators or casts, or PostgreSQL's attribute notation
//! (`SELECT t.f FROM t` calling `f(t)`). Use a `/* switchyard: primary */` hint for those.

use std::collections::HashSet;
use std::sync::LazyLock;

use sqlparser::tokenizer::{Token, Word};

use super::{Classification, Intent, Reason};

/// Functions that take a session-level advisory lock: the session must stay on the primary.
#[rustfmt::skip]
const SESSION_LOCKS: &[&str] = &[
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// Built-in functions that write, need the primary, or change cluster/session state.
#[rustfmt::skip]
const WRITERS: &[&str] = &[
    "nextval", "setval", "currval", "lastval", "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared", "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all", "pg_notify", "txid_current", "txid_current_if_assigned",
    "pg_current_xact_id", "pg_current_xact_id_if_assigned", "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn", "pg_current_wal_flush_lsn", "pg_switch_wal",
    "pg_create_restore_point", "pg_backup_start", "pg_backup_stop", "pg_start_backup",
    "pg_stop_backup", "lo_create", "lo_creat", "lo_import", "lo_export", "lo_unlink", "lo_put",
    "lo_from_bytea", "lo_open", "lo_write", "lowrite", "lo_truncate", "lo_truncate64", "dblink",
    "dblink_exec", "dblink_connect", "pg_terminate_backend", "pg_cancel_backend",
    "pg_reload_conf", "pg_rotate_logfile", "pg_promote", "pg_drop_replication_slot",
    "pg_replication_slot_advance", "pg_logical_slot_get_changes",
    "pg_logical_slot_get_binary_changes", "pg_logical_emit_message",
    "pg_log_backend_memory_contexts", "pg_import_system_collations", "pg_file_write",
    "pg_file_unlink", "pg_file_rename",
];

/// Prefixes of built-in writer families.
#[rustfmt::skip]
const WRITER_PREFIXES: &[&str] = &[
    "pg_replication_origin", "pg_create_", "pg_copy_", "pg_stat_reset", "pg_wal_replay_",
];

/// Known-safe built-ins (lower case).
#[rustfmt::skip]
const SAFE: &[&str] = &[
    // aggregates and window functions
    "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and", "bool_or",
    "every", "bit_and", "bit_or", "bit_xor", "json_agg", "jsonb_agg", "json_object_agg",
    "jsonb_object_agg", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop",
    "var_samp", "corr", "covar_pop", "covar_samp", "regr_slope", "regr_intercept", "regr_count",
    "regr_r2", "percentile_cont", "percentile_disc", "mode", "any_value", "rank", "dense_rank",
    "percent_rank", "cume_dist", "row_number", "ntile", "lag", "lead", "first_value",
    "last_value", "nth_value", "grouping",
    // conditionals
    "coalesce", "nullif", "greatest", "least", "num_nulls", "num_nonnulls",
    // date / time
    "now", "current_timestamp", "clock_timestamp", "statement_timestamp",
    "transaction_timestamp", "timeofday", "localtimestamp", "localtime", "current_time",
    "current_date", "date_trunc", "date_part", "date_bin", "extract", "age", "make_date",
    "make_time", "make_timestamp", "make_timestamptz", "make_interval", "to_timestamp",
    "to_date", "to_char", "to_number", "justify_days", "justify_hours", "justify_interval",
    "isfinite",
    // strings
    "lower", "upper", "length", "char_length", "character_length", "octet_length", "bit_length",
    "substr", "substring", "concat", "concat_ws", "trim", "btrim", "ltrim", "rtrim", "lpad",
    "rpad", "replace", "reverse", "left", "right", "position", "strpos", "split_part", "repeat",
    "initcap", "format", "quote_ident", "quote_literal", "quote_nullable", "regexp_replace",
    "regexp_match", "regexp_matches", "regexp_split_to_array", "regexp_split_to_table",
    "regexp_like", "regexp_count", "regexp_substr", "regexp_instr", "translate", "ascii", "chr",
    "md5", "sha224", "sha256", "sha384", "sha512", "encode", "decode", "to_hex", "starts_with",
    "overlay", "string_to_array", "array_to_string", "convert_from", "normalize", "unistr",
    "string_to_table",
    // math
    "abs", "ceil", "ceiling", "floor", "round", "trunc", "sign", "sqrt", "cbrt", "power", "pow",
    "exp", "ln", "log", "log10", "mod", "div", "pi", "degrees", "radians", "sin", "cos", "tan",
    "asin", "acos", "atan", "atan2", "random", "random_normal", "width_bucket", "gcd", "lcm",
    "factorial", "scale", "trim_scale",
    // arrays and ranges
    "array_length", "array_lower", "array_upper", "array_position", "array_positions",
    "array_append", "array_prepend", "array_cat", "array_remove", "array_replace", "array_dims",
    "array_ndims", "array_fill", "cardinality", "unnest", "generate_series",
    "generate_subscripts", "lower_inc", "upper_inc", "isempty", "range_merge", "int4range",
    "int8range", "numrange", "tsrange", "tstzrange", "daterange",
    // json
    "to_json", "to_jsonb", "row_to_json", "array_to_json", "json_build_object",
    "json_build_array", "jsonb_build_object", "jsonb_build_array", "json_object",
    "jsonb_object", "json_array_elements", "jsonb_array_elements", "json_array_elements_text",
    "jsonb_array_elements_text", "json_each", "jsonb_each", "json_each_text", "jsonb_each_text",
    "json_extract_path", "jsonb_extract_path", "json_extract_path_text",
    "jsonb_extract_path_text", "json_array_length", "jsonb_array_length", "json_object_keys",
    "jsonb_object_keys", "json_typeof", "jsonb_typeof", "jsonb_set", "jsonb_insert",
    "jsonb_pretty", "jsonb_strip_nulls", "json_strip_nulls", "jsonb_path_query",
    "jsonb_path_exists", "jsonb_path_match", "jsonb_path_query_array", "jsonb_path_query_first",
    "json_populate_record", "jsonb_populate_record", "json_to_record", "jsonb_to_record",
    "json_to_recordset", "jsonb_to_recordset",
    // full text search
    "to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery", "websearch_to_tsquery",
    "ts_rank", "ts_rank_cd", "ts_headline", "setweight",
    // network
    "host", "masklen", "network", "family", "broadcast", "netmask", "abbrev",
    // system information
    "version", "current_setting", "current_database", "current_catalog", "current_schema",
    "current_schemas", "current_user", "session_user", "pg_backend_pid", "pg_is_in_recovery",
    "pg_last_wal_replay_lsn", "pg_last_wal_receive_lsn", "pg_last_xact_replay_timestamp",
    "pg_is_wal_replay_paused", "inet_server_port", "inet_server_addr", "inet_client_addr",
    "inet_client_port", "pg_postmaster_start_time", "pg_conf_load_time", "pg_sleep",
    "pg_typeof", "pg_column_size", "pg_database_size", "pg_relation_size", "pg_table_size",
    "pg_indexes_size", "pg_total_relation_size", "pg_size_pretty", "pg_size_bytes",
    "pg_encoding_to_char", "pg_char_to_encoding", "format_type", "pg_tablespace_location",
    "pg_relation_filenode", "pg_relation_filepath", "to_regclass", "to_regtype", "to_regproc",
    "to_regprocedure", "to_regnamespace", "to_regrole", "pg_has_role", "row_security_active",
    "pg_jit_available", "pg_listening_channels", "pg_options_to_table", "pg_wal_lsn_diff",
    "gen_random_uuid", "array_in", "textin", "txid_current_snapshot", "pg_current_snapshot",
    // cast-like calls and type modifiers: numeric(10,2), varchar(3), int4('1') ...
    "cast", "int", "int2", "int4", "int8", "integer", "smallint", "bigint", "numeric",
    "decimal", "dec", "float", "float4", "float8", "real", "text", "varchar", "char",
    "character", "varying", "bpchar", "bool", "boolean", "date", "time", "timestamp",
    "timestamptz", "timetz", "interval", "uuid", "json", "jsonb", "bytea", "inet", "cidr",
    "macaddr", "bit", "varbit", "oid", "regclass", "regtype", "regproc", "name", "money",
];

/// Words followed by `(` that are syntax, not function calls.
#[rustfmt::skip]
const NOT_FUNCTIONS: &[&str] = &[
    "IN", "EXISTS", "ANY", "ALL", "SOME", "VALUES", "ARRAY", "ROW", "OVER", "FILTER", "GROUP",
    "AS", "FROM", "JOIN", "ON", "WHERE", "AND", "OR", "NOT", "SELECT", "USING", "BY", "HAVING",
    "WHEN", "THEN", "ELSE", "CASE", "LATERAL", "UNION", "INTERSECT", "EXCEPT", "RETURNING",
    "SET", "INTO", "IS", "LIKE", "ILIKE", "SIMILAR", "TO", "BETWEEN", "DISTINCT", "LIMIT",
    "OFFSET", "FETCH", "MATERIALIZED", "SETS", "ROLLUP", "CUBE", "OPERATOR", "BERNOULLI",
    "SYSTEM", "REPEATABLE", "TABLESAMPLE", "ESCAPE", "WITH", "TABLE", "ONLY", "ORDER",
    "PARTITION", "WINDOW",
];

/// What the calls in one statement require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallVerdict {
    /// Only known-safe functions (or none).
    #[default]
    Safe,
    /// At least one call may write: Write / WriteFunction.
    Write,
    /// At least one call pins the session (advisory lock, set_config).
    Pin(Reason),
}

impl CallVerdict {
    /// The classification this verdict forces, if any.
    pub fn classification(self) -> Option<Classification> {
        let (intent, reason) = match self {
            CallVerdict::Safe => return None,
            CallVerdict::Write => (Intent::Write, Reason::WriteFunction),
            CallVerdict::Pin(r) => (Intent::Pin, r),
        };
        Some(Classification {
            intent,
            reason,
            hint: None,
        })
    }
}

fn word(t: &Token) -> Option<&Word> {
    match t {
        Token::Word(w) => Some(w),
        _ => None,
    }
}

/// True when `t` is the unquoted keyword `kw` (any case).
pub fn is_kw(t: &Token, kw: &str) -> bool {
    matches!(word(t), Some(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

/// Index of the `)` matching the `(` at `open`, if any.
pub fn matching_paren(toks: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

static SAFE_SET: LazyLock<HashSet<&'static str>> = LazyLock::new(|| SAFE.iter().copied().collect());
static WRITER_SET: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| WRITERS.iter().copied().collect());

fn is_safe_name(name: &str) -> bool {
    SAFE_SET.contains(name)
        || name.starts_with("pg_get_")
        || (name.starts_with("pg_") && name.ends_with("_is_visible"))
        || (name.starts_with("has_") && name.ends_with("_privilege"))
        || name.ends_with("_description")
}

fn is_writer(name: &str, extra: &[String]) -> bool {
    WRITER_SET.contains(name)
        || WRITER_PREFIXES.iter().any(|p| name.starts_with(p))
        || extra.iter().any(|e| e.eq_ignore_ascii_case(name))
}

/// Classifies one called function name (`schema` is the qualifier right before it, if any).
fn verdict_for(w: &Word, schema: Option<&Word>, extra: &[String]) -> CallVerdict {
    let lower = w.value.to_ascii_lowercase();
    if SESSION_LOCKS.contains(&lower.as_str()) {
        return CallVerdict::Pin(Reason::AdvisoryLock);
    }
    if lower == "set_config" {
        return CallVerdict::Pin(Reason::Session);
    }
    if is_writer(&lower, extra) {
        return CallVerdict::Write;
    }
    // Quoted names are case-sensitive in PostgreSQL: "Count"() is not count().
    let exact = if w.quote_style.is_some() {
        w.value.clone()
    } else {
        lower
    };
    let schema_ok = schema.is_none_or(|s| s.value.eq_ignore_ascii_case("pg_catalog"));
    if schema_ok && is_safe_name(&exact) {
        CallVerdict::Safe
    } else {
        CallVerdict::Write
    }
}

/// Scans significant tokens for `name (` call patterns and returns the strongest verdict
/// (Pin beats Write beats Safe).
pub fn scan_calls(toks: &[Token], extra: &[String]) -> CallVerdict {
    let mut verdict = CallVerdict::Safe;
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
        // `AS alias(cols)` and `f(...) alias(cols)` / `(subquery) alias(cols)` are column lists.
        if matches!(prev, Some(Token::RParen)) || prev.is_some_and(|p| is_kw(p, "AS")) {
            continue;
        }
        // `WITH name(cols) AS (` / `, name(cols) AS [NOT] MATERIALIZED (`: CTE column lists.
        if let Some(close) = matching_paren(toks, i + 1) {
            if toks.get(close + 1).is_some_and(|t| is_kw(t, "AS"))
                && toks.get(close + 2).is_some_and(|t| {
                    *t == Token::LParen || is_kw(t, "MATERIALIZED") || is_kw(t, "NOT")
                })
            {
                continue;
            }
        }
        let schema = match prev {
            Some(Token::Period) => i.checked_sub(2).and_then(|p| word(&toks[p])),
            _ => None,
        };
        let v = verdict_for(w, schema, extra);
        verdict = match (verdict, v) {
            (CallVerdict::Pin(r), _) => CallVerdict::Pin(r),
            (_, CallVerdict::Pin(r)) => CallVerdict::Pin(r),
            (CallVerdict::Write, _) | (_, CallVerdict::Write) => CallVerdict::Write,
            _ => CallVerdict::Safe,
        };
    }
    verdict
}
