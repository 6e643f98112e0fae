//! OK / ERR / EOF packets: builders for the ones the proxy sends, parsers for the server's, and
//! GTID extraction from session-state tracking. The server-status flags are re-exported here.

use bytes::BufMut;

pub use super::packet::status::*;
use super::packet::{
    caps, put_lenenc_bytes, put_lenenc_int, read_bytes, read_lenenc_bytes, read_lenenc_int,
    read_u16, read_u8, MAX_PAYLOAD,
};

/// Session-state entry types (CLIENT_SESSION_TRACK).
pub const SESSION_TRACK_SYSTEM_VARIABLES: u8 = 0;
pub const SESSION_TRACK_SCHEMA: u8 = 1;
pub const SESSION_TRACK_STATE_CHANGE: u8 = 2;
pub const SESSION_TRACK_GTIDS: u8 = 3;
pub const SESSION_TRACK_TRANSACTION_CHARACTERISTICS: u8 = 4;
pub const SESSION_TRACK_TRANSACTION_STATE: u8 = 5;

/// OK packet (0x00 header) for a client that did not negotiate CLIENT_SESSION_TRACK; `info` is
/// omitted when empty, as the server does.
pub fn ok_packet(
    affected: u64,
    last_insert_id: u64,
    status: u16,
    warnings: u16,
    info: &str,
) -> Vec<u8> {
    ok_with_header(0x00, affected, last_insert_id, status, warnings, info, 0)
}

/// OK packet honouring the client's negotiated capabilities: with CLIENT_SESSION_TRACK a
/// non-empty `info` is length-encoded.
pub fn ok_packet_for(
    capabilities: u32,
    affected: u64,
    last_insert_id: u64,
    status: u16,
    warnings: u16,
    info: &str,
) -> Vec<u8> {
    ok_with_header(
        0x00,
        affected,
        last_insert_id,
        status,
        warnings,
        info,
        capabilities,
    )
}

/// The packet that ends a result set's rows: an OK with 0xFE header under CLIENT_DEPRECATE_EOF,
/// an EOF otherwise.
pub fn result_end_packet(capabilities: u32, warnings: u16, status: u16) -> Vec<u8> {
    if capabilities & caps::CLIENT_DEPRECATE_EOF != 0 {
        ok_with_header(0xFE, 0, 0, status, warnings, "", capabilities)
    } else {
        eof_packet(warnings, status)
    }
}

fn ok_with_header(
    header: u8,
    affected: u64,
    last_insert_id: u64,
    status: u16,
    warnings: u16,
    info: &str,
    capabilities: u32,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + info.len());
    b.put_u8(header);
    put_lenenc_int(&mut b, affected);
    put_lenenc_int(&mut b, last_insert_id);
    // No session-state entries are written, so never announce them.
    b.put_u16_le(status & !SESSION_STATE_CHANGED);
    b.put_u16_le(warnings);
    if !info.is_empty() {
        if capabilities & caps::CLIENT_SESSION_TRACK != 0 {
            put_lenenc_bytes(&mut b, info.as_bytes());
        } else {
            b.put_slice(info.as_bytes());
        }
    }
    b
}

/// EOF packet (0xFE, warnings, status).
pub fn eof_packet(warnings: u16, status: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(5);
    b.put_u8(0xFE);
    b.put_u16_le(warnings);
    b.put_u16_le(status);
    b
}

/// ERR packet (0xFF, code, '#', 5-character SQLSTATE, message). A `sqlstate` that is not five
/// ASCII alphanumerics is replaced by HY000.
pub fn err_packet(code: u16, sqlstate: &str, message: &str) -> Vec<u8> {
    let state = if sqlstate.len() == 5 && sqlstate.bytes().all(|c| c.is_ascii_alphanumeric()) {
        sqlstate
    } else {
        "HY000"
    };
    let mut b = Vec::with_capacity(9 + message.len());
    b.put_u8(0xFF);
    b.put_u16_le(code);
    b.put_u8(b'#');
    b.put_slice(state.as_bytes());
    b.put_slice(message.as_bytes());
    b
}

/// A decoded OK packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OkInfo {
    pub affected: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: Vec<u8>,
    /// (entry type, entry data) pairs when CLIENT_SESSION_TRACK and SESSION_STATE_CHANGED.
    pub session_state: Vec<(u8, Vec<u8>)>,
}

