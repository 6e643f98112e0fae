//! Sending a batch to its server: the route's retries, connect, replay session state, inject
//! statements (the answers are `answers.rs`'s).

use std::time::Instant;

use bytes::BytesMut;

use super::*;
use crate::topology::ServerMode;

impl Relay {
    pub(super) async fn dispatch(
        &mut self,
        frames: Vec<Frame>,
        info: BatchInfo,
        mut target: Result<Decision, RouteError>,
    ) -> Result<(), ClientError> {
        if let Some(o) = local_answer(&info.class, &frames) {
            self.route_override = o;
            tracing::debug!(cluster = %self.ctx.name, ?o, "session route override");
            self.client.queue(&msg::command_complete("SET"));
            self.client.queue(&msg::ready_for_query(self.status));
            return Ok(());
        }
        if self.defer_begin(&frames, info.class) {
            return Ok(());
        }
        if self.ro_txn.is_some() && Box::pin(self.relocate(&frames, &info)).await? {
            target = self.target_for(&info);
        }
        if self.pause_pass.is_none() {
            self.pause_pass = Some(self.ctx.pass_pause().await);
        }
        let attempts = self.ctx.config.load().servers.len() + 1;
        let mut held = false;
        for _ in 0..attempts {
            let d = match target {
                Ok(d) => d,
                Err(RouteError::NoPrimary)
                    if !held && self.ctx.hold_for_primary(&self.excluded).await =>
                {
                    held = true;
                    target = self.target_for(&info);
                    continue;
                }
                Err(e) => {
                    self.excluded.clear();
                    let code = match e {
                        // Retryable: a failover may bring a primary back.
                        RouteError::NoPrimary => "08006",
                        RouteError::NoReplica => "57P03",
                    };
                    return self.batch_error(
                        &info,
                        ClientError::error(code, e.to_string(), ErrorKind::NoServer),
                    );
                }
            };
            let d = match self.causal_route(d, &info).await {
                Ok(d) => d,
                Err(e) => {
                    self.note_refusal(&e);
                    tracing::warn!(cluster = %self.ctx.name, error = %e, "causal check failed; using the primary");
                    match self.route(Want::Primary(RouteReason::CausalFallback)) {
                        Ok(p) => p,
                        Err(e) => {
                            return self.batch_error(
                                &info,
                                ClientError::error("57P03", e.to_string(), ErrorKind::NoServer),
                            );
                        }
                    }
                }
            };
            if d.route == Route::Primary && self.gate_pass.is_none() {
                match self.ctx.pass_gate().await {
                    Ok((pass, waited)) => {
                        self.gate_pass = Some(pass);
                        if waited {
                            // Held by a switchover: the primary may have changed meanwhile.
                            target = self.target_for(&info);
                            continue;
                        }
                    }
                    Err(hold) => {
                        self.excluded.clear();
                        let msg =
                            format!("switchyard: writes held by a switchover for {hold:?}; retry");
                        return self.batch_error(
                            &info,
                            ClientError::error("08006", msg, ErrorKind::NoServer),
                        );
                    }
                }
            }
            let mut d = d;
            match self.send(&mut d, &frames, &info).await {
                Ok(retryable) => {
                    self.excluded.clear();
                    match self.inflight.back_mut() {
                        // Kept (moved, not copied) until the first answer: a replica lost
                        // before answering sends the read elsewhere.
                        Some(fl) if retryable => fl.retry = Some(frames),
                        _ => recycle(&mut self.batch, frames),
                    }
                    return Ok(());
                }
                Err(BackendError::PoolExhausted(m)) => {
                    self.excluded.clear();
                    let e = ClientError::error(
                        "53300",
                        format!("switchyard: {m}"),
                        ErrorKind::PoolTimeout,
                    );
                    return self.batch_error(&info, e);
                }
                Err(e) => {
                    let tied = self.txn == Some(d.server)
                        || self.pinned.map(|p| p.0) == Some(d.server)
                        || (self.unsynced && self.bound == Some(d.server));
                    tracing::warn!(cluster = %self.ctx.name, server = %self.ctx.config().servers[d.server].name, error = %e, "server unusable for this request");
                    self.ctx
                        .metrics
                        .error(&self.ctx.name, ErrorKind::BackendLost);
                    self.drop_backend(d.server);
                    if tied {
                        return Err(ClientError::fatal(
                            "08006",
                            format!("lost the server connection holding this session's transaction or state: {e}"),
                            ErrorKind::BackendLost,
                        ));
                    }
                    if let BackendError::Server(_, raw) = &e {
                        // The server refused the session (e.g. too many connections): report it.
                        self.client.queue(raw);
                        for _ in 0..info.syncs {
                            self.client.queue(&msg::ready_for_query(self.status));
                        }
                        self.excluded.clear();
                        return Ok(());
                    }
                    self.excluded.push(d.server);
                    target = self.target_for(&info);
                }
            }
        }
        self.excluded.clear();
        self.batch_error(
            &info,
            ClientError::error(
                "08006",
                "no server could take the request",
                ErrorKind::NoServer,
            ),
        )
    }

