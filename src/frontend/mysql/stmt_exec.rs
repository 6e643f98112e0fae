//! MySQL statement commands of one client: PREPARE (proxy ids), EXECUTE (re-prepare where needed,
//! carried parameter types, buffered long data), FETCH from cursors, CLOSE, RESET, and
//! COM_RESET_CONNECTION.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::exec::Broken;
use super::*;
use crate::wire::mysql::packet::{encode_into, Packet};
use crate::wire::mysql::response::Expect;

impl Relay {
    pub(super) async fn prepare(&mut self, p: Packet, started: Instant) -> Result<(), MyError> {
        let sql = p.payload.slice(1..);
        let class = self.ctx.classifier.classify(&String::from_utf8_lossy(&sql));
        self.run_routed(
            class,
            started,
            |_, _| Ok(Some(p.raw.clone())),
            Expect::Prepare,
            Some((sql, class)),
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
        let sql = stmt.sql.clone();
        let params = stmt.params;
        let types = stmt.types.clone();
        let long_data = std::mem::take(&mut stmt.long_data);
        let payload = p.payload.clone();
        let build = |me: &mut Self, server: usize| -> Result<Option<Bytes>, MyError> {
            let Some(b) = me.backends[server].as_mut() else {
                return Ok(None);
            };
            let Some(sid) = b.stmts.server_id(id) else {
                return Ok(None);
            };
            let mut body = with_stmt_id(&payload, sid);
            if !bound && params > 0 && !b.stmts.has_types(id) {
                if let Some(t) = &types {
                    if let Some(with) = execute_with_types(&body, params, t) {
                        body = with;
                    }
                }
            }
            b.stmts.set_types(id);
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
                Some((id, sql)),
            )
            .await?;
        match ran {
            Some(server) if cursor => {
                self.cursors.insert(id, server);
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
        let Some(&server) = self.cursors.get(&id) else {
            self.unknown_stmt(id, "mysqld_stmt_fetch");
            return Ok(());
        };
        let Some(sid) = self.backends[server]
            .as_ref()
            .and_then(|b| b.stmts.server_id(id))
        else {
            self.unknown_stmt(id, "mysqld_stmt_fetch");
            return Ok(());
        };
        let mut out = BytesMut::new();
        encode_into(&mut out, 0, &with_stmt_id(&p.payload, sid));
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

    pub(super) async fn close_stmt(&mut self, p: Packet) {
        let Some(id) = stmt_id(&p.payload) else {
            return;
        };
        self.stmts.remove(id);
        self.cursors.remove(&id);
        for b in self.backends.iter_mut().flatten() {
            if let Some(sid) = b.stmts.remove(id) {
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
        if let Some(server) = self.cursors.remove(&id) {
            if let Some(b) = self.backends[server].as_mut() {
                if let Some(sid) = b.stmts.server_id(id) {
                    if b.conn
                        .run_consumed(&with_stmt_id(&p.payload, sid), Expect::Simple)
                        .await
                        .is_err()
                    {
                        self.drop_backend(server);
                    }
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
            self.stmts.clear();
            self.cursors.clear();
            self.pinned = None;
            self.route_override = RouteOverride::Auto;
            self.txn = None;
            for i in 0..self.backends.len() {
                if i != server {
                    self.drop_backend(i);
                }
            }
            if let Some(b) = self.backends[server].as_mut() {
                b.applied = 0;
                b.stmts.clear();
            }
            self.last_used = Some(server);
        }
        Ok(())
    }
}