/// Parse an OK packet (PROTOCOL_41 layout) with header 0x00, or 0xFE (the CLIENT_DEPRECATE_EOF
/// end-of-rows form, payload shorter than 0xFFFFFF). An OK is at least 7 bytes, so a 5-byte EOF
/// is never mistaken for one. `capabilities` are the negotiated ones (for CLIENT_SESSION_TRACK).
pub fn parse_ok(payload: &[u8], capabilities: u32) -> Option<OkInfo> {
    let mut b = payload;
    match read_u8(&mut b)? {
        0x00 => {}
        0xFE if payload.len() < MAX_PAYLOAD => {}
        _ => return None,
    }
    let affected = read_lenenc_int(&mut b)?;
    let last_insert_id = read_lenenc_int(&mut b)?;
    let status = read_u16(&mut b)?;
    let warnings = read_u16(&mut b)?;
    let mut ok = OkInfo {
        affected,
        last_insert_id,
        status,
        warnings,
        ..OkInfo::default()
    };
    if capabilities & caps::CLIENT_SESSION_TRACK == 0 {
        ok.info = b.to_vec();
        return Some(ok);
    }
    if b.is_empty() {
        return Some(ok);
    }
    ok.info = read_lenenc_bytes(&mut b)?.to_vec();
    if status & SESSION_STATE_CHANGED != 0 && !b.is_empty() {
        let mut entries = read_lenenc_bytes(&mut b)?;
        while !entries.is_empty() {
            let kind = read_u8(&mut entries)?;
            let data = read_lenenc_bytes(&mut entries)?;
            ok.session_state.push((kind, data.to_vec()));
        }
    }
    Some(ok)
}

/// A decoded ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrInfo {
    pub code: u16,
    /// "HY000" when the packet carries no '#' marker (pre-4.1 / early handshake errors).
    pub sqlstate: String,
    pub message: String,
}

/// Parse an ERR packet (0xFF header).
pub fn parse_err(payload: &[u8]) -> Option<ErrInfo> {
    let mut b = payload;
    if read_u8(&mut b)? != 0xFF {
        return None;
    }
    let code = read_u16(&mut b)?;
    let mut sqlstate = "HY000".to_string();
    if b.first() == Some(&b'#') && b.len() >= 6 {
        let state = read_bytes(&mut b, 6)?;
        sqlstate = String::from_utf8_lossy(&state[1..]).into_owned();
    }
    Some(ErrInfo {
        code,
        sqlstate,
        message: String::from_utf8_lossy(b).into_owned(),
    })
}

/// Parse an EOF packet (0xFE, payload shorter than 9 bytes): `(warnings, status)`, zeros for the
/// bare 1-byte pre-4.1 form.
pub fn parse_eof(payload: &[u8]) -> Option<(u16, u16)> {
    if !is_eof(payload) {
        return None;
    }
    let mut b = &payload[1..];
    if b.is_empty() {
        return Some((0, 0));
    }
    let warnings = read_u16(&mut b)?;
    let status = read_u16(&mut b)?;
    Some((warnings, status))
}

/// 0xFE header and payload shorter than 9 bytes.
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&0xFE) && payload.len() < 9
}

pub fn is_err(payload: &[u8]) -> bool {
    payload.first() == Some(&0xFF)
}

/// 0x00 header and at least the 7 bytes of a minimal OK.
pub fn is_ok(payload: &[u8]) -> bool {
    payload.first() == Some(&0x00) && payload.len() >= 7
}

/// A MariaDB progress report (ERR header with code 0xFFFF), sent only to clients that asked for
/// MARIADB_CLIENT_PROGRESS; it is not the end of a response.
pub fn is_progress_report(payload: &[u8]) -> bool {
    payload.len() >= 3 && payload[..3] == [0xFF, 0xFF, 0xFF]
}

/// The GTID position an OK reports: MySQL's SESSION_TRACK_GTIDS entry (encoding byte 0 then a
/// length-encoded GTID set), or MariaDB's `last_gtid` system variable
/// (SESSION_TRACK_SYSTEM_VARIABLES entry: length-encoded name and value). The last one wins.
pub fn gtid_from_session_state(ok: &OkInfo) -> Option<String> {
    let mut found = None;
    for (kind, data) in &ok.session_state {
        match *kind {
            SESSION_TRACK_GTIDS => {
                let mut b: &[u8] = data;
                let gtids = match read_u8(&mut b) {
                    Some(0) => read_lenenc_bytes(&mut b).filter(|_| b.is_empty()),
                    _ => None,
                }
                .unwrap_or(data);
                found = Some(String::from_utf8_lossy(gtids).into_owned());
            }
            SESSION_TRACK_SYSTEM_VARIABLES => {
                let mut b: &[u8] = data;
                while let (Some(name), Some(value)) =
                    (read_lenenc_bytes(&mut b), read_lenenc_bytes(&mut b))
                {
                    if name.eq_ignore_ascii_case(b"last_gtid") && !value.is_empty() {
                        found = Some(String::from_utf8_lossy(value).into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
