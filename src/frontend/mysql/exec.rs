//! Running one client command on a server: readiness (connect, liveness, session replay), routing
//! with retries, and statement commands (the answer itself is relayed by `answer`).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::answer::{Answer, Broken};
use super::*;
use crate::backend::mysql::Consumed;
use crate::classify::mysql_wait_timeout::{wait_timeout_setting, WaitTimeout};
use crate::topology::ServerMode;
use crate::wire::mysql::packet::Packet;
use crate::wire::mysql::response::{expect_for, Expect};

impl Relay {
    pub(super) fn tied(&self, server: usize) -> bool {
        self.txn == Some(server) || self.pinned.map(|p| p.0) == Some(server)
    }

    pub(super) fn lost_fatal(&self, server: usize, err: &MysqlBackendError) -> MyError {
        let name = &self.ctx.config().servers[server].name;
        MyError::new(
            1927,
            "70100",
            format!("switchyard: lost the server connection holding this session's state ({name}): {err}"),
            ErrorKind::BackendLost,
        )
        .fatal()
    }

    /// The server is connected, alive and has every session setting applied. A connection
    /// whose settings are not a prefix of this session's history (left by another session) is
    /// reset first. On failure the connection is dropped.
    pub(super) async fn ensure_ready(&mut self, server: usize) -> Result<(), MysqlBackendError> {
        match self.topology().servers.get(server).map(|s| s.mode) {
            Some(ServerMode::Maintenance) => {
                // An operator took the server out: sessions tied to it lose that connection.
                self.drop_backend(server);
                return Err(MysqlBackendError::Protocol(
                    "server is in maintenance".into(),
                ));
            }
            Some(ServerMode::Removed) if !self.tied(server) => {
                // A reload removed it: what is open there finishes, nothing new starts.
                self.drop_backend(server);
                return Err(MysqlBackendError::Protocol(
                    "server was removed from the configuration".into(),
                ));
            }
            _ => {}
        }
        if let Some(b) = self.backends[server].as_mut() {
            if let Err(e) = b.conn.idle_ok() {
                self.drop_backend(server);
                if self.tied(server) {
                    return Err(e);
                }
            }
        }
        if self.backends[server].is_none() {
            self.connect(server).await?;
        }
        let r = self.sync_state(server).await;
        if r.is_err() {
            self.drop_backend(server);
        }
        r
    }

    async fn sync_state(&mut self, server: usize) -> Result<(), MysqlBackendError> {
        let deadline = self.ctx.limits().session_replay_timeout;
        let Some(b) = self.backends[server].as_mut() else {
            return Err(MysqlBackendError::Closed);
        };
        if b.carry_over {
            // What an implicit commit left for the next statement belongs to another session.
            let r = tokio::time::timeout(
                deadline,
                b.conn.run_consumed(super::ro_txn::ROLLBACK, Expect::Simple),
            )
            .await
            .map_err(|_| MysqlBackendError::Timeout(deadline))??;
            if let Consumed::Err(e) = r {
                return Err(MysqlBackendError::Protocol(format!(
                    "could not clear a pooled connection: {} {}",
                    e.code, e.message
                )));
            }
            b.carry_over = false;
        }
        let n = b.applied;
        let prefix =
            n <= self.history.len() && (n == 0 || self.history_hashes[n - 1] == b.applied_hash);
        if !prefix {
            if b.reset_unsafe {
                self.replace_backend(server).await?;
            } else {
                let r = tokio::time::timeout(
                    deadline,
                    b.conn.run_consumed(&[COM_RESET_CONNECTION], Expect::Simple),
                )
                .await
                .map_err(|_| MysqlBackendError::Timeout(deadline))??;
                let now = match r {
                    Consumed::Err(e) => {
                        return Err(MysqlBackendError::Protocol(format!(
                            "could not reset a pooled connection: {} {}",
                            e.code, e.message
                        )))
                    }
                    Consumed::Ok { status } => status,
                };
                b.applied = 0;
                b.applied_hash = 0;
                b.stmts.clear();
                tracing::debug!(cluster = %self.ctx.name, server, "pooled connection reset");
                // The server's init_connect ran at login only: a reset that undid its autocommit
                // (`SET autocommit=0`) needs a fresh connection, as a new session would get.
                if let (Some(now), Some(init)) = (now, b.initial_status) {
                    if (now ^ init) & status::AUTOCOMMIT != 0 {
                        self.replace_backend(server).await?;
                        if let Some(fresh) = self.backends[server].as_mut() {
                            fresh.reset_unsafe = true;
                        }
                    }
                }
            }
        }
        let Relay {
            backends,
            cursors,
            history,
            history_hashes,
            ..
        } = self;
        let Some(b) = backends[server].as_mut() else {
            return Err(MysqlBackendError::Closed);
        };
        // Statements replaced by a newer prepare of the same text: close them on the server.
        for id in b
            .stmts
            .take_stale(|id| cursors.values().any(|c| *c == (server, id)))
        {
            b.conn.write_packet(0, &stmt_close(id)).await?;
        }
        while b.applied < history.len() {
            let History::Command(payload) = &history[b.applied];
            let expect = expect_for(payload.first().copied().unwrap_or(COM_QUERY));
            let r = tokio::time::timeout(deadline, b.conn.run_consumed(payload, expect))
                .await
                .map_err(|_| MysqlBackendError::Timeout(deadline))??;
            if let Consumed::Err(e) = r {
                return Err(MysqlBackendError::Protocol(format!(
                    "session state could not be replayed: {} {}",
                    e.code, e.message
                )));
            }
            b.reset_unsafe |= pooled::reset_unsafe(payload);
            b.applied_hash = history_hashes[b.applied];
            b.applied += 1;
        }
        Ok(())
    }

