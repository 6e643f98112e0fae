//! A deferred BEGIN (transaction pooling): a plain `BEGIN` / `START TRANSACTION` is answered by the
//! proxy, and the server connection is taken only for the transaction's first statement, with the
//! BEGIN sent just before it; a COMMIT or ROLLBACK before any statement is answered too. The
//! connection is then not held across the client's round trip for the BEGIN.

use super::*;
use crate::backend::mysql::Consumed;
use crate::wire::mysql::response::Expect;

/// Whether `text` is exactly one of `words` lists (ASCII case-insensitive; blanks and a final `;`
/// allowed; no comments, options or other statements).
fn is_plain(text: &str, words: &[&[&str]]) -> bool {
    let text = text.trim();
    let text = text.strip_suffix(';').unwrap_or(text);
    words.iter().any(|w| {
        let mut got = text.split_ascii_whitespace();
        w.iter()
            .all(|x| got.next().is_some_and(|g| g.eq_ignore_ascii_case(x)))
            && got.next().is_none()
    })
}

const BEGIN: &[&[&str]] = &[&["BEGIN"], &["BEGIN", "WORK"], &["START", "TRANSACTION"]];
const END: &[&[&str]] = &[
    &["COMMIT"],
    &["COMMIT", "WORK"],
    &["ROLLBACK"],
    &["ROLLBACK", "WORK"],
];

impl Relay {
    /// Answer `text` locally when it is a BEGIN that can wait for the transaction's first
    /// statement, or the end of such a transaction before any statement ran. `true`: answered.
    pub(super) fn defer_begin(&mut self, text: &str, class: Classification) -> bool {
        let idle = self.pooling()
            && self.autocommit
            && self.txn.is_none()
            && self.pinned.is_none()
            && !self.unsure;
        if !idle {
            return false;
        }
        if self.deferred_begin {
            if class.intent == Intent::TxnControl && is_plain(text, END) {
                self.deferred_begin = false;
                self.status &= !status::IN_TRANS;
                self.local_ok();
                return true;
            }
            return false;
        }
        if class.intent != (Intent::Begin { read_only: false }) || !is_plain(text, BEGIN) {
            return false;
        }
        self.deferred_begin = true;
        self.status |= status::IN_TRANS;
        self.local_ok();
        true
    }

    /// Send the deferred BEGIN to `server`, which is to run the transaction's first statement.
    pub(super) async fn begin_deferred(&mut self, server: usize) -> Result<(), MysqlBackendError> {
        let deadline = self.ctx.limits().session_replay_timeout;
        let Some(b) = self.backends[server].as_mut() else {
            return Err(MysqlBackendError::Closed);
        };
        let sent =
            tokio::time::timeout(deadline, b.conn.run_consumed(b"\x03BEGIN", Expect::Simple))
                .await
                .map_err(|_| MysqlBackendError::Timeout(deadline))??;
        self.deferred_begin = false;
        match sent {
            Consumed::Ok { .. } => {
                self.txn = Some(server);
                Ok(())
            }
            Consumed::Err(e) => {
                self.status &= !status::IN_TRANS;
                Err(MysqlBackendError::Server(e, bytes::Bytes::new()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_begins_and_ends_are_answered_locally() {
        for t in [
            "BEGIN",
            "begin;",
            "  Begin Work ; ",
            "START TRANSACTION",
            "start  transaction;",
        ] {
            assert!(is_plain(t, BEGIN), "{t:?}");
        }
        for t in [
            "",
            "BEGIN; SELECT 1",
            "BEGIN WORK NOW",
            "START TRANSACTION READ ONLY",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT",
            "/* switchyard: primary */ BEGIN",
            "BEGIN NOT ATOMIC SELECT 1; END",
            "COMMIT",
        ] {
            assert!(!is_plain(t, BEGIN), "{t:?}");
        }
        for t in ["COMMIT", "commit work;", "ROLLBACK", "rollback"] {
            assert!(is_plain(t, END), "{t:?}");
        }
        for t in [
            "COMMIT AND CHAIN",
            "ROLLBACK TO SAVEPOINT a",
            "ROLLBACK WORK RELEASE",
        ] {
            assert!(!is_plain(t, END), "{t:?}");
        }
    }
}
