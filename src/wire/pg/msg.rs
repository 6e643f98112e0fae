//! Typed views over PostgreSQL message bodies, and builders for the messages the proxy creates.

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{read_cstr, read_i32};

fn build(tag: u8, body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_u8(tag);
    b.put_i32(0);
    body(&mut b);
    let len = (b.len() - 1) as i32;
    b[1..5].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

fn put_cstr(b: &mut BytesMut, s: &[u8]) {
    b.put_slice(s);
    b.put_u8(0);
}

/// Severity of an ErrorResponse the proxy sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

/// NoticeResponse (severity NOTICE, SQLSTATE 00000) carrying `message`.
pub fn notice_response(message: &str) -> Bytes {
    build(b'N', |b| {
        b.put_u8(b'S');
        put_cstr(b, b"NOTICE");
        b.put_u8(b'V');
        put_cstr(b, b"NOTICE");
        b.put_u8(b'C');
        put_cstr(b, b"00000");
        b.put_u8(b'M');
        put_cstr(b, message.as_bytes());
        b.put_u8(0);
    })
}

/// ErrorResponse with severity, SQLSTATE and message.
pub fn error_response(sev: Severity, code: &str, message: &str) -> Bytes {
    let s: &[u8] = match sev {
        Severity::Error => b"ERROR",
        Severity::Fatal => b"FATAL",
    };
    build(b'E', |b| {
        b.put_u8(b'S');
        put_cstr(b, s);
        b.put_u8(b'V');
        put_cstr(b, s);
        b.put_u8(b'C');
        put_cstr(b, code.as_bytes());
        b.put_u8(b'M');
        put_cstr(b, message.as_bytes());
        b.put_u8(0);
    })
}

pub fn auth_ok() -> Bytes {
    build(b'R', |b| b.put_i32(0))
}

pub fn auth_md5(salt: [u8; 4]) -> Bytes {
    build(b'R', |b| {
        b.put_i32(5);
        b.put_slice(&salt);
    })
}

pub fn auth_sasl(mechanisms: &[&str]) -> Bytes {
    build(b'R', |b| {
        b.put_i32(10);
        for m in mechanisms {
            put_cstr(b, m.as_bytes());
        }
        b.put_u8(0);
    })
}

pub fn auth_sasl_continue(data: &[u8]) -> Bytes {
    build(b'R', |b| {
        b.put_i32(11);
        b.put_slice(data);
    })
}

pub fn auth_sasl_final(data: &[u8]) -> Bytes {
    build(b'R', |b| {
        b.put_i32(12);
        b.put_slice(data);
    })
}

pub fn parameter_status(key: &str, value: &str) -> Bytes {
    build(b'S', |b| {
        put_cstr(b, key.as_bytes());
        put_cstr(b, value.as_bytes());
    })
}

pub fn backend_key_data(pid: i32, secret: i32) -> Bytes {
    build(b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    })
}

pub fn ready_for_query(status: u8) -> Bytes {
    build(b'Z', |b| b.put_u8(status))
}

pub fn command_complete(tag: &str) -> Bytes {
    build(b'C', |b| put_cstr(b, tag.as_bytes()))
}

/// Frontend: simple Query.
pub fn query(sql: &str) -> Bytes {
    build(b'Q', |b| put_cstr(b, sql.as_bytes()))
}

/// Frontend: PasswordMessage / SASLResponse (raw payload).
pub fn password(data: &[u8]) -> Bytes {
    build(b'p', |b| b.put_slice(data))
}

/// Frontend: SASLInitialResponse.
pub fn sasl_initial(mechanism: &str, data: &[u8]) -> Bytes {
    build(b'p', |b| {
        put_cstr(b, mechanism.as_bytes());
        b.put_i32(data.len() as i32);
        b.put_slice(data);
    })
}

/// Frontend: Parse with no parameter types given (used only for tests and fixtures).
pub fn parse(name: &str, sql: &str) -> Bytes {
    build(b'P', |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, sql.as_bytes());
        b.put_i16(0);
    })
}

/// Frontend: Close of a prepared statement (`S`) or portal (`P`).
pub fn close(kind: u8, name: &str) -> Bytes {
    build(b'C', |b| {
        b.put_u8(kind);
        put_cstr(b, name.as_bytes());
    })
}

pub fn sync() -> Bytes {
    build(b'S', |_| {})
}

pub fn terminate() -> Bytes {
    build(b'X', |_| {})
}

/// Text of a simple Query body.
pub fn query_text(body: &[u8]) -> Option<&[u8]> {
    let mut b = body;
    read_cstr(&mut b)
}

/// (statement name, query text) of a Parse body.
pub fn parse_view(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut b = body;
    let name = read_cstr(&mut b)?;
    let sql = read_cstr(&mut b)?;
    Some((name, sql))
}

/// (portal, statement) of a Bind body.
pub fn bind_view(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut b = body;
    let portal = read_cstr(&mut b)?;
    let stmt = read_cstr(&mut b)?;
    Some((portal, stmt))
}

/// (kind `S`/`P`, name) of a Describe or Close body.
pub fn target_view(body: &[u8]) -> Option<(u8, &[u8])> {
    let (&kind, mut rest) = body.split_first()?;
    let name = read_cstr(&mut rest)?;
    Some((kind, name))
}

/// Fields of an ErrorResponse / NoticeResponse body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