    /// Close `server`'s connection and open a fresh one in its place (same pool slot).
    async fn replace_backend(&mut self, server: usize) -> Result<(), MysqlBackendError> {
        let lease = self.leases.get_mut(server).and_then(Option::take);
        if let Some(b) = self.backends.get_mut(server).and_then(Option::take) {
            let name = &self.ctx.config().servers[server].name;
            self.ctx.metrics.backend_gauge(&self.ctx.name, name).dec();
            self.ctx.balancer.connection_closed(server);
            tokio::spawn(b.conn.quit());
        }
        self.diag_detached(server);
        tracing::debug!(cluster = %self.ctx.name, server, "pooled connection replaced");
        let b = self.open(server).await?;
        self.attach(server, b, lease);
        Ok(())
    }

    /// Route and run a command whose answer is relayed as is (COM_QUERY, INIT_DB, FIELD_LIST...).
    pub(super) async fn command(
        &mut self,
        p: Packet,
        class: Classification,
        started: Instant,
    ) -> Result<(), MyError> {
        let cmd = p.payload.first().copied().unwrap_or(COM_QUERY);
        self.run_routed(
            class,
            started,
            |_, _| Ok(Some(p.raw.clone())),
            expect_for(cmd),
            None,
            None,
        )
        .await?;
        Ok(())
    }

    /// The common path: pick a server, make it ready, send what `build` returns, relay the answer,
    /// retry a read on another server if the first one broke before answering. The write-gate
    /// pass is given back once the session is outside a transaction.
    pub(super) async fn run_routed(
        &mut self,
        class: Classification,
        started: Instant,
        build: impl FnMut(&mut Self, usize) -> Result<Option<Bytes>, MyError>,
        expect: Expect,
        prepare: Option<(Bytes, u64, Classification)>,
        needs: Option<(u64, Bytes)>,
    ) -> Result<Option<usize>, MyError> {
        if self.pause_pass.is_none() {
            self.pause_pass = Some(self.ctx.pass_pause().await);
        }
        let r = if self.leave_replica_txn(class, prepare.is_some()).await {
            self.run_routed_once(class, started, build, expect, prepare, needs)
                .await
        } else {
            Ok(None)
        };
        if self.txn.is_none() {
            self.gate_pass = None;
            self.pause_pass = None;
        }
        r
    }

