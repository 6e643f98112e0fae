//! Serializable sessions: a hot standby refuses serializable transactions ("cannot use
//! serializable mode in a hot standby"), so a session whose default isolation is serializable
//! reads on the primary. The proxy knows it from the session's SET/RESET texts and startup packet;
//! what it cannot see (ALTER ROLE/DATABASE ... SET, postgresql.conf) it learns from the refusal
//! itself: a read refused so on a replica, outside a transaction and before any answer reached
//! the client, runs again on the primary, and the session remembers.

use crate::classify::pg_isolation::{isolation_change, IsolationChange};

use super::*;

/// The session's default transaction isolation, as far as it decides where reads go.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Isolation {
    /// What `RESET` goes back to is serializable: from the startup packet, or learned from a
    /// server's refusal when the session had set nothing itself.
    default_serializable: bool,
    /// The session's own `SET` (`None`: the default applies).
    set: Option<bool>,
}

impl Isolation {
    pub(super) fn new(params: &[(String, String)]) -> Self {
        Isolation {
            default_serializable: crate::classify::pg_isolation::startup_serializable(params)
                .unwrap_or(false),
            set: None,
        }
    }

    /// Whether the session's transactions are serializable (its reads need the primary).
    pub(super) fn serializable(&self) -> bool {
        self.set.unwrap_or(self.default_serializable)
    }

    /// A session-setting text sent to a server outside a transaction.
    pub(super) fn apply(&mut self, text: &str) {
        match isolation_change(text) {
            Some(IsolationChange::Set(s)) => self.set = Some(s),
            Some(IsolationChange::Reset) => self.set = None,
            None => {}
        }
    }

    /// A replica refused serializable mode: the source in force says serializable.
    fn refused(&mut self) {
        match self.set {
            Some(_) => self.set = Some(true),
            None => self.default_serializable = true,
        }
    }
}

/// Whether an ErrorResponse body is a hot standby's refusal of serializable mode (SQLSTATE
/// 0A000 naming serializable; the message is English unless the server's lc_messages says not).
pub(super) fn refuses_serializable(body: &[u8]) -> bool {
    is_refusal(&msg::error_fields(body))
}

fn is_refusal(e: &msg::ErrorFields) -> bool {
    e.code == "0A000" && e.message.to_ascii_lowercase().contains("serializable")
}

impl Relay {
    /// A query of the proxy's own on a replica (a read's causal check, a session replay) failed:
    /// if it was refused serializable mode, the session now reads on the primary.
    pub(super) fn note_refusal(&mut self, e: &BackendError) {
        if let BackendError::Server(f, _) = e {
            if is_refusal(f) {
                self.isolation.refused();
                tracing::info!(cluster = %self.ctx.name, "a replica refused serializable mode: the session reads on the primary");
            }
        }
    }

    /// The first answer of a read kept for a retry is the refusal: discard this batch's answers
    /// and run it again on the primary once the replica is done with it. `true`: taken.
    pub(super) fn start_rerun(&mut self, f: &Frame) -> bool {
        let Some(front) = self.inflight.front_mut() else {
            return false;
        };
        if f.tag != b'E' || front.retry.is_none() || !refuses_serializable(f.body()) {
            return false;
        }
        front.rerun = true;
        // Nothing of the batch ran: its session texts are not history, its statements not the
        // session's (the replica's connection is dropped if it was asked to prepare any).
        front.saw_error = true;
        let left = std::mem::take(&mut front.pending);
        state::unanswered(left.into_iter(), None, &mut self.prepared);
        self.isolation.refused();
        tracing::info!(cluster = %self.ctx.name, "a replica refused serializable mode: the session reads on the primary");
        true
    }

    /// An answer to a batch being run again elsewhere: dropped; at its last ReadyForQuery the
    /// batch goes back in front of the client's next one. The replica connection closes when the
    /// batch prepared or closed statements (what it holds may then differ from its record).
    pub(super) fn rerun_answer(&mut self, b: usize, f: Frame) {
        if f.tag != b'Z' {
            return;
        }
        let Some(front) = self.inflight.front_mut() else {
            return;
        };
        if front.syncs > 1 {
            front.syncs -= 1;
            return;
        }
        let frames = front.retry.take().unwrap_or_default();
        let touched = front.swallow > 0 || frames.iter().any(|f| matches!(f.tag, b'P' | b'C'));
        if touched {
            self.drop_backend(b);
        }
        let status = match self.refused_in_read_only(b) {
            // The client's transaction stays open: it moves to the primary.
            true => b'T',
            false => f.body().first().copied().unwrap_or(b'I'),
        };
        self.on_ready(b, status);
        let mut again = frames;
        again.append(&mut self.batch);
        self.batch = again;
        self.batch_ready = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_resets_and_refusals() {
        let mut i = Isolation::new(&[]);
        assert!(!i.serializable());
        i.apply("SET default_transaction_isolation = 'serializable'");
        assert!(i.serializable());
        i.apply("SET search_path = public");
        assert!(i.serializable());
        i.apply("RESET default_transaction_isolation");
        assert!(!i.serializable());
        // Learned from a server: RESET goes back to it.
        i.refused();
        assert!(i.serializable());
        i.apply("SET default_transaction_isolation TO 'read committed'");
        assert!(!i.serializable());
        i.apply("RESET ALL");
        assert!(i.serializable());
        let opts = [(
            "options".to_string(),
            "-c default_transaction_isolation=serializable".to_string(),
        )];
        let mut i = Isolation::new(&opts);
        assert!(i.serializable());
        i.apply("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ");
        assert!(!i.serializable());
        i.apply("DISCARD ALL");
        assert!(i.serializable());
    }

    #[test]
    fn the_refusal_is_recognised() {
        let raw = msg::error_response(
            msg::Severity::Error,
            "0A000",
            "cannot use serializable mode in a hot standby",
        );
        assert!(refuses_serializable(&raw[5..]));
        let other = msg::error_response(msg::Severity::Error, "0A000", "not supported");
        assert!(!refuses_serializable(&other[5..]));
        let other = msg::error_response(msg::Severity::Error, "25006", "serializable");
        assert!(!refuses_serializable(&other[5..]));
    }
}
