//! MySQL packet framing (3-byte length + sequence id, 16 MiB continuation), length-encoded
//! integers/strings, and the capability and server-status flag constants.

use bytes::{BufMut, Bytes, BytesMut};

/// Largest payload of one physical frame; a frame this long means another frame follows.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// One logical packet (all of its physical frames).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of the last physical frame.
    pub seq: u8,
    /// The joined payload (zero-copy slice of `raw` for a single frame).
    pub payload: Bytes,
    /// Every physical frame exactly as received, headers included (for forwarding).
    pub raw: Bytes,
}

impl Packet {
    /// A packet the proxy writes itself (e.g. a rewritten command), starting at sequence id
    /// `first_seq`.
    pub fn new(first_seq: u8, payload: Bytes) -> Packet {
        let mut raw = BytesMut::with_capacity(payload.len() + 4);
        let next = encode_into(&mut raw, first_seq, &payload);
        Packet {
            seq: next.wrapping_sub(1),
            payload,
            raw: raw.freeze(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet of at least {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

fn frame_len(buf: &[u8], at: usize) -> Option<(usize, u8)> {
    let h = buf.get(at..at + 4)?;
    Some((
        usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16,
        h[3],
    ))
}

/// The one-frame packet at `at` in `buf`, when it is all buffered: where it ends and its payload,
/// read in place. `None` when it is not complete yet, or spans several frames, or is longer than
/// `max_logical`: [`split_packet`] takes those (and refuses the last).
pub fn whole_frame(buf: &[u8], at: usize, max_logical: usize) -> Option<(usize, &[u8])> {
    let (len, _) = frame_len(buf, at)?;
    if len >= MAX_PAYLOAD || len > max_logical {
        return None;
    }
    let end = at + 4 + len;
    Some((end, buf.get(at + 4..end)?))
}

/// Split one logical packet from the front of `buf`. `Ok(None)` until all of its frames are
/// buffered. The logical size is checked against `max_logical` as soon as each frame header is
/// visible, before anything is reserved or allocated.
pub fn split_packet(buf: &mut BytesMut, max_logical: usize) -> Result<Option<Packet>, PacketError> {
    let mut at = 0usize;
    let mut total = 0usize;
    let mut frames = 0usize;
    let seq = loop {
        let Some((len, seq)) = frame_len(buf, at) else {
            return Ok(None);
        };
        total = total.saturating_add(len);
        frames += 1;
        if total > max_logical {
            return Err(PacketError::TooLarge {
                len: total,
                max: max_logical,
            });
        }
        let end = at + 4 + len;
        if buf.len() < end {
            buf.reserve(end - buf.len());
            return Ok(None);
        }
        at = end;
        if len < MAX_PAYLOAD {
            break seq;
        }
    };
    let raw = buf.split_to(at).freeze();
    let payload = if frames == 1 {
        raw.slice(4..)
    } else {
        let mut joined = BytesMut::with_capacity(total);
        let mut pos = 0usize;
        while let Some((len, _)) = frame_len(&raw, pos) {
            joined.put_slice(&raw[pos + 4..pos + 4 + len]);
            pos += 4 + len;
        }
        joined.freeze()
    };
    Ok(Some(Packet { seq, payload, raw }))
}

/// Append `payload` as one logical packet starting at sequence id `seq` (split into
/// 0xFFFFFF-byte frames, with a trailing empty frame when the length is a non-zero multiple of
/// 0xFFFFFF; an empty payload is one empty frame). Returns the next sequence id.
pub fn encode_into(out: &mut BytesMut, seq: u8, payload: &[u8]) -> u8 {
    let mut seq = seq;
    let mut rest = payload;
    out.reserve(payload.len() + 4 * (payload.len() / MAX_PAYLOAD + 1));
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        out.put_slice(&(n as u32).to_le_bytes()[..3]);
        out.put_u8(seq);
        out.put_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PAYLOAD {
            return seq;
        }
    }
}

/// Read `n` bytes from the front of `b`.
pub fn read_bytes<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Some(head)
}

pub fn read_u8(b: &mut &[u8]) -> Option<u8> {
    let (&v, tail) = b.split_first()?;
    *b = tail;
    Some(v)
}

pub fn read_u16(b: &mut &[u8]) -> Option<u16> {
    read_bytes(b, 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

pub fn read_u32(b: &mut &[u8]) -> Option<u32> {
    read_bytes(b, 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Read a length-encoded integer. `None` (and `b` untouched) when truncated or when the first
/// byte is 0xFB (NULL) or 0xFF (not an integer).
pub fn read_lenenc_int(b: &mut &[u8]) -> Option<u64> {
    let first = *b.first()?;
    let width = match first {
        0..=0xFA => {
            *b = &b[1..];
            return Some(u64::from(first));
        }
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return None,
    };
    let digits = b.get(1..1 + width)?;
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(digits);
    *b = &b[1 + width..];
    Some(u64::from_le_bytes(le))
}

/// Read a length-encoded string. `None` (and `b` untouched) when the length is invalid or runs
/// past the end.
pub fn read_lenenc_bytes<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut probe = *b;
    let len = read_lenenc_int(&mut probe)?;
    if len > probe.len() as u64 {
        return None;
    }
    let s = read_bytes(&mut probe, len as usize)?;
    *b = probe;
    Some(s)
}

/// Read a NUL-terminated string (without the NUL), advancing past the NUL.
pub fn read_nul_str<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let pos = b.iter().position(|&c| c == 0)?;
    let s = &b[..pos];
    *b = &b[pos + 1..];
    Some(s)
}

/// Append a length-encoded integer.
pub fn put_lenenc_int<B: BufMut>(out: &mut B, v: u64) {
    match v {
        0..=0xFA => out.put_u8(v as u8),
        0xFB..=0xFFFF => {
            out.put_u8(0xFC);
            out.put_u16_le(v as u16);
        }
        0x1_0000..=0xFF_FFFF => {
            out.put_u8(0xFD);
            out.put_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.put_u8(0xFE);
            out.put_u64_le(v);
        }
    }
}

/// Append a length-encoded string.
pub fn put_lenenc_bytes<B: BufMut>(out: &mut B, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.put_slice(s);
}

/// Append a NUL-terminated string.
pub fn put_nul_str<B: BufMut>(out: &mut B, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

/// Client/server capability flags (the 32-bit field of the handshake).
pub mod caps {
    /// Also known as CLIENT_MYSQL: MariaDB servers clear it to announce extended capabilities.
    pub const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
    pub const CLIENT_MYSQL: u32 = CLIENT_LONG_PASSWORD;
    pub const CLIENT_FOUND_ROWS: u32 = 0x0000_0002;
    pub const CLIENT_LONG_FLAG: u32 = 0x0000_0004;
    pub const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
    pub const CLIENT_NO_SCHEMA: u32 = 0x0000_0010;
    pub const CLIENT_COMPRESS: u32 = 0x0000_0020;
    pub const CLIENT_ODBC: u32 = 0x0000_0040;
    pub const CLIENT_LOCAL_FILES: u32 = 0x0000_0080;
    pub const CLIENT_IGNORE_SPACE: u32 = 0x0000_0100;
    pub const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
    pub const CLIENT_INTERACTIVE: u32 = 0x0000_0400;
    pub const CLIENT_SSL: u32 = 0x0000_0800;
    pub const CLIENT_IGNORE_SIGPIPE: u32 = 0x0000_1000;
    pub const CLIENT_TRANSACTIONS: u32 = 0x0000_2000;
    pub const CLIENT_RESERVED: u32 = 0x0000_4000;
    pub const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
    pub const CLIENT_MULTI_STATEMENTS: u32 = 0x0001_0000;
    pub const CLIENT_MULTI_RESULTS: u32 = 0x0002_0000;
    pub const CLIENT_PS_MULTI_RESULTS: u32 = 0x0004_0000;
    pub const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;
    pub const CLIENT_CONNECT_ATTRS: u32 = 0x0010_0000;
    pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x0020_0000;
    pub const CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 0x0040_0000;
    pub const CLIENT_SESSION_TRACK: u32 = 0x0080_0000;
    pub const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
    /// Not supported by this codec's response tracker: never negotiate it.
    pub const CLIENT_OPTIONAL_RESULTSET_METADATA: u32 = 0x0200_0000;
    pub const CLIENT_ZSTD_COMPRESSION_ALGORITHM: u32 = 0x0400_0000;
    /// Changes COM_STMT_EXECUTE/COM_QUERY layouts: never negotiate it.
    pub const CLIENT_QUERY_ATTRIBUTES: u32 = 0x0800_0000;
    pub const CLIENT_PROGRESS_OBSOLETE: u32 = 0x2000_0000;
    pub const CLIENT_SSL_VERIFY_SERVER_CERT: u32 = 0x4000_0000;
    pub const CLIENT_REMEMBER_OPTIONS: u32 = 0x8000_0000;

    /// MariaDB extended capabilities (the 4 bytes in the handshake filler, not in the u32 above).
    pub const MARIADB_CLIENT_PROGRESS: u32 = 0x0000_0001;
    pub const MARIADB_CLIENT_COM_MULTI: u32 = 0x0000_0002;
    pub const MARIADB_CLIENT_STMT_BULK_OPERATIONS: u32 = 0x0000_0004;
    pub const MARIADB_CLIENT_EXTENDED_METADATA: u32 = 0x0000_0008;
    /// Not supported by this codec's response tracker: never negotiate it.
    pub const MARIADB_CLIENT_CACHE_METADATA: u32 = 0x0000_0010;
    pub const MARIADB_CLIENT_BULK_UNIT_RESULTS: u32 = 0x0000_0020;
}

/// Server status flags carried by OK and EOF packets.
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const NO_GOOD_INDEX_USED: u16 = 0x0010;
    pub const NO_INDEX_USED: u16 = 0x0020;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const LAST_ROW_SENT: u16 = 0x0080;
    pub const DB_DROPPED: u16 = 0x0100;
    pub const NO_BACKSLASH_ESCAPES: u16 = 0x0200;
    pub const METADATA_CHANGED: u16 = 0x0400;
    pub const QUERY_WAS_SLOW: u16 = 0x0800;
    pub const PS_OUT_PARAMS: u16 = 0x1000;
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
    /// MySQL 8.0 only.
    pub const ANSI_QUOTES: u16 = 0x8000;
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