    async fn run_routed_once(
        &mut self,
        class: Classification,
        started: Instant,
        mut build: impl FnMut(&mut Self, usize) -> Result<Option<Bytes>, MyError>,
        expect: Expect,
        prepare: Option<(Bytes, u64, Classification)>,
        needs: Option<(u64, Bytes)>,
    ) -> Result<Option<usize>, MyError> {
        let mut target = self.target_for(class);
        let mut held = false;
        for _ in 0..=self.backends.len() {
            let d = match target {
                Ok(d) => d,
                Err(RouteError::NoPrimary)
                    if !held && self.ctx.hold_for_primary(&self.excluded).await =>
                {
                    held = true;
                    target = self.target_for(class);
                    continue;
                }
                Err(e) => {
                    self.excluded.clear();
                    let message = match e {
                        RouteError::NoPrimary => format!(
                            "switchyard: no primary (failover in progress or primary unreachable) within failover.write_hold ({:?}); retry",
                            self.ctx.config().failover.write_hold
                        ),
                        RouteError::NoReplica => format!("switchyard: {e}"),
                    };
                    let err = MyError::new(1105, "HY000", message, ErrorKind::NoServer);
                    self.ctx.metrics.error(&self.ctx.name, err.kind);
                    self.client.queue(&err.payload());
                    return Ok(None);
                }
            };
            let mut d = match self.causal_route(d, class).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(cluster = %self.ctx.name, error = %e, "causal wait failed; using the primary");
                    match self.route(Want::Primary(RouteReason::CausalFallback)) {
                        Ok(p) => p,
                        Err(_) => d,
                    }
                }
            };
            if d.route == Route::Primary && self.gate_pass.is_none() {
                match self.ctx.pass_gate().await {
                    Ok((pass, waited)) => {
                        self.gate_pass = Some(pass);
                        if waited {
                            // Held by a switchover: the primary may have changed meanwhile.
                            target = self.target_for(class);
                            continue;
                        }
                    }
                    Err(hold) => {
                        self.excluded.clear();
                        let err = MyError::new(
                            1105,
                            "HY000",
                            format!("switchyard: writes held by a switchover (failover) for {hold:?}; retry"),
                            ErrorKind::NoServer,
                        );
                        self.ctx.metrics.error(&self.ctx.name, err.kind);
                        self.client.queue(&err.payload());
                        return Ok(None);
                    }
                }
            }
            // A read that would wait for its replica's pool waits for the others' too.
            let mates = self.line_mates(&d);
            let mut ready = Ok(d.server);
            if !mates.is_empty() {
                ready = self.checkout_any(d.server, &mates).await;
            }
            if let Ok(s) = ready {
                d.server = s;
                ready = self.ensure_ready(s).await.map(|()| s);
            }
            let server = d.server;
            if let Err(e) = ready {
                if let MysqlBackendError::Server(info, _) = &e {
                    self.excluded.clear();
                    let kind = if pooled::is_pool_timeout(info) {
                        ErrorKind::PoolTimeout
                    } else {
                        ErrorKind::BackendConnect
                    };
                    let err =
                        MyError::new(info.code, info.sqlstate.clone(), info.message.clone(), kind);
                    if kind == ErrorKind::PoolTimeout {
                        self.ctx.metrics.error(&self.ctx.name, kind);
                    }
                    self.client.queue(&err.payload());
                    return Ok(None);
                }
                if self.tied(server) {
                    return Err(self.lost_fatal(server, &e));
                }
                tracing::warn!(cluster = %self.ctx.name, server, error = %e, "mysql server unusable for this command");
                self.ctx
                    .metrics
                    .error(&self.ctx.name, ErrorKind::BackendLost);
                self.drop_backend(server);
                self.excluded.push(server);
                target = self.target_for(class);
                continue;
            }
            if d.route == Route::Replica && !self.autocommit && class.intent != Intent::SessionSet {
                // The session's first connection has just said sessions start with autocommit
                // off: the statement belongs to a transaction on the primary.
                let t = self.target_for(class);
                if t.is_ok_and(|t| t.server != server) {
                    target = t;
                    continue;
                }
            }
            if let Some((key, sql)) = &needs {
                let Some(b) = self.backends[server].as_mut() else {
                    continue;
                };
                if b.stmts.server_id(*key).is_none() {
                    let deadline = self.ctx.limits().session_replay_timeout;
                    let r = tokio::time::timeout(deadline, b.conn.prepare(sql))
                        .await
                        .unwrap_or(Err(MysqlBackendError::Timeout(deadline)));
                    match r {
                        Ok(Ok(ok)) => b.stmts.insert(*key, ok.stmt_id),
                        Ok(Err(e)) => {
                            self.excluded.clear();
                            let err = MyError::new(
                                e.code,
                                e.sqlstate.clone(),
                                e.message,
                                ErrorKind::BackendLost,
                            );
                            self.client.queue(&err.payload());
                            return Ok(None);
                        }
                        Err(e) => {
                            if self.tied(server) {
                                return Err(self.lost_fatal(server, &e));
                            }
                            tracing::warn!(cluster = %self.ctx.name, server, error = %e, "re-prepare failed");
                            self.drop_backend(server);
                            self.excluded.push(server);
                            target = self.target_for(class);
                            continue;
                        }
                    }
                }
            }
            if self.diag.now.reads() {
                if let Err(e) = self.diag_prepare(server).await {
                    if self.tied(server) {
                        return Err(self.lost_fatal(server, &e));
                    }
                    tracing::warn!(cluster = %self.ctx.name, server, error = %e, "diagnostics set-up failed");
                    self.drop_backend(server);
                    self.excluded.push(server);
                    target = self.target_for(class);
                    continue;
                }
            }
            let Some(bytes) = build(self, server)? else {
                self.excluded.clear();
                return Ok(None);
            };
            self.busy = true;
            let sent = match self.backends[server].as_mut() {
                Some(b) => b.conn.write_raw(&bytes).await,
                None => Err(MysqlBackendError::Closed),
            };
            let result = match sent {
                Ok(()) => self.relay_answer(server, expect, prepare.clone()).await,
                Err(err) => Err(Broken::Lost {
                    forwarded: false,
                    err,
                }),
            };
            if !matches!(result, Err(Broken::Client(_))) {
                // Complete, or the connection is gone (dropped below): nothing is half done.
                self.busy = false;
            }
            match result {
                Ok(a) => {
                    self.excluded.clear();
                    self.after(server, d, class, &bytes, a, started);
                    return Ok(Some(server));
                }
                Err(Broken::Client(e)) => return Err(e),
                Err(Broken::Lost { forwarded, err }) => {
                    let tied = self.tied(server);
                    self.ctx
                        .metrics
                        .error(&self.ctx.name, ErrorKind::BackendLost);
                    self.drop_backend(server);
                    if forwarded || tied {
                        return Err(self.lost_fatal(server, &err));
                    }
                    if d.route == Route::Replica && expect != Expect::Nothing {
                        tracing::warn!(cluster = %self.ctx.name, server, error = %err, "replica lost before answering; retrying elsewhere");
                        self.excluded.push(server);
                        target = self.target_for(class);
                        continue;
                    }
                    self.excluded.clear();
                    let e = MyError::new(
                        1105,
                        "HY000",
                        format!("switchyard: lost connection to server {} while running the command: {err}", self.ctx.config().servers[server].name),
                        ErrorKind::BackendLost,
                    );
                    self.client.queue(&e.payload());
                    return Ok(None);
                }
            }
        }
        self.excluded.clear();
        let e = MyError::new(
            1105,
            "HY000",
            "switchyard: no server could take the command",
            ErrorKind::NoServer,
        );
        self.client.queue(&e.payload());
        Ok(None)
    }

    /// Bookkeeping after a complete answer: transaction and autocommit state, session history,
    /// pins, metrics.
    pub(super) fn after(
        &mut self,
        server: usize,
        d: Decision,
        class: Classification,
        sent: &[u8],
        a: Answer,
        started: Instant,
    ) {
        let known = a.status.or(if a.saw_err { a.last_status } else { None });
        let was_in = self.txn.is_some();
        if let Some(s) = known {
            self.status = s;
            self.autocommit = s & status::AUTOCOMMIT != 0;
            self.txn = (s & status::IN_TRANS != 0).then_some(server);
        }
        // `SET autocommit = 1` commits an open transaction, but MariaDB keeps that transaction's
        // characteristics (READ ONLY, its isolation level) for the next statement on the
        // connection: the session's next statement runs there, as it would directly.
        self.after_implicit_commit =
            (was_in && self.txn.is_none() && class.intent == Intent::SessionSet && !a.saw_err)
                .then_some(server);
        if a.status.is_some() {
            self.unsure = false;
        } else if a.saw_err && !self.autocommit && self.txn.is_none() {
            // With autocommit off a failed statement may still have opened a transaction.
            self.unsure = true;
        }
        self.last_used = Some(server);
        if let Some(id) = a.insert_id.filter(|id| *id != 0 && !a.saw_err) {
            self.last_insert_id = id;
        }
        self.diag_after(server, &a);
        if let Some(s) = self.after_implicit_commit {
            // The connection stays for the session's next statement as for a diagnostics read
            // (then the next user of the connection gets it cleared).
            self.diag_hold(s);
        }
        self.note_txn_statement(class, sent, !a.saw_err);
        if d.route == Route::Primary && !matches!(class.intent, Intent::Read | Intent::SessionSet) {
            self.wrote = true;
        }
        if !a.saw_err {
            match class.intent {
                Intent::SessionSet => {
                    // MySQL session settings are not transactional: they hold whatever the transaction does.
                    if let Some(payload) = command_payload(sent) {
                        if payload.first() == Some(&COM_INIT_DB) {
                            self.database =
                                Some(String::from_utf8_lossy(&payload[1..]).into_owned());
                        } else if let Some(db) = pooled::use_database(&payload) {
                            self.database = Some(db);
                        } else if let Some(c) = crate::frontend::settings::consistency_setting(
                            &String::from_utf8_lossy(&payload),
                        ) {
                            self.consistency = Some(c);
                        } else if let Some(d) = crate::frontend::settings::debug_setting(
                            &String::from_utf8_lossy(&payload),
                        ) {
                            self.debug = d;
                        }
                        let text = payload.get(1..).filter(|_| payload[0] == COM_QUERY);
                        let set =
                            text.and_then(|t| wait_timeout_setting(&String::from_utf8_lossy(t)));
                        if let Some(t) = set {
                            self.wait_timeout = match t {
                                WaitTimeout::Seconds(n) => Some(Duration::from_secs(n)),
                                WaitTimeout::Default => None,
                            };
                        }
                        let prev = self.history_hashes.last().copied().unwrap_or(0);
                        let hash = pooled::chain(prev, &payload);
                        let unsafe_reset = pooled::reset_unsafe(&payload);
                        self.history.push(History::Command(payload));
                        self.history_hashes.push(hash);
                        let n = self.history.len();
                        if let Some(b) = self.backends[server].as_mut() {
                            b.applied = n;
                            b.applied_hash = hash;
                            b.reset_unsafe |= unsafe_reset;
                        }
                    }
                }
                Intent::Pin if self.pinned.is_none() => {
                    tracing::info!(cluster = %self.ctx.name, reason = class.reason.as_str(), "mysql session pinned to the primary");
                    self.pinned = Some((server, class.reason));
                    self.pin_gauge = Some(
                        self.ctx
                            .metrics
                            .pinned(&self.ctx.name, class.reason.as_str()),
                    );
                }
                _ => {}
            }
        }
        self.stats.routed(d.route, d.reason);
        self.stats.observe(d.route, started.elapsed().as_secs_f64());
        if self.debug {
            let name = &self.ctx.config().servers[server].name;
            tracing::info!(cluster = %self.ctx.name, server = %name, route = d.route.as_str(), reason = d.reason.as_str(), "routing decision");
        }
    }
}

/// The command payload inside the first packet of `sent` (raw frames as written to the server).
pub(super) fn command_payload(sent: &[u8]) -> Option<Vec<u8>> {
    let mut buf = BytesMut::from(sent);
    crate::wire::mysql::packet::split_packet(&mut buf, usize::MAX)
        .ok()
        .flatten()
        .map(|p| p.payload.to_vec())
}
