//! Moving a read-only transaction from a replica to the primary before a statement that a hot
//! standby refuses but the primary runs in a read-only transaction: `LISTEN` ("cannot execute
//! LISTEN during recovery") and `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE` ("cannot use
//! serializable mode in a hot standby").
//!
//! It moves too when the replica refuses its first read serializable mode (the session's default
//! isolation is serializable and the proxy did not know it yet): that read runs again there.
//!
//! A transaction begun `READ ONLY` runs on a replica. When such a statement comes, the replica's
//! transaction is rolled back and the same BEGIN goes to the primary with that statement (as a
//! pipelined BEGIN, `begin.rs`). It is moved only when nothing the client was told depends on the
//! replica's transaction (fail-closed: otherwise the replica answers, as before):
//! * the BEGIN was one plain statement (words and commas), and every request since it was a read,
//!   only prepared statements, or (before the first read) one `SET LOCAL`, `SAVEPOINT`, `RELEASE`
//!   or `ROLLBACK TO` sent as a simple Query, which run again after the BEGIN on the primary;
//! * no read ran yet, or the transaction is READ COMMITTED (each statement takes its own snapshot,
//!   so a later one may see later data; a REPEATABLE READ snapshot cannot move). A serializable
//!   setting after a read is refused by the primary too ("must be called before any query").

use bytes::Bytes;

use crate::classify::pg_isolation::sets_transaction_serializable;

use super::*;

/// A read-only transaction on a replica that may still move to the primary.
#[derive(Debug)]
pub(super) struct ReadOnlyTxn {
    /// The BEGIN as a pipelined prefix (Parse, Bind, Execute of its text).
    prefix: Bytes,
    /// A read ran in it (it has a snapshot).
    read: bool,
    /// Answers `prefix` gets: 3 for the BEGIN and for each statement run again after it.
    answers: u8,
    /// Moved: the primary gets `prefix` with the next request.
    moved: bool,
    /// Its first statement was neither a read nor one run again: only the replica's refusal
    /// of that statement moves it.
    sealed: bool,
    /// The replica refused its first read serializable mode (the session's default): it moves
    /// with that read, run again.
    refused: bool,
}

impl ReadOnlyTxn {
    /// The BEGIN (and what followed it) to send before the next request, once (when the
    /// transaction moves), with the number of answers it gets.
    pub(super) fn take_moved(&mut self) -> Option<(Bytes, u8)> {
        std::mem::take(&mut self.moved).then(|| (self.prefix.clone(), self.answers))
    }

    /// Add a statement to run again after the BEGIN (Parse, Bind, Execute of its text).
    fn push(&mut self, text: &str) {
        let mut prefix = BytesMut::from(&self.prefix[..]);
        prefix.extend_from_slice(&msg::parse("", text));
        prefix.extend_from_slice(&begin::BEGIN_PREFIX[begin::BEGIN_PARSE_LEN..]);
        self.prefix = prefix.freeze();
        self.answers = self.answers.saturating_add(begin::BEGIN_ANSWERS);
    }
}

/// A statement that may run before a transaction's first read and can go again as it is: one
/// `SET LOCAL`, `SAVEPOINT`, `RELEASE` or `ROLLBACK TO` (no snapshot, no rows).
fn replayable(frames: &[Frame]) -> Option<String> {
    let [f] = frames else { return None };
    let text = match (f.tag, msg::query_text(f.body())) {
        (b'Q', Some(t)) => crate::wire::text(t),
        _ => return None,
    };
    let t = text.trim();
    let t = t.strip_suffix(';').unwrap_or(t).trim_end();
    let mut words = t.split_ascii_whitespace().map(str::to_ascii_uppercase);
    let first = words.next()?;
    let second = words.next().unwrap_or_default();
    let known = match first.as_str() {
        "SET" => second == "LOCAL",
        "SAVEPOINT" | "RELEASE" => true,
        "ROLLBACK" => second == "TO",
        _ => false,
    };
    (known && !t.contains(';')).then(|| t.to_string())
}

