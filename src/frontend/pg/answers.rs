//! A server's answers: forwarded to the client as they come, the end of a request or transaction
//! (the connection goes back to its pool), asynchronous messages, and a lost server connection.

use super::dispatch::recycle;
use super::*;

impl Relay {
    /// Forward everything buffered from the bound server.
    pub(super) async fn drain_backend(&mut self, b: usize) -> Result<(), ClientError> {
        loop {
            let Some(be) = self.backends[b].as_mut() else {
                return Ok(());
            };
            // Rows, their description and command tags need nothing from the session but the
            // bytes: copied in one run, no frame made. Anything else, one frame at a time.
            let client = &mut self.client;
            let beginning = self
                .inflight
                .front()
                .is_some_and(|f| f.begin > 0 || f.rerun);
            if !beginning && be.conn.forward_run(PASS_THROUGH, |run| client.queue(run)) > 0 {
                if let Some(frames) = self.inflight.front_mut().and_then(|f| f.retry.take()) {
                    recycle(&mut self.batch, frames);
                }
                if self.client.queued() > CLIENT_FLUSH_BYTES {
                    self.client.flush().await?;
                }
                continue;
            }
            match be.conn.buffered_frame() {
                Ok(Some(f)) if beginning => self.begin_answer(b, f)?,
                Ok(Some(f)) => self.on_backend_frame(b, f),
                Ok(None) => return Ok(()),
                Err(e) => return self.backend_failed(b, e).await,
            }
            if self.client.queued() > CLIENT_FLUSH_BYTES {
                self.client.flush().await?;
            }
            if self.bound != Some(b) {
                return Ok(());
            }
        }
    }

    pub(super) fn on_backend_frame(&mut self, b: usize, f: Frame) {
        let Some(front) = self.inflight.front_mut() else {
            // Asynchronous message while nothing is in flight (notice, notification, status).
            self.queue_async(b, &f);
            return;
        };
        if f.tag == b'A' {
            self.queue_async(b, &f);
            return;
        }
        if front.rerun {
            self.rerun_answer(b, f);
            return;
        }
        if matches!(f.tag, b'1' | b'3') {
            front.pending.pop_front();
        }
        if matches!(f.tag, b'1' | b'3') && front.swallow > 0 {
            // Answers to injected statements: the client sees none, so a read can still move.
            front.swallow -= 1;
            return;
        }
        if self.start_rerun(&f) {
            return;
        }
        let Some(front) = self.inflight.front_mut() else {
            return;
        };
        if let Some(frames) = front.retry.take() {
            recycle(&mut self.batch, frames);
        }
        match f.tag {
            b'E' => {
                front.saw_error = true;
                front.swallow = 0;
                let left = std::mem::take(&mut front.pending);
                self.unanswered(b, left);
            }
            b'G' => self.copy_in = true,
            b'Z' => {
                self.client.queue(&f.raw);
                self.on_ready(b, f.body().first().copied().unwrap_or(b'I'));
                return;
            }
            _ => {}
        }
        self.client.queue(&f.raw);
    }

    /// The server refused a batch before running `left` (see [`state::unanswered`]).
    pub(super) fn unanswered(
        &mut self,
        b: usize,
        left: std::collections::VecDeque<state::Pending>,
    ) {
        if !left.is_empty() {
            let backend = self.backends[b].as_mut().map(|be| &mut be.state);
            state::unanswered(left.into_iter(), backend, &mut self.prepared);
        }
    }

    pub(super) fn on_ready(&mut self, b: usize, status: u8) {
        self.copy_in = false;
        self.status = status;
        if status != b'T' {
            self.ro_txn = None;
        }
        self.txn = if status == b'I' { None } else { Some(b) };
        let done = match self.inflight.front_mut() {
            Some(front) => {
                front.syncs = front.syncs.saturating_sub(1);
                front.syncs == 0
            }
            None => false,
        };
        if done {
            if let Some(fl) = self.inflight.pop_front() {
                self.observe(fl.route, fl.started.elapsed().as_secs_f64());
                if !fl.saw_error && !fl.session_texts.is_empty() {
                    let drops = fl.session_texts.iter().any(|t| state::drops_statements(t));
                    for t in fl.session_texts {
                        idle::IdleLimit::apply(&mut self.idle_limit, &t);
                        let prev = self.history_hashes.last().copied().unwrap_or(0);
                        self.history_hashes.push(state::chain(prev, &t));
                        self.history.push(t);
                    }
                    if let Some(be) = self.backends[b].as_mut() {
                        be.state.applied = self.history.len();
                        be.state.applied_hash = self.history_hashes.last().copied().unwrap_or(0);
                        if drops {
                            be.state.statements.clear();
                        }
                    }
                }
            }
        }
        if self.inflight.is_empty() && self.batch.is_empty() {
            self.cancel_slot.lock().idle();
        }
        if self.inflight.is_empty() && !self.unsynced && self.txn.is_none() {
            self.bound = None;
            self.gate_pass = None;
            self.pause_pass = None;
            self.cancel_slot.lock().key = None;
            self.release_idle();
        }
    }

