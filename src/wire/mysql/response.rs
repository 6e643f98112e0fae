//! A pure tracker that is fed a server's packets in answer to one command and tells when that
//! answer is complete (result sets, multi-results, cursors, prepare, LOCAL INFILE...).

use super::command::{self, parse_prepare_ok, PrepareOk};
use super::packet::{caps, read_lenenc_bytes, read_lenenc_int, MAX_PAYLOAD};
use super::status::{is_progress_report, parse_eof, parse_ok, CURSOR_EXISTS, MORE_RESULTS_EXISTS};

/// More columns than any server allows in one result (MySQL and MariaDB stop at 4096).
const MAX_COLUMNS: u64 = 0xFFFF;

/// A column definition starts with six length-encoded strings (catalog, schema, table,
/// org_table, name, org_name) followed by the fixed-length fields.
fn is_column_def(payload: &[u8]) -> bool {
    let mut b = payload;
    (0..6).all(|_| read_lenenc_bytes(&mut b).is_some()) && !b.is_empty()
}

/// The shape of the answer a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One OK or ERR (or a short EOF, e.g. COM_SET_OPTION on old servers).
    Simple,
    /// OK / ERR / LOCAL INFILE request / result set(s), possibly several (MORE_RESULTS_EXISTS).
    ResultSet,
    /// COM_STMT_PREPARE: PREPARE_OK, parameter and column definitions, or ERR.
    Prepare,
    /// COM_FIELD_LIST: column definitions until EOF, or ERR.
    FieldList,
    /// COM_STMT_FETCH: rows until EOF, or ERR.
    Rows,
    /// COM_STATISTICS: one plain-text packet.
    Statistics,
    /// No answer at all (COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
    Nothing,
}

/// The answer shape for a command byte (after authentication).
pub fn expect_for(command: u8) -> Expect {
    match command {
        command::COM_QUERY
        | command::COM_STMT_EXECUTE
        | command::COM_PROCESS_INFO
        | command::COM_STMT_BULK_EXECUTE => Expect::ResultSet,
        command::COM_STMT_PREPARE => Expect::Prepare,
        command::COM_FIELD_LIST => Expect::FieldList,
        command::COM_STMT_FETCH => Expect::Rows,
        command::COM_STATISTICS => Expect::Statistics,
        command::COM_QUIT | command::COM_STMT_CLOSE | command::COM_STMT_SEND_LONG_DATA => {
            Expect::Nothing
        }
        _ => Expect::Simple,
    }
}

/// What the caller should do after feeding one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The answer continues: read another packet.
    More,
    /// The server asks for a LOCAL INFILE: relay the client's file packets up to and including
    /// the empty one, then feed the server's OK/ERR.
    LocalInfile,
    /// The answer is complete. `status` is the final server status (from the last OK/EOF), or
    /// `None` after an ERR, for answers without one, or when the answer was malformed.
    Done { status: Option<u16> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Simple,
    ResultHead,
    InfileReply,
    Columns(u64),
    ColumnsEof,
    Rows,
    PrepareHead,
    PrepareParams(u16),
    PrepareParamsEof,
    PrepareColumns(u16),
    PrepareColumnsEof,
    FieldList,
    FetchRows,
    Statistics,
    Done,
}

/// Tracks one command's answer, packet by packet.
#[derive(Debug, Clone)]
pub struct ResponseTracker {
    state: State,
    deprecate_eof: bool,
    capabilities: u32,
    last_status: Option<u16>,
    prepare_ok: Option<PrepareOk>,
    malformed: bool,
}