/// The text of a BEGIN that can go again as it is: one statement of words and commas.
fn movable_begin(text: &str) -> Option<&str> {
    let t = text.trim();
    let t = t.strip_suffix(';').unwrap_or(t).trim_end();
    let plain = t
        .chars()
        .all(|c| c.is_ascii_alphabetic() || c.is_ascii_whitespace() || c == ',' || c == '_');
    let first = t.split_ascii_whitespace().next()?;
    (plain && (first.eq_ignore_ascii_case("BEGIN") || first.eq_ignore_ascii_case("START")))
        .then_some(t)
}

/// The statement texts of a batch (simple Query and Parse).
fn texts(frames: &[Frame]) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    frames.iter().filter_map(|f| {
        let t = match f.tag {
            b'Q' => msg::query_text(f.body()),
            b'P' => msg::parse_view(f.body()).map(|(_, t)| t),
            _ => None,
        }?;
        Some(crate::wire::text(t))
    })
}

/// The first column of a DataRow (`None` if NULL or malformed).
fn first_value(body: &[u8]) -> Option<&[u8]> {
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    body.get(6..6 + usize::try_from(len).ok()?)
}

impl Relay {
    /// After a batch went to `server`: start following a read-only transaction begun on a
    /// replica, or note what a request did in it. `true`: the batch is the transaction's first
    /// read (it may be refused serializable mode, then it runs again on the primary).
    pub(super) fn follow_read_only(
        &mut self,
        frames: &[Frame],
        info: &BatchInfo,
        route: Route,
    ) -> bool {
        let class = info.class.map(|c| c.intent);
        if self.txn.is_none() {
            self.ro_txn = None;
            if class != Some(Intent::Begin { read_only: true }) || route != Route::Replica {
                return false;
            }
            let [f] = frames else { return false };
            let text = match (f.tag, msg::query_text(f.body())) {
                (b'Q', Some(t)) => crate::wire::text(t),
                _ => return false,
            };
            if let Some(t) = movable_begin(&text) {
                let mut prefix = BytesMut::from(&msg::parse("", t)[..]);
                prefix.extend_from_slice(&begin::BEGIN_PREFIX[begin::BEGIN_PARSE_LEN..]);
                self.ro_txn = Some(Box::new(ReadOnlyTxn {
                    prefix: prefix.freeze(),
                    read: false,
                    answers: begin::BEGIN_ANSWERS,
                    moved: false,
                    sealed: false,
                    refused: false,
                }));
            }
            return false;
        }
        match (&mut self.ro_txn, class) {
            // A Parse takes the transaction's snapshot too.
            (Some(t), Some(Intent::Read)) => !std::mem::replace(&mut t.read, true),
            (Some(t), None) if !info.parses.is_empty() => !std::mem::replace(&mut t.read, true),
            (Some(_), None) => false,
            (Some(t), Some(Intent::TxnControl)) if !t.read => {
                match replayable(frames) {
                    Some(text) => t.push(&text),
                    None => self.ro_txn = None,
                }
                false
            }
            // Anything else as the first statement: it takes the snapshot, so a replica may
            // refuse it serializable mode (it then runs again on the primary); nothing else
            // moves the transaction after it (what it did there would not go along).
            (Some(t), Some(_)) if !t.read && !t.sealed => {
                t.read = true;
                t.sealed = true;
                true
            }
            _ => {
                self.ro_txn = None;
                false
            }
        }
    }

    /// A replica refused serializable mode to the first read of the READ ONLY transaction it
    /// holds for this session (its answers were dropped, see `isolation.rs`): the transaction
    /// stays open for the client and moves to the primary with the read. `true`: it is so.
    pub(super) fn refused_in_read_only(&mut self, b: usize) -> bool {
        match self.ro_txn.as_mut() {
            Some(t) if self.txn == Some(b) => {
                t.refused = true;
                t.read = false;
                true
            }
            _ => false,
        }
    }