    /// Make `server` usable now: alive (or reconnected), session settings replayed.
    pub(super) async fn ready(&mut self, server: usize) -> Result<(), BackendError> {
        let mode = self.topology().servers.get(server).map(|s| s.mode);
        let tied = self.pinned.map(|p| p.0) == Some(server) || self.txn == Some(server);
        match mode {
            Some(ServerMode::Maintenance) => {
                // An operator took the server out: sessions tied to it lose that connection.
                self.drop_backend(server);
                return Err(BackendError::Protocol("server is in maintenance".into()));
            }
            Some(ServerMode::Removed) if !tied => {
                // A reload removed it: what is open there finishes, nothing new starts.
                self.drop_backend(server);
                return Err(BackendError::Protocol(
                    "server was removed from the configuration".into(),
                ));
            }
            _ => {}
        }
        let fresh = self.backends[server].is_none();
        if !fresh && self.bound != Some(server) {
            let alive = match self.backends[server].as_mut() {
                Some(b) => b.conn.poll_idle(),
                None => Ok(()),
            };
            match alive {
                Ok(()) => {
                    if let Err(ClientError { .. }) = self.drain_idle(server).await {
                        return Err(BackendError::Closed);
                    }
                }
                Err(e) => {
                    self.drop_backend(server);
                    if self.pinned.map(|p| p.0) == Some(server) || self.txn == Some(server) {
                        return Err(e);
                    }
                }
            }
        }
        if self.backends[server].is_none() {
            self.connect(server).await?;
        }
        self.replay(server).await?;
        Ok(())
    }

    /// Answer a batch with an error of our own, as a server would.
    fn batch_error(&mut self, info: &BatchInfo, e: ClientError) -> Result<(), ClientError> {
        self.ctx.metrics.error(&self.ctx.name, e.kind);
        tracing::info!(cluster = %self.ctx.name, code = e.code, "request refused: {}", e.message);
        self.client.queue(&e.to_message());
        for _ in 0..info.syncs {
            self.client.queue(&msg::ready_for_query(self.status));
        }
        if self.inflight.is_empty() && self.txn.is_none() && !self.unsynced {
            self.gate_pass = None;
            self.pause_pass = None;
        }
        Ok(())
    }

