//! Relaying one server answer to the client: the response tracker follows it to its end, complete
//! one-frame packets go through in place and in one copy, a prepare's answer gets the client's
//! statement id, and LOCAL INFILE data is relayed from the client.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::frontend::mysql::stmt::Stmt;
use crate::wire::mysql::packet::{encode_into, whole_frame, Packet};
use crate::wire::mysql::response::{Expect, ResponseTracker, Step};
use crate::wire::mysql::status::{err_packet, is_eof, is_err, parse_eof, parse_err, parse_ok};

/// What the packet that ends an answer (`step` says whether it does) leaves for a later
/// diagnostics read: the `last_insert_id` of an OK; whether there is anything to read at all (an
/// ERR, affected rows, an insert id or warnings; a packet we cannot read counts as something);
/// whether rows came (it ends a result set); the affected rows of an OK that is no result set's
/// end. A prepare's first packet is not an OK: it reports nothing.
fn ending(step: &Step, payload: &[u8], caps: u32, expect: Expect) -> Ending {
    let none = (None, false, false, None);
    if !matches!(step, Step::Done { .. }) || expect == Expect::Prepare {
        return none;
    }
    // Under CLIENT_DEPRECATE_EOF a result set ends with an OK (0xFE header, 7 bytes when it has
    // no info), which reads as an EOF by its length but holds the warning count elsewhere.
    let deprecate_eof = caps & crate::wire::mysql::packet::caps::CLIENT_DEPRECATE_EOF != 0;
    if is_eof(payload) && !deprecate_eof {
        return (
            None,
            parse_eof(payload).is_none_or(|(w, _)| w != 0),
            true,
            None,
        );
    }
    match payload.first() {
        Some(&head @ (0x00 | 0xFE)) => match parse_ok(payload, caps) {
            Some(ok) => {
                let left = ok.affected != 0 || ok.last_insert_id != 0 || ok.warnings != 0;
                let id = (head == 0x00).then_some(ok.last_insert_id);
                let affected = (head == 0x00).then_some(ok.affected);
                (id, left, head == 0xFE, affected)
            }
            None => (None, true, false, None),
        },
        _ => (None, true, false, None),
    }
}

/// What [`ending`] reads: insert id, leaves diagnostics, rows, affected rows.
type Ending = (Option<u64>, bool, bool, Option<u64>);

/// ER_OPTION_PREVENTS_STATEMENT for `--read-only` (a replica refusing a write).
const READ_ONLY_SERVER: u16 = 1290;
/// ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION.
const READ_ONLY_TRANSACTION: u16 = 1792;

/// The ERR the primary gives a write in a read-only transaction, for a replica's ERR `payload`
/// refusing it for its read_only setting; `None` for any other packet.
fn read_only_refusal(payload: &[u8]) -> Option<Vec<u8>> {
    let e = parse_err(payload)?;
    (e.code == READ_ONLY_SERVER && e.message.contains("read-only")).then(|| {
        err_packet(
            READ_ONLY_TRANSACTION,
            "25006",
            "Cannot execute statement in a READ ONLY transaction",
        )
    })
}

/// Why relaying an answer stopped early.
pub(super) enum Broken {
    Client(MyError),
    /// The server connection failed; `forwarded` says whether part of the answer reached the client.
    Lost {
        forwarded: bool,
        err: MysqlBackendError,
    },
}

impl From<MyError> for Broken {
    fn from(e: MyError) -> Self {
        Broken::Client(e)
    }
}

pub(super) struct Answer {
    pub(super) status: Option<u16>,
    pub(super) saw_err: bool,
    /// The status of the last OK/EOF seen, also when an ERR ended the answer (multi-results).
    pub(super) last_status: Option<u16>,
    /// `last_insert_id` of the OK packet that ended the answer, if it was one.
    pub(super) insert_id: Option<u64>,
    /// The answer left something a later diagnostics read would see (see [`ending`]).
    pub(super) leaves_diag: bool,
    /// It ended a result set.
    pub(super) rows: bool,
    /// The affected rows of the OK that ended it (no result set, no ERR).
    pub(super) affected: Option<u64>,
    /// It answered a statement (a query or an execute; not a prepare or a fetch).
    pub(super) statement: bool,
}

