//! MySQL statement commands of one client: PREPARE (proxy ids), EXECUTE (re-prepare where needed,
//! carried parameter types, buffered long data), FETCH from cursors, CLOSE, RESET, and
//! COM_RESET_CONNECTION. Server statements are found by text ([`stmt_key`]), so a statement a
//! pooled connection got from any session is reused.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::answer::Broken;
use super::*;
use crate::frontend::mysql::stmt::stmt_key;
use crate::wire::mysql::packet::{encode_into, Packet};
use crate::wire::mysql::response::Expect;

impl Relay {
    pub(super) async fn prepare(&mut self, p: Packet, started: Instant) -> Result<(), MyError> {
        let sql = p.payload.slice(1..);
        let class = self
            .ctx
            .classifier()
            .classify(&String::from_utf8_lossy(&sql));
        let key = stmt_key(self.database.as_deref(), &sql);
        self.run_routed(
            class,
            started,
            |_, _| Ok(Some(p.raw.clone())),
            Expect::Prepare,
            Some((sql, key, class)),
            None,
        )
        .await?;
        Ok(())
    }

    fn unknown_stmt(&mut self, id: u32, what: &str) {
        tracing::debug!(
            id,
            what,
            known = self.stmts.len(),
            "unknown statement id from client"
        );
        let e = MyError::new(
            1243,
            "HY000",
            format!("Unknown prepared statement handler ({id}) given to {what}"),
            ErrorKind::ClientProtocol,
        );
        self.client.queue(&e.payload());
    }

    pub(super) async fn execute(&mut self, p: Packet, started: Instant) -> Result<(), MyError> {
        let Some(id) = stmt_id(&p.payload) else {
            return Err(MyError::protocol("malformed COM_STMT_EXECUTE"));
        };
        let Some(stmt) = self.stmts.get_mut(id) else {
            self.unknown_stmt(id, "mysqld_stmt_execute");
            return Ok(());
        };
        let mut bound = false;
        let mut cursor = false;
        if let Some(v) = parse_execute(&p.payload, stmt.params) {
            cursor = v.flags & 0x01 != 0;
            if v.new_params_bound && stmt.params > 0 {
                stmt.types = Some(v.types.to_vec());
                bound = true;
            }
        }
        let class = stmt.class;
        let key = stmt.key;
        let sql = stmt.sql.clone();
        let params = stmt.params;
        let types = stmt.types.clone();
        let long_data = std::mem::take(&mut stmt.long_data);
        let payload = p.payload.clone();
        let build = |me: &mut Self, server: usize| -> Result<Option<Bytes>, MyError> {
            let Some(b) = me.backends[server].as_mut() else {
                return Ok(None);
            };
            let Some(sid) = b.stmts.server_id(key) else {
                return Ok(None);
            };
            let mut body = with_stmt_id(&payload, sid);
            if params > 0 {
                match &types {
                    // The server keeps the types it got last for this statement, maybe from
                    // another proxy statement or session: send ours when they differ.
                    Some(t) if !bound && !b.stmts.has_types(key, t) => {
                        if let Some(with) = execute_with_types(&body, params, t) {
                            body = with;
                            b.stmts.set_types(key, Some(t));
                        }
                    }
                    Some(t) if bound => b.stmts.set_types(key, Some(t)),
                    _ => {}
                }
            }
            let mut out = BytesMut::new();
            for ld in &long_data {
                encode_into(&mut out, 0, &with_stmt_id(ld, sid));
            }
            encode_into(&mut out, 0, &body);
            Ok(Some(out.freeze()))
        };
        let ran = self
            .run_routed(
                class,
                started,
                build,
                Expect::ResultSet,
                None,
                Some((key, sql)),
            )
            .await?;
        match ran {
            Some(server) if cursor => {
                let sid = self.backends[server]
                    .as_ref()
                    .and_then(|b| b.stmts.server_id(key));
                if let Some(sid) = sid {
                    self.cursors.insert(id, (server, sid));
                }
            }
            Some(_) => {}
            None => {
                // Not sent (statement missing on the server that was finally chosen): say so.
                if self.client.queued() == 0 {
                    self.unknown_stmt(id, "mysqld_stmt_execute");
                }
            }
        }
        Ok(())
    }

