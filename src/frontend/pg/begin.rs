//! A deferred BEGIN (transaction pooling): a plain `BEGIN` sent as a simple Query is answered by
//! the proxy, and the server connection is taken only for the transaction's next request, with
//! the BEGIN sent just before it; a COMMIT or ROLLBACK before any request is answered too. The
//! connection is then not held across the client's round trip for the BEGIN.

use super::*;
use crate::frontend::plain::is_plain;

const BEGIN: &[&[&str]] = &[
    &["BEGIN"],
    &["BEGIN", "WORK"],
    &["BEGIN", "TRANSACTION"],
    &["START", "TRANSACTION"],
];
/// The plain ends of a transaction, and the command tag PostgreSQL answers each with.
const ENDS: &[(&[&[&str]], &str)] = &[
    (
        &[
            &["COMMIT"],
            &["COMMIT", "WORK"],
            &["COMMIT", "TRANSACTION"],
            &["END"],
            &["END", "WORK"],
            &["END", "TRANSACTION"],
        ],
        "COMMIT",
    ),
    (
        &[
            &["ROLLBACK"],
            &["ROLLBACK", "WORK"],
            &["ROLLBACK", "TRANSACTION"],
            &["ABORT"],
            &["ABORT", "WORK"],
            &["ABORT", "TRANSACTION"],
        ],
        "ROLLBACK",
    ),
];

impl Relay {
    /// Answer `frames` locally when they are one simple Query with a BEGIN that can wait for the
    /// transaction's next request, or the end of such a transaction before any request ran.
    /// `true`: answered.
    pub(super) fn defer_begin(&mut self, frames: &[Frame]) -> bool {
        let [f] = frames else { return false };
        let idle = f.tag == b'Q'
            && self.pooling()
            && self.txn.is_none()
            && self.pinned.is_none()
            && self.bound.is_none()
            && self.inflight.is_empty()
            && !self.unsynced;
        if !idle {
            return false;
        }
        let Some(text) = msg::query_text(f.body()).map(crate::wire::text) else {
            return false;
        };
        if self.deferred_begin {
            let Some(tag) = ENDS.iter().find(|(w, _)| is_plain(&text, w)).map(|e| e.1) else {
                return false;
            };
            self.deferred_begin = false;
            self.status = b'I';
            self.client.queue(&msg::command_complete(tag));
        } else {
            if self.status != b'I' || !is_plain(&text, BEGIN) {
                return false;
            }
            self.deferred_begin = true;
            self.status = b'T';
            self.client.queue(&msg::command_complete("BEGIN"));
        }
        self.client.queue(&msg::ready_for_query(self.status));
        true
    }

    /// Send the deferred BEGIN to `server`, which is to run the transaction's next request.
    pub(super) async fn begin_deferred(&mut self, server: usize) -> Result<(), BackendError> {
        let deadline = self.ctx.limits().session_replay_timeout;
        let Some(be) = self.backends[server].as_mut() else {
            return Err(BackendError::Closed);
        };
        let sent = tokio::time::timeout(deadline, async {
            be.conn.write_all(&msg::query("BEGIN")).await?;
            let mut failure = None;
            loop {
                let f = be.conn.read_frame().await?;
                match f.tag {
                    b'E' => failure = Some(msg::error_fields(f.body())),
                    b'Z' => break,
                    _ => {}
                }
            }
            Ok::<_, BackendError>(failure)
        })
        .await
        .map_err(|_| BackendError::Timeout(deadline))??;
        self.deferred_begin = false;
        match sent {
            None => {
                self.txn = Some(server);
                Ok(())
            }
            Some(e) => {
                self.status = b'I';
                Err(BackendError::Server(e, bytes::Bytes::new()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_begins_and_ends_by_their_words() {
        for t in [
            "BEGIN",
            "begin transaction;",
            "START TRANSACTION",
            "Begin Work",
        ] {
            assert!(is_plain(t, BEGIN), "{t:?}");
        }
        for t in [
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "BEGIN READ ONLY",
            "START TRANSACTION READ WRITE",
            "BEGIN; SELECT 1",
        ] {
            assert!(!is_plain(t, BEGIN), "{t:?}");
        }
        let tag = |t: &str| ENDS.iter().find(|(w, _)| is_plain(t, w)).map(|e| e.1);
        assert_eq!(tag("END;"), Some("COMMIT"));
        assert_eq!(tag("commit work"), Some("COMMIT"));
        assert_eq!(tag("ABORT"), Some("ROLLBACK"));
        assert_eq!(tag("rollback transaction"), Some("ROLLBACK"));
        assert_eq!(tag("COMMIT AND CHAIN"), None);
        assert_eq!(tag("ROLLBACK TO SAVEPOINT a"), None);
        assert_eq!(tag("PREPARE TRANSACTION 'x'"), None);
    }
}
