//! Startup-phase packets: StartupMessage 3.0, SSLRequest, GSSENCRequest and CancelRequest.

use super::frame::{read_cstr, read_i32};

pub const PROTOCOL_3_0: i32 = 196_608;
pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;
pub const CANCEL_REQUEST: i32 = 80_877_102;

/// A decoded startup-phase packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Startup(StartupParams),
    SslRequest,
    GssEncRequest,
    Cancel { pid: i32, secret: i32 },
}

/// Parameters of a StartupMessage, in the client's order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartupParams {
    pub params: Vec<(String, String)>,
}

impl StartupParams {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn user(&self) -> Option<&str> {
        self.get("user")
    }
    /// The database, defaulting to the user name as PostgreSQL does.
    pub fn database(&self) -> Option<&str> {
        self.get("database").or_else(|| self.user())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    UnsupportedProtocol { major: i32, minor: i32 },
    #[error("invalid startup packet layout")]
    Malformed,
    #[error("startup parameters are not valid UTF-8")]
    NotUtf8,
}

/// Decode the body of a startup-phase packet (after its length word).
pub fn parse_startup(body: &[u8]) -> Result<StartupPacket, StartupError> {
    let mut b = body;
    let code = read_i32(&mut b).ok_or(StartupError::Malformed)?;
    match code {
        SSL_REQUEST if b.is_empty() => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST if b.is_empty() => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => {
            let pid = read_i32(&mut b).ok_or(StartupError::Malformed)?;
            let secret = read_i32(&mut b).ok_or(StartupError::Malformed)?;
            if !b.is_empty() {
                return Err(StartupError::Malformed);
            }
            Ok(StartupPacket::Cancel { pid, secret })
        }
        PROTOCOL_3_0 => {
            let mut params = Vec::new();
            loop {
                let key = read_cstr(&mut b).ok_or(StartupError::Malformed)?;
                if key.is_empty() {
                    break;
                }
                let val = read_cstr(&mut b).ok_or(StartupError::Malformed)?;
                let key = std::str::from_utf8(key).map_err(|_| StartupError::NotUtf8)?;
                let val = std::str::from_utf8(val).map_err(|_| StartupError::NotUtf8)?;
                params.push((key.to_string(), val.to_string()));
            }
            if !b.is_empty() {
                return Err(StartupError::Malformed);
            }
            Ok(StartupPacket::Startup(StartupParams { params }))
        }
        other => Err(StartupError::UnsupportedProtocol {
            major: other >> 16,
            minor: other & 0xffff,
        }),
    }
}

/// Encode a StartupMessage 3.0 with the given parameters (whole packet with length).
pub fn encode_startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Encode a CancelRequest packet.
pub fn encode_cancel(pid: i32, secret: i32) -> Vec<u8> {
    let mut out = 16i32.to_be_bytes().to_vec();
    out.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(&secret.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip() {
        let pkt = encode_startup(&[("user", "app"), ("database", "db"), ("TimeZone", "UTC")]);
        let got = parse_startup(&pkt[4..]).unwrap();
        let StartupPacket::Startup(p) = got else {
            panic!("not startup")
        };
        assert_eq!(p.user(), Some("app"));
        assert_eq!(p.database(), Some("db"));
        assert_eq!(p.get("TimeZone"), Some("UTC"));
    }

    #[test]
    fn database_defaults_to_user() {
        let pkt = encode_startup(&[("user", "app")]);
        let StartupPacket::Startup(p) = parse_startup(&pkt[4..]).unwrap() else {
            panic!()
        };
        assert_eq!(p.database(), Some("app"));
    }

    #[test]
    fn special_requests() {
        assert_eq!(
            parse_startup(&SSL_REQUEST.to_be_bytes()),
            Ok(StartupPacket::SslRequest)
        );
        assert_eq!(
            parse_startup(&GSSENC_REQUEST.to_be_bytes()),
            Ok(StartupPacket::GssEncRequest)
        );
        let c = encode_cancel(7, 9);
        assert_eq!(
            parse_startup(&c[4..]),
            Ok(StartupPacket::Cancel { pid: 7, secret: 9 })
        );
    }

    #[test]
    fn malformed_packets() {
        assert_eq!(parse_startup(&[0, 3]), Err(StartupError::Malformed));
        let mut v = PROTOCOL_3_0.to_be_bytes().to_vec();
        v.extend_from_slice(b"user\0app");
        assert_eq!(parse_startup(&v), Err(StartupError::Malformed));
        assert!(matches!(
            parse_startup(&0x0002_0000i32.to_be_bytes()),
            Err(StartupError::UnsupportedProtocol { major: 2, .. })
        ));
        let mut v = PROTOCOL_3_0.to_be_bytes().to_vec();
        v.extend_from_slice(b"user\0\xff\xfe\0\0");
        assert_eq!(parse_startup(&v), Err(StartupError::NotUtf8));
    }
}