    pub(super) async fn fetch(&mut self, p: Packet, started: Instant) -> Result<(), MyError> {
        let Some(id) = stmt_id(&p.payload) else {
            return Err(MyError::protocol("malformed COM_STMT_FETCH"));
        };
        let Some(&(server, sid)) = self.cursors.get(&id) else {
            self.unknown_stmt(id, "mysqld_stmt_fetch");
            return Ok(());
        };
        let mut out = BytesMut::new();
        encode_into(&mut out, 0, &with_stmt_id(&p.payload, sid));
        self.busy = true;
        let sent = match self.backends[server].as_mut() {
            Some(b) => b.conn.write_raw(&out).await,
            None => Err(MysqlBackendError::Closed),
        };
        let r = match sent {
            Ok(()) => self.relay_answer(server, Expect::Rows, None).await,
            Err(err) => Err(Broken::Lost {
                forwarded: false,
                err,
            }),
        };
        if !matches!(r, Err(Broken::Client(_))) {
            self.busy = false;
        }
        match r {
            Ok(a) => {
                if let Some(s) = a.status {
                    self.status = s;
                }
                let d = fixed(server, &self.topology(), RouteReason::InTransaction);
                self.stats.routed(d.route, RouteReason::Class(Reason::Read));
                self.stats.observe(d.route, started.elapsed().as_secs_f64());
                Ok(())
            }
            Err(Broken::Client(e)) => Err(e),
            Err(Broken::Lost { err, .. }) => {
                self.drop_backend(server);
                Err(self.lost_fatal(server, &err))
            }
        }
    }

    pub(super) fn long_data(&mut self, p: Packet) {
        if let Some(id) = stmt_id(&p.payload) {
            if let Some(s) = self.stmts.get_mut(id) {
                s.long_data.push(p.payload.clone());
            }
        }
    }

    /// COM_STMT_CLOSE: forget the client's statement. Its server statements are closed only
    /// where nothing else may use them: in session mode when no other statement of the session
    /// has the same text; in transaction mode (where a later session may reuse them) only when
    /// a cursor was open on one or the connection holds more than `pool.max_prepared_statements`.
    pub(super) async fn close_stmt(&mut self, p: Packet) {
        let Some(id) = stmt_id(&p.payload) else {
            return;
        };
        let Some(stmt) = self.stmts.remove(id) else {
            return;
        };
        let cursor = self.cursors.remove(&id);
        if self.stmts.shares_key(id, stmt.key) {
            return;
        }
        let pooling = self.pooling();
        let max = self.ctx.config().pool.max_prepared_statements;
        for (server, slot) in self.backends.iter_mut().enumerate() {
            let Some(b) = slot.as_mut() else {
                continue;
            };
            let had_cursor = cursor.is_some_and(|c| c.0 == server);
            if pooling && !had_cursor && b.stmts.len() <= max {
                continue;
            }
            if let Some(sid) = b.stmts.remove(stmt.key) {
                let _ = b.conn.write_packet(0, &with_stmt_id(&p.payload, sid)).await;
            }
        }
    }

    pub(super) async fn reset_stmt(&mut self, p: Packet) -> Result<(), MyError> {
        let Some(id) = stmt_id(&p.payload) else {
            return Err(MyError::protocol("malformed COM_STMT_RESET"));
        };
        let Some(s) = self.stmts.get_mut(id) else {
            self.unknown_stmt(id, "mysqld_stmt_reset");
            return Ok(());
        };
        s.long_data.clear();
        if let Some((server, sid)) = self.cursors.remove(&id) {
            if let Some(b) = self.backends[server].as_mut() {
                let deadline = self.ctx.limits().session_replay_timeout;
                let r = tokio::time::timeout(
                    deadline,
                    b.conn
                        .run_consumed(&with_stmt_id(&p.payload, sid), Expect::Simple),
                )
                .await;
                if !matches!(r, Ok(Ok(_))) {
                    self.drop_backend(server);
                }
            }
        }
        self.local_ok();
        Ok(())
    }

    pub(super) async fn reset_connection(
        &mut self,
        p: Packet,
        started: Instant,
    ) -> Result<(), MyError> {
        let class = Classification {
            intent: Intent::TxnControl,
            reason: Reason::Session,
            hint: None,
        };
        let ran = self
            .run_routed(
                class,
                started,
                |_, _| Ok(Some(p.raw.clone())),
                Expect::Simple,
                None,
                None,
            )
            .await?;
        if let Some(server) = ran {
            self.history.clear();
            self.history_hashes.clear();
            self.stmts.clear();
            self.cursors.clear();
            self.pinned = None;
            self.pin_gauge = None;
            self.route_override = RouteOverride::Auto;
            self.txn = None;
            self.diag_reset();
            // Session variables are the global ones again.
            self.wait_timeout = None;
            for i in 0..self.backends.len() {
                if i != server {
                    self.drop_backend(i);
                }
            }
            if let Some(b) = self.backends[server].as_mut() {
                b.applied = 0;
                b.applied_hash = 0;
                b.stmts.clear();
            }
            self.last_used = Some(server);
        }
        Ok(())
    }
}