    /// Make `d.server` ready (connected, alive, session state applied) and write the batch to it;
    /// a read that waited for a pooled connection may have been served by another replica
    /// (`d.server` then says which).
    /// `Ok(true)`: the batch may be retried elsewhere if the server is lost before answering
    /// (the caller keeps the frames in the new in-flight entry).
    async fn send(
        &mut self,
        d: &mut Decision,
        frames: &[Frame],
        info: &BatchInfo,
    ) -> Result<bool, BackendError> {
        // A read that would wait for its replica's pool waits for the others' too.
        let mates = self.line_mates(d);
        if !mates.is_empty() {
            d.server = self.checkout_any(d.server, &mates).await?;
        }
        let server = d.server;
        self.ready(server).await?;
        let Some(be) = self.backends[server].as_mut() else {
            return Err(BackendError::Closed);
        };
        let begin = self.deferred_begin;
        if begin {
            // The pipelined BEGIN goes as the unnamed statement, replacing the server's.
            be.state.statements.remove(&b""[..]);
        }
        let inj = state::plan(info, &mut be.state, &self.prepared);
        let mut begin_answers = begin::BEGIN_ANSWERS;
        match (inj.frames.is_empty() && !begin, frames) {
            // The common simple Query: the client's bytes go out as they came, uncopied.
            (true, [one]) => be.conn.write_all(&one.raw).await?,
            _ => {
                // Joined in a buffer the session keeps (not one per batch), unless a large
                // batch made it big: then it goes with this batch.
                let out = &mut self.joined;
                out.clear();
                out.reserve(batch_len(frames) + 64);
                if begin {
                    match self.ro_txn.as_mut().and_then(|t| t.take_moved()) {
                        Some((prefix, n)) => {
                            out.extend_from_slice(&prefix);
                            begin_answers = n;
                        }
                        None => out.extend_from_slice(begin::BEGIN_PREFIX),
                    }
                }
                for f in &inj.frames {
                    out.extend_from_slice(f);
                }
                for f in frames {
                    out.extend_from_slice(&f.raw);
                }
                let written = be.conn.write_all(out).await;
                if out.capacity() > JOINED_KEEP {
                    *out = BytesMut::new();
                }
                written?;
            }
        }
        if begin {
            // From here the server has the transaction (or refuses it and skips the request).
            self.deferred_begin = false;
            self.txn = Some(server);
        }
        if let Some((pid, secret)) = be.conn.key {
            let mut slot = self.cancel_slot.lock();
            // The same backend as last time (its key is unique) keeps its entry.
            if slot
                .key
                .as_ref()
                .is_none_or(|k| k.pid != pid || k.secret != secret)
            {
                slot.key = Some(ServerKey {
                    addr: be.conn.addr.clone(),
                    pid,
                    secret,
                });
                self.ctx.cancels.sent_on(server, pid, self.cancel_key.0);
            }
        }
        let mut pending: std::collections::VecDeque<state::Pending> = inj
            .names
            .into_iter()
            .map(|n| state::Pending {
                name: Some(n),
                before: None,
            })
            .collect();
        state::record_statements(frames, info, &mut self.prepared, &mut pending);
        let first_read = self.follow_read_only(frames, info, d.route);
        self.count(d.route, d.reason);
        if let Some(c) = info.class {
            // A LISTEN a replica got (in a READ ONLY transaction that could not move) is refused
            // there, an UNLISTEN is a no-op: nothing to pin the session to that replica for.
            let refused = c.reason == Reason::Listen && d.route == Route::Replica;
            if c.intent == Intent::Pin && self.pinned.is_none() && !refused {
                tracing::info!(cluster = %self.ctx.name, reason = c.reason.as_str(), "session pinned to the primary");
                self.pinned = Some((server, c.reason));
                self.pin_gauge = Some(self.ctx.metrics.pinned(&self.ctx.name, c.reason.as_str()));
            }
            if matches!(c.intent, Intent::SessionSet) && self.txn.is_some() && self.pinned.is_none()
            {
                tracing::info!(cluster = %self.ctx.name, "session setting inside a transaction: session pinned");
                self.pinned = Some((server, Reason::Session));
                self.pin_gauge = Some(
                    self.ctx
                        .metrics
                        .pinned(&self.ctx.name, Reason::Session.as_str()),
                );
            }
        }
        // Also the first read of a READ ONLY transaction on a replica: a replica that refuses it
        // serializable mode sends the transaction to the primary (`relocate.rs`).
        let retryable = d.route == Route::Replica
            && (self.txn.is_none() || first_read)
            && self.inflight.is_empty()
            && !self.unsynced;
        let texts = if self.txn.is_none() {
            for t in &info.session_texts {
                self.isolation.apply(t);
            }
            info.session_texts.clone()
        } else {
            Vec::new()
        };
        match self.inflight.back_mut() {
            Some(last) if last.syncs == 0 => {
                // A pipelined BEGIN goes only with a session's first request: never merged.
                debug_assert!(!begin);
                last.syncs += info.syncs;
                last.swallow += inj.swallow;
                last.session_texts.extend(texts);
                last.pending.extend(pending);
            }
            _ => self.inflight.push_back(InFlight {
                syncs: info.syncs,
                swallow: inj.swallow,
                begin: if begin { begin_answers } else { 0 },
                saw_error: false,
                session_texts: texts,
                route: d.route,
                started: Instant::now(),
                retry: None,
                rerun: false,
                pending,
            }),
        }
        if d.route == Route::Primary
            && info.class.is_some_and(|c| {
                !matches!(
                    c.intent,
                    Intent::Read | Intent::SessionSet | Intent::ProxyRoute(_)
                ) && c.reason != Reason::PrimaryState
            })
        {
            self.wrote = true;
        }
        if let Some(c) = info
            .session_texts
            .iter()
            .find_map(|t| consistency_setting(t))
        {
            self.consistency = Some(c);
        }
        if let Some(d) = info.session_texts.iter().find_map(|t| debug_setting(t)) {
            self.debug = d;
        }
        if self.debug {
            let name = &self.ctx.config().servers[server].name;
            let (route, reason) = (d.route.as_str(), d.reason.as_str());
            tracing::info!(cluster = %self.ctx.name, session = self.cancel_key.0, server = %name, route, reason, "routing decision");
            let text = format!("switchyard: {route} {name} ({reason})");
            self.client.queue(&msg::notice_response(&text));
        }
        self.unsynced = info.unsynced;
        self.bound = Some(server);
        self.last_used = Some(server);
        Ok(retryable)
    }