pub fn error_fields(body: &[u8]) -> ErrorFields {
    let mut f = ErrorFields::default();
    let mut b = body;
    while let Some((&t, rest)) = b.split_first() {
        if t == 0 {
            break;
        }
        b = rest;
        let Some(v) = read_cstr(&mut b) else { break };
        let v = String::from_utf8_lossy(v).into_owned();
        match t {
            b'V' => f.severity = v,
            b'S' if f.severity.is_empty() => f.severity = v,
            b'C' => f.code = v,
            b'M' => f.message = v,
            _ => {}
        }
    }
    f
}

/// Authentication request code and payload of an `R` body.
pub fn auth_view(body: &[u8]) -> Option<(i32, &[u8])> {
    let mut b = body;
    let code = read_i32(&mut b)?;
    Some((code, b))
}

/// (pid, secret) of BackendKeyData.
pub fn key_data_view(body: &[u8]) -> Option<(i32, i32)> {
    let mut b = body;
    Some((read_i32(&mut b)?, read_i32(&mut b)?))
}

/// The sending server process's pid of a NotificationResponse (`A`).
pub fn notification_pid(body: &[u8]) -> Option<i32> {
    let mut b = body;
    read_i32(&mut b)
}

/// A NotificationResponse frame (`raw`: tag, length, body) with its pid replaced; `None` when
/// `raw` is too short to be one.
pub fn with_notification_pid(raw: &[u8], pid: i32) -> Option<Bytes> {
    if raw.len() < 9 || raw[0] != b'A' {
        return None;
    }
    let mut out = BytesMut::from(raw);
    out[5..9].copy_from_slice(&pid.to_be_bytes());
    Some(out.freeze())
}

/// (name, value) of ParameterStatus.
pub fn parameter_status_view(body: &[u8]) -> Option<(String, String)> {
    let mut b = body;
    let k = read_cstr(&mut b)?;
    let v = read_cstr(&mut b)?;
    Some((
        String::from_utf8_lossy(k).into_owned(),
        String::from_utf8_lossy(v).into_owned(),
    ))
}

/// (mechanism, data) of a SASLInitialResponse.
pub fn sasl_initial_view(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut b = body;
    let mech = read_cstr(&mut b)?;
    let len = read_i32(&mut b)?;
    if len < 0 {
        return Some((mech, &[]));
    }
    let len = len as usize;
    if b.len() != len {
        return None;
    }
    Some((mech, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pg::frame::split_frame;

    fn body_of(raw: Bytes) -> (u8, Vec<u8>) {
        let mut buf = BytesMut::from(&raw[..]);
        let f = split_frame(&mut buf, 1 << 20).unwrap().unwrap();
        (f.tag, f.body().to_vec())
    }

    #[test]
    fn error_response_round_trip() {
        let (tag, body) = body_of(error_response(Severity::Fatal, "28P01", "bad password"));
        assert_eq!(tag, b'E');
        let f = error_fields(&body);
        assert_eq!(f.severity, "FATAL");
        assert_eq!(f.code, "28P01");
        assert_eq!(f.message, "bad password");
    }

    #[test]
    fn views() {
        let (_, body) = body_of(parse("s1", "SELECT 1"));
        assert_eq!(parse_view(&body), Some((&b"s1"[..], &b"SELECT 1"[..])));
        let (_, body) = body_of(close(b'S', "s1"));
        assert_eq!(target_view(&body), Some((b'S', &b"s1"[..])));
        let (_, body) = body_of(query("SELECT 2"));
        assert_eq!(query_text(&body), Some(&b"SELECT 2"[..]));
        let (_, body) = body_of(backend_key_data(5, 6));
        assert_eq!(key_data_view(&body), Some((5, 6)));
        let (_, body) = body_of(parameter_status("TimeZone", "UTC"));
        assert_eq!(
            parameter_status_view(&body),
            Some(("TimeZone".into(), "UTC".into()))
        );
        let (_, body) = body_of(sasl_initial("SCRAM-SHA-256", b"n,,n=,r=abc"));
        assert_eq!(
            sasl_initial_view(&body),
            Some((&b"SCRAM-SHA-256"[..], &b"n,,n=,r=abc"[..]))
        );
        let (_, body) = body_of(auth_md5([1, 2, 3, 4]));
        assert_eq!(auth_view(&body), Some((5, &[1u8, 2, 3, 4][..])));
        let note = build(b'A', |b| {
            b.put_i32(77);
            b.put_slice(b"chan\0payload\0");
        });
        assert_eq!(notification_pid(&note[5..]), Some(77));
        let moved = with_notification_pid(&note, -5).unwrap();
        assert_eq!(notification_pid(&moved[5..]), Some(-5));
        assert_eq!(moved[9..], note[9..]);
        assert_eq!(with_notification_pid(b"A\0\0", 1), None);
        assert_eq!(bind_view(b"\0"), None);
        assert_eq!(bind_view(b"p\0s\0rest"), Some((&b"p"[..], &b"s"[..])));
    }

    #[test]
    fn malformed_views_are_none() {
        assert_eq!(parse_view(b"abc"), None);
        assert_eq!(target_view(b""), None);
        assert_eq!(sasl_initial_view(b"SCRAM\0\0\0\0\x09abc"), None);
        assert_eq!(key_data_view(b"\0\0"), None);
    }
}