impl Relay {
    /// Relay a server's answer to the client. With `prepare`, the statement id in the first packet
    /// is replaced by a proxy id and the statement registered.
    pub(super) async fn relay_answer(
        &mut self,
        server: usize,
        expect: Expect,
        mut prepare: Option<(Bytes, u64, Classification)>,
    ) -> Result<Answer, Broken> {
        let mut answer = Answer {
            status: None,
            saw_err: false,
            last_status: None,
            insert_id: None,
            leaves_diag: false,
            rows: false,
            affected: None,
            statement: matches!(expect, Expect::ResultSet | Expect::Simple),
        };
        if expect == Expect::Nothing {
            return Ok(answer);
        }
        // A read-only transaction runs on a replica: a write in it is refused there for the
        // server's read_only (1290); the primary would refuse it for the transaction (1792).
        let ro_txn = self.txn == Some(server)
            && self
                .topology()
                .servers
                .get(server)
                .is_some_and(|s| s.role == crate::topology::Role::Replica);
        let Relay {
            backends,
            client,
            stmts,
            ..
        } = self;
        let Some(b) = backends[server].as_mut() else {
            return Err(Broken::Lost {
                forwarded: false,
                err: MysqlBackendError::Closed,
            });
        };
        let caps = b.conn.capabilities;
        let mut tracker = ResponseTracker::new(expect, caps);
        let mut forwarded = false;
        loop {
            if client.queued() > 64 * 1024 {
                client.flush().await?;
            }
            // The common path (no prepare answer to rewrite): every complete one-frame packet
            // buffered is fed to the tracker where it lies, and all go to the client in one copy.
            let mut step = None;
            if prepare.is_none() {
                let (buf, max) = b.conn.buffered();
                let mut at = 0;
                while let Some((end, payload)) = whole_frame(buf, at, max) {
                    if ro_txn && is_err(payload) {
                        break; // taken out whole below, maybe rewritten
                    }
                    at = end;
                    answer.saw_err |= is_err(payload);
                    match tracker.feed(payload) {
                        Step::More => {}
                        s => {
                            (
                                answer.insert_id,
                                answer.leaves_diag,
                                answer.rows,
                                answer.affected,
                            ) = ending(&s, payload, caps, expect);
                            step = Some(s);
                            break;
                        }
                    }
                }
                if at > 0 {
                    client.queue_raw(&buf[..at]);
                    b.conn.consume(at);
                    forwarded = true;
                }
            }
            if step.is_none() {
                // Nothing complete buffered (read on), or a packet to take out whole: the first
                // answer to a prepare (its id is rewritten), one spanning several frames, or one
                // over the limit (refused).
                let p: Packet = match b.conn.buffered_packet() {
                    Ok(Some(p)) => p,
                    Ok(None) => {
                        if let Err(err) = b.conn.fill().await {
                            return Err(Broken::Lost { forwarded, err });
                        }
                        continue;
                    }
                    Err(err) => return Err(Broken::Lost { forwarded, err }),
                };
                answer.saw_err |= is_err(&p.payload);
                let s = tracker.feed(&p.payload);
                (
                    answer.insert_id,
                    answer.leaves_diag,
                    answer.rows,
                    answer.affected,
                ) = ending(&s, &p.payload, caps, expect);
                match prepare.take() {
                    Some((sql, key, class)) => match parse_prepare_ok(&p.payload) {
                        Some(ok) if !is_err(&p.payload) => {
                            let id = stmts.add(Stmt {
                                sql,
                                key,
                                class,
                                params: ok.params,
                                columns: ok.columns,
                                types: None,
                                long_data: Vec::new(),
                            });
                            b.stmts.insert(key, ok.stmt_id);
                            tracing::debug!(
                                server,
                                client_id = id,
                                server_id = ok.stmt_id,
                                "statement prepared"
                            );
                            let mut out = BytesMut::new();
                            let mut body = p.payload.to_vec();
                            body[1..5].copy_from_slice(&id.to_le_bytes());
                            encode_into(&mut out, p.seq, &body);
                            client.queue_raw(&out);
                        }
                        _ => client.queue_raw(&p.raw),
                    },
                    None if ro_txn => match read_only_refusal(&p.payload) {
                        Some(body) => {
                            let mut out = BytesMut::new();
                            encode_into(&mut out, p.seq, &body);
                            client.queue_raw(&out);
                        }
                        None => client.queue_raw(&p.raw),
                    },
                    None => client.queue_raw(&p.raw),
                }
                forwarded = true;
                step = Some(s);
            }
            match step {
                None | Some(Step::More) => {}
                Some(Step::LocalInfile) => {
                    client.flush().await?;
                    loop {
                        let data = client.read_packet().await?;
                        if let Err(err) = b.conn.write_raw(&data.raw).await {
                            return Err(Broken::Lost { forwarded, err });
                        }
                        if data.payload.is_empty() {
                            break;
                        }
                    }
                }
                Some(Step::Done { status }) => {
                    answer.status = status;
                    answer.last_status = tracker.last_status();
                    if tracker.is_malformed() {
                        return Err(Broken::Lost {
                            forwarded,
                            err: MysqlBackendError::Protocol("malformed answer".into()),
                        });
                    }
                    return Ok(answer);
                }
            }
        }
    }
}