    /// Apply session settings this backend has not seen yet; their answers are not forwarded.
    async fn replay(&mut self, server: usize) -> Result<(), BackendError> {
        let Some(be) = self.backends[server].as_mut() else {
            return Err(BackendError::Closed);
        };
        let (n, h) = (be.state.applied, be.state.applied_hash);
        // What the connection holds is this session's history up to `n`, or (pooled, left by
        // another session) something else: then it is reset first.
        let prefix = n <= self.history.len() && (n == 0 || self.history_hashes[n - 1] == h);
        if prefix && n == self.history.len() {
            return Ok(());
        }
        let start = if prefix { n } else { 0 };
        let pending = &self.history[start..];
        // DISCARD ALL may not run inside the implicit transaction of a multi-statement Query:
        // it goes in a Query of its own.
        let mut out = BytesMut::new();
        let mut answers = 0;
        if !prefix {
            out.extend_from_slice(&msg::query("DISCARD ALL"));
            answers += 1;
        }
        if !pending.is_empty() {
            out.extend_from_slice(&msg::query(&pending.join(";\n")));
            answers += 1;
        }
        let drops = !prefix || pending.iter().any(|t| state::drops_statements(t));
        let deadline = self.ctx.limits().session_replay_timeout;
        let r = tokio::time::timeout(deadline, async {
            be.conn.write_all(&out).await?;
            let mut failure = None;
            loop {
                let f = be.conn.read_frame().await?;
                match f.tag {
                    b'E' => failure = Some(msg::error_fields(f.body())),
                    b'Z' => {
                        answers -= 1;
                        if answers == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            match failure {
                Some(e) => Err(BackendError::Server(e, bytes::Bytes::new())),
                None => Ok(()),
            }
        })
        .await
        .map_err(|_| BackendError::Timeout(deadline))?;
        if let Err(e) = r {
            // A replica refusing serializable mode refuses even DISCARD ALL.
            self.note_refusal(&e);
            tracing::warn!(cluster = %self.ctx.name, error = %e, "could not replay session settings");
            return Err(BackendError::Protocol(format!(
                "session settings could not be replayed: {e}"
            )));
        }
        if drops {
            be.state.statements.clear();
        }
        be.state.applied = self.history.len();
        be.state.applied_hash = self.history_hashes.last().copied().unwrap_or(0);
        let route = fixed(server, &self.topology(), RouteReason::Replay).route;
        self.count(route, RouteReason::Replay);
        Ok(())
    }
}

fn batch_len(frames: &[Frame]) -> usize {
    frames.iter().map(|f| f.raw.len()).sum()
}

/// A dispatched batch's vector, emptied, becomes the next `batch`'s when that one has none yet:
/// no allocation per request.
pub(super) fn recycle(batch: &mut Vec<Frame>, mut frames: Vec<Frame>) {
    if batch.capacity() == 0 {
        frames.clear();
        *batch = frames;
    }
}

/// Largest joined-batch buffer a session keeps between batches (bigger ones are freed after use,
/// so one large batch does not stay resident with an idle client).
const JOINED_KEEP: usize = 16 * 1024;
