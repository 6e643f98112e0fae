//! PostgreSQL reads whose answer depends on the instance: the one list of such names, and scans.
//!
//! A hot standby answers some read-only queries differently from the primary, because they show
//! per-instance state rather than replicated data: prepared transactions (a standby never lists
//! them), backends, locks, statistics, replication and WAL state, recovery status, the server's
//! start time and snapshots. A client talking to the primary directly would see the
//! primary's answer, so such reads go to the primary (Write / [`super::Reason::PrimaryState`],
//! visible as `reason="primary_state"` in the routing metrics; a replica hint or
//! `SET switchyard.route = replica` still sends them to a replica on purpose).
//!
//! Matching is by name anywhere in the statement (relation, function, column or alias alike,
//! case-insensitive): a false positive only costs a primary read, which is the fail-closed
//! direction. A view or function of the user's that reads these names inside is not seen.
//! Inside a transaction that already runs on a replica (`BEGIN READ ONLY`), statements stay there.

/// Relations, views and functions whose answer on a standby differs from the primary's.
#[rustfmt::skip]
const NAMES: &[&str] = &[
    // two-phase commit, backends, locks (a standby lists none of the primary's)
    "pg_prepared_xacts", "pg_locks", "pg_blocking_pids", "pg_safe_snapshot_blocking_pids",
    "pg_backend_memory_contexts", "pg_notification_queue_usage",
    // replication and WAL (the primary's senders and slots; a standby's receiver)
    "pg_replication_slots", "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn", "pg_last_xact_replay_timestamp", "pg_is_wal_replay_paused",
    "pg_get_wal_replay_pause_state", "pg_walfile_name", "pg_walfile_name_offset",
    "pg_ls_waldir", "pg_ls_archive_statusdir", "pg_ls_logdir", "pg_current_logfile",
    // snapshots and transaction status (a standby's snapshot lags the primary's)
    "txid_current_snapshot", "pg_current_snapshot", "pg_export_snapshot", "txid_status",
    "pg_xact_status", "pg_xact_commit_timestamp", "pg_last_committed_xact",
    // the server itself
    "pg_postmaster_start_time", "pg_conf_load_time",
    // settings that read differently in recovery (`transaction_read_only`, `in_hot_standby`)
    "pg_settings", "pg_file_settings", "transaction_read_only", "in_hot_standby",
];

/// Name prefixes of families on the list: every statistics view and accessor (`pg_stat_activity`,
/// `pg_stat_replication`, `pg_stat_wal_receiver`, `pg_stat_user_tables`, `pg_stat_get_*`,
/// `pg_stat_progress_*`, `pg_statio_*` ...) and the control-file readers (`pg_control_*`).
const PREFIXES: &[&str] = &["pg_stat_", "pg_statio_", "pg_control_"];

/// Deliberately not on the list: what describes the connection that serves the statement. Through
/// a proxy that is whichever server ran it, as for `pg_backend_pid()` (README, "What it speaks"):
/// `pg_is_in_recovery()`, `inet_server_addr()`, `inet_server_port()`, `pg_backend_pid()` and the
/// connection's own row of `pg_stat_ssl` / `pg_stat_gssapi` are how a client sees where a read
/// ran (the test suite relies on them); a `/* switchyard: primary */` hint asks the primary.
const CONNECTION: &[&str] = &["pg_stat_ssl", "pg_stat_gssapi"];

/// True when `name` (any case, no schema) is on the list.
fn listed(name: &str) -> bool {
    let n = name.len();
    if n < 8 || !name.is_ascii() || CONNECTION.iter().any(|k| k.eq_ignore_ascii_case(name)) {
        return false;
    }
    NAMES.iter().any(|k| k.eq_ignore_ascii_case(name))
        || PREFIXES
            .iter()
            .any(|p| n > p.len() && name[..p.len()].eq_ignore_ascii_case(p))
}

/// True when a word of the tokens (or a string literal, as in `current_setting('in_hot_standby')`)
/// names per-instance state, or the statement is `SHOW ALL`.
pub fn touches_primary_state(toks: &[sqlparser::tokenizer::Token]) -> bool {
    use sqlparser::tokenizer::Token;
    let show_all = toks.windows(2).any(|w| {
        super::pg_functions::is_kw(&w[0], "SHOW") && super::pg_functions::is_kw(&w[1], "ALL")
    });
    show_all
        || toks.iter().any(|t| match t {
            Token::Word(w) => listed(&w.value),
            Token::SingleQuotedString(s) => listed(s),
            _ => false,
        })
}

/// Byte-level pre-check for the plain-`SELECT` fast path: true when any run of word bytes in the
/// text is on the list (then the text takes the full classifier). Cheap: one pass, a comparison
/// only for runs that could match.
pub fn may_touch_primary_state(sql: &str) -> bool {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w.len() >= 8 && listed(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prefixes() {
        for n in [
            "pg_prepared_xacts",
            "PG_LOCKS",
            "pg_stat_activity",
            "pg_statio_user_tables",
            "pg_stat_get_activity",
            "txid_current_snapshot",
            "in_hot_standby",
        ] {
            assert!(listed(n), "{n}");
            assert!(
                may_touch_primary_state(&format!("SELECT * FROM {n}")),
                "{n}"
            );
        }
        for n in [
            "pg_class",
            "pg_stat_",
            "pg_stats",
            "pg_statistic",
            "pg_stat_ssl",
            "t",
        ] {
            assert!(!listed(n), "{n}");
        }
        assert!(!may_touch_primary_state(
            "SELECT a, b FROM pg_catalog.pg_class"
        ));
    }
}