    /// Whether the batch is a statement a replica refuses in the read-only transaction it holds
    /// and the transaction can move; if so, end it there (the next request goes to the primary
    /// after the same BEGIN). `Ok(true)`: moved.
    pub(super) async fn relocate(
        &mut self,
        frames: &[Frame],
        info: &BatchInfo,
    ) -> Result<bool, ClientError> {
        let Some(t) = &self.ro_txn else {
            return Ok(false);
        };
        let Some(server) = self.txn else {
            return Ok(false);
        };
        let listen = info.class.is_some_and(|c| c.reason == Reason::Listen);
        let serializable = !listen
            && info.class.is_some_and(|c| c.reason == Reason::Transaction)
            && texts(frames).any(|t| sets_transaction_serializable(&t));
        let quiet = self.inflight.is_empty() && !self.unsynced && self.status == b'T';
        let asked = (listen || serializable) && !t.sealed;
        if !(asked || t.refused) || !quiet || (serializable && t.read) {
            return Ok(false);
        }
        let read = t.read;
        match self.end_on_replica(server, read).await {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => {
                self.drop_backend(server);
                return Err(ClientError::fatal(
                    "08006",
                    format!("lost the server connection holding this session's transaction: {e}"),
                    ErrorKind::BackendLost,
                ));
            }
        }
        tracing::info!(cluster = %self.ctx.name, "a read-only transaction moves to the primary for a statement a standby refuses");
        if let Some(t) = self.ro_txn.as_mut() {
            t.moved = true;
        }
        self.txn = None;
        self.bound = None;
        self.deferred_begin = true;
        self.release_idle();
        Ok(true)
    }

    /// Roll back the replica's transaction, after checking (when it read) that it is READ
    /// COMMITTED. `Ok(false)`: it is not, and stays.
    async fn end_on_replica(&mut self, server: usize, read: bool) -> Result<bool, BackendError> {
        let deadline = self.ctx.limits().session_replay_timeout;
        let Some(be) = self.backends[server].as_mut() else {
            // Closed after a refusal (it was asked to prepare statements): nothing to end.
            return match self.ro_txn.as_ref() {
                Some(t) if t.refused => Ok(true),
                _ => Err(BackendError::Closed),
            };
        };
        tokio::time::timeout(deadline, async {
            if read {
                be.conn
                    .write_all(&msg::query("SHOW transaction_isolation"))
                    .await?;
                let mut level = None;
                loop {
                    let f = be.conn.read_frame().await?;
                    match f.tag {
                        b'D' => level = first_value(f.body()).map(<[u8]>::to_vec),
                        b'E' => level = None,
                        b'Z' => break,
                        _ => {}
                    }
                }
                if !matches!(
                    level.as_deref(),
                    Some(b"read committed" | b"read uncommitted")
                ) {
                    return Ok(false);
                }
            }
            be.conn.write_all(&msg::query("ROLLBACK")).await?;
            loop {
                if be.conn.read_frame().await?.tag == b'Z' {
                    return Ok(true);
                }
            }
        })
        .await
        .map_err(|_| BackendError::Timeout(deadline))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_runs_again_after_the_begin() {
        let q = |t: &str| {
            let mut b = BytesMut::from(&msg::query(t)[..]);
            vec![crate::wire::pg::frame::split_frame(&mut b, 1 << 20)
                .unwrap()
                .unwrap()]
        };
        for t in [
            "SET LOCAL TimeZone = 'UTC';",
            "savepoint sp1",
            "RELEASE SAVEPOINT sp1",
            "ROLLBACK TO SAVEPOINT sp1",
        ] {
            assert!(replayable(&q(t)).is_some(), "{t}");
        }
        for t in [
            "SET TimeZone = 'UTC'",
            "SAVEPOINT a; SELECT 1",
            "ROLLBACK",
            "COMMIT",
            "FETCH 1 FROM c",
        ] {
            assert!(replayable(&q(t)).is_none(), "{t}");
        }
    }

    #[test]
    fn only_plain_begins_move() {
        assert_eq!(movable_begin("BEGIN READ ONLY;"), Some("BEGIN READ ONLY"));
        assert_eq!(
            movable_begin(" start transaction read only, isolation level read committed "),
            Some("start transaction read only, isolation level read committed")
        );
        for t in [
            "BEGIN READ ONLY; SELECT 1",
            "BEGIN /* x */ READ ONLY",
            "SELECT 1",
            "",
        ] {
            assert_eq!(movable_begin(t), None, "{t}");
        }
    }
}