    /// Forward asynchronous messages an idle (not bound) server sent, e.g. LISTEN notifications.
    pub(super) async fn drain_idle(&mut self, b: usize) -> Result<(), ClientError> {
        loop {
            let next = match self.backends[b].as_mut() {
                Some(be) => be.conn.buffered_frame(),
                None => return Ok(()),
            };
            match next {
                Ok(Some(f)) if f.tag == b'E' => {
                    let fields = msg::error_fields(f.body());
                    tracing::info!(cluster = %self.ctx.name, code = %fields.code, "idle server connection ended: {}", fields.message);
                    return self
                        .backend_failed(b, BackendError::Server(fields, f.raw))
                        .await;
                }
                Ok(Some(f)) => self.queue_async(b, &f),
                Ok(None) => return Ok(()),
                Err(e) => return self.backend_failed(b, e).await,
            }
        }
    }

    /// Forward a message server `b` sent of its own accord. A notification carries the pid
    /// its sender's client was given in BackendKeyData, as it would direct: this session's own
    /// (its sender is the session's own connection to `b`), or another client's of this proxy
    /// (the last to send a request on the sending connection); a sender the proxy does not
    /// know (a direct client of the server) keeps its server pid.
    fn queue_async(&mut self, b: usize, f: &Frame) {
        if f.tag == b'E' {
            // Unasked, a server sends an error only as it terminates the connection (FATAL:
            // idle-in-transaction timeout, admin shutdown...): the client has been told why.
            self.told_fatal = true;
        }
        if f.tag == b'A' {
            if let Some(sender) = msg::notification_pid(f.body()) {
                let own = self.backends[b]
                    .as_ref()
                    .and_then(|be| be.conn.key)
                    .is_some_and(|(pid, _)| pid == sender);
                let client_pid = if own {
                    Some(self.cancel_key.0)
                } else {
                    self.ctx.cancels.sender(b, sender)
                };
                if let Some(raw) =
                    client_pid.and_then(|pid| msg::with_notification_pid(&f.raw, pid))
                {
                    self.client.queue(&raw);
                    return;
                }
            }
        }
        self.client.queue(&f.raw);
    }

    /// A server connection broke. Retry a read that got no answer yet; otherwise tell the client.
    pub(super) async fn backend_failed(
        &mut self,
        b: usize,
        e: BackendError,
    ) -> Result<(), ClientError> {
        let name = self.ctx.config().servers[b].name.clone();
        self.ctx
            .metrics
            .error(&self.ctx.name, ErrorKind::BackendLost);
        let was_bound = self.bound == Some(b);
        let tied = self.txn == Some(b) || self.pinned.map(|p| p.0) == Some(b);
        self.drop_backend(b);
        if tied && std::mem::take(&mut self.told_fatal) {
            // The server's own FATAL went to the client, as it would directly: the session ends
            // (what is queued is flushed as it closes).
            return Err(ClientError::already_told(format!(
                "server {name} ended the session's connection: {e}"
            )));
        }
        if !was_bound {
            if tied {
                return Err(ClientError::fatal(
                    "08006",
                    format!(
                        "server connection holding this session's state was lost ({name}): {e}"
                    ),
                    ErrorKind::BackendLost,
                ));
            }
            tracing::info!(cluster = %self.ctx.name, server = %name, error = %e, "idle server connection dropped");
            return Ok(());
        }
        let retry = match (self.inflight.len(), self.inflight.front_mut()) {
            (1, Some(front)) => front.retry.take(),
            _ => None,
        };
        // The server usually says why before it goes (57P01 admin shutdown...): that was forwarded.
        let told = self.inflight.front().is_some_and(|f| f.saw_error);
        self.inflight.clear();
        self.unsynced = false;
        self.copy_in = false;
        self.cancel_slot.lock().key = None;
        if let (Some(frames), false) = (retry, tied) {
            tracing::warn!(cluster = %self.ctx.name, server = %name, error = %e, "replica lost before answering; retrying the read elsewhere");
            self.excluded.push(b);
            let mut again = frames;
            again.append(&mut self.batch);
            self.batch = again;
            self.batch_ready = true;
            return Ok(());
        }
        if tied {
            return Err(ClientError::fatal(
                "08006",
                format!("server connection lost during a transaction ({name}): {e}"),
                ErrorKind::BackendLost,
            ));
        }
        tracing::warn!(cluster = %self.ctx.name, server = %name, error = %e, "server connection lost mid-request");
        let err = ClientError::error(
            "08006",
            format!("server connection lost while running the request ({name}): {e}"),
            ErrorKind::BackendLost,
        );
        if !told {
            self.client.queue(&err.to_message());
        }
        self.client.queue(&msg::ready_for_query(b'I'));
        self.status = b'I';
        self.txn = None;
        self.gate_pass = None;
        self.pause_pass = None;
        Ok(())
    }
}

/// Server messages [`Relay::drain_backend`] forwards as they are: DataRow, RowDescription,
/// CommandComplete, BindComplete, NoData, ParameterDescription, PortalSuspended
/// ([`Relay::on_backend_frame`] does nothing else with them).
const PASS_THROUGH: &[u8] = b"DTC2nts";