impl ResponseTracker {
    /// `capabilities` are the ones negotiated on the connection the answer comes from.
    pub fn new(expect: Expect, capabilities: u32) -> Self {
        let state = match expect {
            Expect::Simple => State::Simple,
            Expect::ResultSet => State::ResultHead,
            Expect::Prepare => State::PrepareHead,
            Expect::FieldList => State::FieldList,
            Expect::Rows => State::FetchRows,
            Expect::Statistics => State::Statistics,
            Expect::Nothing => State::Done,
        };
        ResponseTracker {
            state,
            deprecate_eof: capabilities & caps::CLIENT_DEPRECATE_EOF != 0,
            capabilities,
            last_status: None,
            prepare_ok: None,
            malformed: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The answer did not follow the protocol; the server connection should be closed.
    pub fn is_malformed(&self) -> bool {
        self.malformed
    }

    /// The server status from the most recent OK or EOF seen.
    pub fn last_status(&self) -> Option<u16> {
        self.last_status
    }

    /// The COM_STMT_PREPARE_OK header, once seen.
    pub fn prepare_ok(&self) -> Option<PrepareOk> {
        self.prepare_ok
    }

    /// Feed the next packet payload of the answer.
    pub fn feed(&mut self, payload: &[u8]) -> Step {
        if self.state != State::Statistics
            && self.state != State::Done
            && is_progress_report(payload)
        {
            return Step::More;
        }
        let Some(&first) = payload.first() else {
            return if self.state == State::Statistics {
                self.done(None)
            } else {
                self.bad()
            };
        };
        match self.state {
            State::Done => self.bad(),
            State::Statistics => self.done(None),
            State::Simple => match first {
                0x00 | 0xFE => match self.terminator(payload) {
                    Some(status) => self.done(Some(status)),
                    None => self.bad(),
                },
                0xFF => self.done(None),
                _ => self.bad(),
            },
            State::ResultHead => match first {
                0x00 => self.result_ok(payload),
                0xFF => self.done(None),
                0xFB => {
                    self.state = State::InfileReply;
                    Step::LocalInfile
                }
                _ => {
                    let mut b = payload;
                    match read_lenenc_int(&mut b) {
                        Some(n) if (1..=MAX_COLUMNS).contains(&n) && b.is_empty() => {
                            self.state = State::Columns(n);
                            Step::More
                        }
                        _ => self.bad(),
                    }
                }
            },
            State::InfileReply => match first {
                0x00 => self.result_ok(payload),
                0xFF => self.done(None),
                _ => self.bad(),
            },
            State::Columns(left) => {
                if first == 0xFF {
                    return self.done(None);
                }
                if !is_column_def(payload) {
                    return self.bad();
                }
                self.state = match (left - 1, self.deprecate_eof) {
                    (0, true) => State::Rows,
                    (0, false) => State::ColumnsEof,
                    (n, _) => State::Columns(n),
                };
                Step::More
            }
            State::ColumnsEof => match parse_eof(payload) {
                Some((_, status)) => {
                    self.last_status = Some(status);
                    if status & CURSOR_EXISTS != 0 {
                        self.done(Some(status))
                    } else {
                        self.state = State::Rows;
                        Step::More
                    }
                }
                None if first == 0xFF => self.done(None),
                None => self.bad(),
            },
            State::Rows => match first {
                0xFF => self.done(None),
                0xFE if self.is_terminator(payload) => match self.terminator(payload) {
                    Some(status) if status & MORE_RESULTS_EXISTS != 0 => {
                        self.state = State::ResultHead;
                        Step::More
                    }
                    Some(status) => self.done(Some(status)),
                    None => self.bad(),
                },
                _ => Step::More,
            },
            State::FetchRows | State::FieldList => match first {
                0xFF => self.done(None),
                0xFE if self.is_terminator(payload) => match self.terminator(payload) {
                    Some(status) => self.done(Some(status)),
                    None => self.bad(),
                },
                _ if self.state == State::FieldList && !is_column_def(payload) => self.bad(),
                _ => Step::More,
            },
            State::PrepareHead => match first {
                0xFF => self.done(None),
                0x00 => match parse_prepare_ok(payload) {
                    Some(ok) => {
                        self.prepare_ok = Some(ok);
                        self.after_params(ok.params)
                    }
                    None => self.bad(),
                },
                _ => self.bad(),
            },
            State::PrepareParams(left) => {
                if first == 0xFF {
                    return self.done(None);
                }
                if !is_column_def(payload) {
                    return self.bad();
                }
                if left > 1 {
                    self.state = State::PrepareParams(left - 1);
                    return Step::More;
                }
                if self.deprecate_eof {
                    self.after_param_defs()
                } else {
                    self.state = State::PrepareParamsEof;
                    Step::More
                }
            }
            State::PrepareParamsEof => match parse_eof(payload) {
                Some((_, status)) => {
                    self.last_status = Some(status);
                    self.after_param_defs()
                }
                None => self.bad(),
            },
            State::PrepareColumns(left) => {
                if first == 0xFF {
                    return self.done(None);
                }
                if !is_column_def(payload) {
                    return self.bad();
                }
                if left > 1 {
                    self.state = State::PrepareColumns(left - 1);
                    return Step::More;
                }
                if self.deprecate_eof {
                    self.done(None)
                } else {
                    self.state = State::PrepareColumnsEof;
                    Step::More
                }
            }
            State::PrepareColumnsEof => match parse_eof(payload) {
                Some((_, status)) => {
                    self.last_status = Some(status);
                    self.done(None)
                }
                None => self.bad(),
            },
        }
    }

    fn after_params(&mut self, params: u16) -> Step {
        if params > 0 {
            self.state = State::PrepareParams(params);
            Step::More
        } else {
            self.after_param_defs()
        }
    }

    fn after_param_defs(&mut self) -> Step {
        match self.prepare_ok.map(|p| p.columns).unwrap_or(0) {
            0 => self.done(None),
            n => {
                self.state = State::PrepareColumns(n);
                Step::More
            }
        }
    }

    /// OK as the head of a result (or after LOCAL INFILE): done unless more results follow.
    fn result_ok(&mut self, payload: &[u8]) -> Step {
        match parse_ok(payload, self.capabilities) {
            Some(ok) if ok.status & MORE_RESULTS_EXISTS != 0 => {
                self.last_status = Some(ok.status);
                self.state = State::ResultHead;
                Step::More
            }
            Some(ok) => self.done(Some(ok.status)),
            None => self.bad(),
        }
    }

    /// Whether a 0xFE packet in a row stream ends it (rather than being a row whose first
    /// value is a huge length-encoded string).
    fn is_terminator(&self, payload: &[u8]) -> bool {
        if self.deprecate_eof {
            payload.len() < MAX_PAYLOAD
        } else {
            payload.len() < 9
        }
    }

    /// The status of an end packet: an OK (0x00, or 0xFE under DEPRECATE_EOF) or an EOF.
    fn terminator(&mut self, payload: &[u8]) -> Option<u16> {
        let status = match payload.first() {
            Some(0x00) => parse_ok(payload, self.capabilities).map(|ok| ok.status),
            Some(0xFE) if self.deprecate_eof => parse_ok(payload, self.capabilities)
                .map(|ok| ok.status)
                .or_else(|| parse_eof(payload).map(|(_, s)| s)),
            Some(0xFE) => parse_eof(payload).map(|(_, s)| s),
            _ => None,
        }?;
        self.last_status = Some(status);
        Some(status)
    }

    fn done(&mut self, status: Option<u16>) -> Step {
        if status.is_some() {
            self.last_status = status;
        }
        self.state = State::Done;
        Step::Done { status }
    }

    fn bad(&mut self) -> Step {
        self.malformed = true;
        self.state = State::Done;
        Step::Done { status: None }
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
