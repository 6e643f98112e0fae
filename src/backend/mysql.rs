//! One authenticated connection to a MySQL/MariaDB server: handshake, TLS upgrade (`CLIENT_SSL`,
//! as the cluster's `server_tls` mode says), auth (mysql_native_password, caching_sha2_password:
//! the cleartext password over TLS, else the RSA exchange), packet reads/writes, and commands
//! whose answers the proxy consumes itself (session replay, injected prepares).

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::{dial, Endpoint, ServerStream, ServerTlsTarget, TlsPlan};
use crate::wire::mysql::auth::{encrypt_password, native_scramble, sha2_scramble};
use crate::wire::mysql::command::{parse_prepare_ok, PrepareOk, COM_QUIT, COM_STMT_PREPARE};
use crate::wire::mysql::handshake::{parse_auth_switch, HandshakeResponse, HandshakeV10};
use crate::wire::mysql::packet::{caps, encode_into, split_packet, Packet};
use crate::wire::mysql::response::{Expect, ResponseTracker, Step};
use crate::wire::mysql::status::{parse_err, parse_ok, ErrInfo};

#[derive(Debug, thiserror::Error)]
pub enum MysqlBackendError {
    #[error("server i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("server closed the connection")]
    Closed,
    #[error("server refused: {} ({}) {}", .0.code, .0.sqlstate, .0.message)]
    Server(ErrInfo, Bytes),
    #[error("server protocol error: {0}")]
    Protocol(String),
    #[error("server authentication: {0}")]
    Auth(String),
    /// TLS towards the server failed or was refused (`server_tls`).
    #[error("server TLS: {0}")]
    Tls(String),
}

/// Capabilities the proxy may use towards servers (intersected with what client and server offer).
pub const PROXY_CAPS: u32 = caps::CLIENT_LONG_PASSWORD
    | caps::CLIENT_FOUND_ROWS
    | caps::CLIENT_LONG_FLAG
    | caps::CLIENT_CONNECT_WITH_DB
    | caps::CLIENT_LOCAL_FILES
    | caps::CLIENT_IGNORE_SPACE
    | caps::CLIENT_PROTOCOL_41
    | caps::CLIENT_INTERACTIVE
    | caps::CLIENT_TRANSACTIONS
    | caps::CLIENT_SECURE_CONNECTION
    | caps::CLIENT_MULTI_STATEMENTS
    | caps::CLIENT_MULTI_RESULTS
    | caps::CLIENT_PS_MULTI_RESULTS
    | caps::CLIENT_PLUGIN_AUTH
    | caps::CLIENT_CONNECT_ATTRS
    | caps::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::CLIENT_SESSION_TRACK
    | caps::CLIENT_DEPRECATE_EOF;

/// What to log in with.
#[derive(Debug, Clone, Copy)]
pub struct MysqlLogin<'a> {
    pub user: &'a str,
    pub password: Option<&'a str>,
    pub database: Option<&'a str>,
    pub charset: u8,
    /// Capabilities the client negotiated with the proxy; the server connection uses the same
    /// response-shaping flags so answers can be forwarded byte for byte.
    pub capabilities: u32,
}

#[derive(Debug)]
pub struct MysqlConn {
    stream: ServerStream,
    rbuf: BytesMut,
    max_packet: usize,
    pub connection_id: u32,
    /// Negotiated capabilities of this connection.
    pub capabilities: u32,
    pub server_version: String,
}

/// A command answer the proxy consumed itself.
#[derive(Debug)]
pub enum Consumed {
    Ok { status: Option<u16> },
    Err(ErrInfo),
}

impl MysqlConn {
    /// Connect to `endpoint`, upgrade to TLS as `tls` says (never over a Unix-domain socket), and
    /// log in, all under `deadline`.
    pub async fn connect(
        endpoint: Endpoint<'_>,
        tls: ServerTlsTarget<'_>,
        login: MysqlLogin<'_>,
        max_packet: usize,
        deadline: Duration,
    ) -> Result<Self, MysqlBackendError> {
        tokio::time::timeout(
            deadline,
            Self::connect_inner(endpoint, tls, login, max_packet),
        )
        .await
        .map_err(|_| MysqlBackendError::Timeout(deadline))?
    }

    async fn connect_inner(
        endpoint: Endpoint<'_>,
        tls: ServerTlsTarget<'_>,
        login: MysqlLogin<'_>,
        max_packet: usize,
    ) -> Result<Self, MysqlBackendError> {
        let (mut stream, _) = dial(endpoint).await?;
        let plan = if stream.is_unix() {
            TlsPlan::Plain
        } else {
            tls.plan()?
        };
        let mut rbuf = BytesMut::with_capacity(16 * 1024);
        let p = loop {
            if let Some(p) = split_packet(&mut rbuf, max_packet)
                .map_err(|e| MysqlBackendError::Protocol(e.to_string()))?
            {
                break p;
            }
            if stream.read_buf(&mut rbuf).await? == 0 {
                return Err(MysqlBackendError::Closed);
            }
        };
        if parse_err(&p.payload).is_some() {
            return Err(server_err(&p));
        }
        let hs = HandshakeV10::parse(&p.payload)
            .map_err(|e| MysqlBackendError::Protocol(format!("bad server handshake: {e}")))?;
        let mut negotiated = login.capabilities & hs.capabilities & PROXY_CAPS
            | caps::CLIENT_PROTOCOL_41
            | caps::CLIENT_SECURE_CONNECTION
            | caps::CLIENT_PLUGIN_AUTH;
        if login.database.is_some_and(|d| !d.is_empty()) {
            negotiated |= caps::CLIENT_CONNECT_WITH_DB;
        } else {
            negotiated &= !caps::CLIENT_CONNECT_WITH_DB;
        }
        let mut seq = p.seq.wrapping_add(1);
        let stream = match (plan, stream) {
            (TlsPlan::Plain, stream) => stream,
            (TlsPlan::Tls { required, .. }, stream) if hs.capabilities & caps::CLIENT_SSL == 0 => {
                if required {
                    return Err(MysqlBackendError::Tls(format!(
                        "the server does not offer TLS (server_tls mode {})",
                        tls.mode()
                    )));
                }
                stream
            }
            (TlsPlan::Tls { client, .. }, ServerStream::Plain(mut tcp)) => {
                if !rbuf.is_empty() {
                    return Err(MysqlBackendError::Protocol(
                        "server sent data before the TLS handshake".into(),
                    ));
                }
                negotiated |= caps::CLIENT_SSL;
                let mut out = BytesMut::with_capacity(36);
                seq = encode_into(&mut out, seq, &ssl_request(negotiated, login.charset));
                tcp.write_all(&out).await?;
                let t = client.connect(tls.host, tcp).await.map_err(|e| {
                    MysqlBackendError::Tls(format!("handshake with {} failed: {e}", tls.host))
                })?;
                ServerStream::Tls(Box::new(t))
            }
            // Only a fresh TCP connection is ever asked for TLS.
            (TlsPlan::Tls { .. }, stream) => stream,
        };
        let mut conn = MysqlConn {
            stream,
            rbuf,
            max_packet,
            connection_id: hs.connection_id,
            capabilities: negotiated,
            server_version: hs.server_version.clone(),
        };
        let password = login.password.unwrap_or("").as_bytes();
        let plugin = hs.auth_plugin.clone();
        let auth_response = scramble_for(&plugin, password, &hs.scramble);
        let resp = HandshakeResponse {
            capabilities: negotiated,
            max_packet: 0x4000_0000,
            charset: login.charset,
            username: login.user.to_string(),
            auth_response,
            database: login.database.filter(|d| !d.is_empty()).map(str::to_string),
            auth_plugin: Some(plugin.clone()),
            attributes: vec![("program_name".into(), "switchyard".into())],
        };
        conn.write_packet(seq, &resp.encode()).await?;
        let mut scramble = hs.scramble.to_vec();
        let mut plugin = plugin;
        loop {
            let p = conn.read_packet().await?;
            let seq = p.seq.wrapping_add(1);
            match p.payload.first() {
                Some(0x00) => return Ok(conn),
                Some(0xFF) => return Err(server_err(&p)),
                Some(0xFE) => {
                    let (name, data) = parse_auth_switch(&p.payload)
                        .ok_or_else(|| MysqlBackendError::Protocol("bad auth switch".into()))?;
                    plugin = name;
                    scramble = data.strip_suffix(&[0]).unwrap_or(&data).to_vec();
                    let r = scramble_for(&plugin, password, &scramble);
                    conn.write_packet(seq, &r).await?;
                }
                Some(0x01) => {
                    // caching_sha2_password: 0x03 fast auth ok, 0x04 full auth needed.
                    match p.payload.get(1) {
                        Some(0x03) => {}
                        Some(0x04) if conn.stream.is_tls() || conn.stream.is_unix() => {
                            // Full authentication over TLS or a local socket: the password in
                            // clear text, as MySQL's own clients send it there.
                            let mut clear = password.to_vec();
                            clear.push(0);
                            conn.write_packet(seq, &clear).await?;
                        }
                        Some(0x04) => {
                            // Plain TCP: ask for the RSA key and send the password encrypted.
                            conn.write_packet(seq, &[0x02]).await?;
                            let key = conn.read_packet().await?;
                            let pem = key.payload.get(1..).unwrap_or(&[]);
                            let pem = std::str::from_utf8(pem).map_err(|_| {
                                MysqlBackendError::Auth("bad RSA key from server".into())
                            })?;
                            let enc =
                                encrypt_password(password, &scramble, pem).ok_or_else(|| {
                                    MysqlBackendError::Auth("RSA encryption failed".into())
                                })?;
                            conn.write_packet(key.seq.wrapping_add(1), &enc).await?;
                        }
                        _ => {
                            return Err(MysqlBackendError::Auth(format!(
                                "unexpected auth data for plugin {plugin}"
                            )))
                        }
                    }
                }
                _ => {
                    return Err(MysqlBackendError::Protocol(
                        "unexpected packet during login".into(),
                    ))
                }
            }
        }
    }

    pub async fn read_packet(&mut self) -> Result<Packet, MysqlBackendError> {
        loop {
            if let Some(p) = self.buffered_packet()? {
                return Ok(p);
            }
            self.fill().await?;
        }
    }

    /// The bytes read and not yet consumed, and the largest packet allowed (for reading
    /// one-frame packets in place, see [`whole_frame`](crate::wire::mysql::packet::whole_frame)).
    pub fn buffered(&self) -> (&[u8], usize) {
        (&self.rbuf, self.max_packet)
    }

    /// Drop the first `n` buffered bytes (packets read in place and dealt with).
    pub fn consume(&mut self, n: usize) {
        self.rbuf.advance(n);
    }

    pub fn buffered_packet(&mut self) -> Result<Option<Packet>, MysqlBackendError> {
        split_packet(&mut self.rbuf, self.max_packet)
            .map_err(|e| MysqlBackendError::Protocol(e.to_string()))
    }

    /// Wait for more bytes; cancel-safe.
    pub async fn fill(&mut self) -> Result<(), MysqlBackendError> {
        if self.stream.read_buf(&mut self.rbuf).await? == 0 {
            return Err(MysqlBackendError::Closed);
        }
        Ok(())
    }

    /// Non-blocking check of an idle connection (a MySQL server sends nothing unasked except an
    /// error before it closes the connection).
    pub fn idle_ok(&mut self) -> Result<(), MysqlBackendError> {
        loop {
            self.rbuf.reserve(1024);
            match self.stream.try_read_buf(&mut self.rbuf) {
                Ok(0) => return Err(MysqlBackendError::Closed),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        if self.rbuf.is_empty() {
            Ok(())
        } else {
            Err(MysqlBackendError::Protocol(
                "server sent data while idle".into(),
            ))
        }
    }

    /// Write one logical packet; returns the next sequence id.
    pub async fn write_packet(&mut self, seq: u8, payload: &[u8]) -> Result<u8, MysqlBackendError> {
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        let next = encode_into(&mut out, seq, payload);
        self.write_raw(&out).await?;
        Ok(next)
    }

    /// Write bytes as they are and flush them (a TLS stream may hold them until flushed).
    pub async fn write_raw(&mut self, raw: &[u8]) -> Result<(), MysqlBackendError> {
        self.stream.write_all(raw).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Is the connection encrypted?
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Run a command and consume its whole answer (used for session replay).
    pub async fn run_consumed(
        &mut self,
        payload: &[u8],
        expect: Expect,
    ) -> Result<Consumed, MysqlBackendError> {
        self.write_packet(0, payload).await?;
        let mut tracker = ResponseTracker::new(expect, self.capabilities);
        let mut err = None;
        loop {
            let p = self.read_packet().await?;
            if let Some(e) = parse_err(&p.payload) {
                err.get_or_insert(e);
            }
            match tracker.feed(&p.payload) {
                Step::More => {}
                Step::LocalInfile => {
                    // Never expected for replayed statements: refuse the file.
                    self.write_packet(p.seq.wrapping_add(1), &[]).await?;
                }
                Step::Done { status } => {
                    if tracker.is_malformed() {
                        return Err(MysqlBackendError::Protocol("malformed answer".into()));
                    }
                    return Ok(match err {
                        Some(e) => Consumed::Err(e),
                        None => Consumed::Ok { status },
                    });
                }
            }
        }
    }

    /// Prepare `sql` on this server, consuming the answer; returns the server's statement data.
    pub async fn prepare(
        &mut self,
        sql: &[u8],
    ) -> Result<Result<PrepareOk, ErrInfo>, MysqlBackendError> {
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(COM_STMT_PREPARE);
        payload.extend_from_slice(sql);
        self.write_packet(0, &payload).await?;
        let mut tracker = ResponseTracker::new(Expect::Prepare, self.capabilities);
        let mut first: Option<Result<PrepareOk, ErrInfo>> = None;
        loop {
            let p = self.read_packet().await?;
            if first.is_none() {
                first = Some(match parse_err(&p.payload) {
                    Some(e) => Err(e),
                    None => match parse_prepare_ok(&p.payload) {
                        Some(ok) => Ok(ok),
                        None => {
                            return Err(MysqlBackendError::Protocol("bad prepare answer".into()))
                        }
                    },
                });
            }
            if let Step::Done { .. } = tracker.feed(&p.payload) {
                return first
                    .ok_or_else(|| MysqlBackendError::Protocol("empty prepare answer".into()));
            }
        }
    }

    /// Run one text query on an idle connection and return the first column of the first row
    /// (`None` for NULL or no row), consuming the whole answer under `deadline`.
    pub async fn query_value(
        &mut self,
        sql: &str,
        deadline: Duration,
    ) -> Result<Option<String>, MysqlBackendError> {
        tokio::time::timeout(deadline, async {
            let mut payload = Vec::with_capacity(sql.len() + 1);
            payload.push(crate::wire::mysql::command::COM_QUERY);
            payload.extend_from_slice(sql.as_bytes());
            self.write_packet(0, &payload).await?;
            let deprecate_eof = self.capabilities & caps::CLIENT_DEPRECATE_EOF != 0;
            let mut tracker = ResponseTracker::new(Expect::ResultSet, self.capabilities);
            let mut index = 0usize;
            let mut columns = 0usize;
            let mut value = None;
            let mut failure = None;
            loop {
                let p = self.read_packet().await?;
                if let Some(e) = parse_err(&p.payload) {
                    failure.get_or_insert(e);
                }
                if index == 0 {
                    let mut b: &[u8] = &p.payload;
                    columns =
                        crate::wire::mysql::packet::read_lenenc_int(&mut b).unwrap_or(0) as usize;
                }
                let first_row = if deprecate_eof {
                    columns + 1
                } else {
                    columns + 2
                };
                if columns > 0 && index == first_row && p.payload.first() != Some(&0xFE) {
                    let mut b: &[u8] = &p.payload;
                    if b.first() != Some(&0xFB) {
                        value = crate::wire::mysql::packet::read_lenenc_bytes(&mut b)
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                    }
                }
                index += 1;
                match tracker.feed(&p.payload) {
                    Step::Done { .. } => break,
                    Step::LocalInfile => {
                        self.write_packet(p.seq.wrapping_add(1), &[]).await?;
                    }
                    Step::More => {}
                }
            }
            match failure {
                Some(e) => Err(MysqlBackendError::Server(e, Bytes::new())),
                None => Ok(value),
            }
        })
        .await
        .map_err(|_| MysqlBackendError::Timeout(deadline))?
    }

    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            self.write_packet(0, &[COM_QUIT]).await?;
            self.stream.shutdown().await?;
            Ok::<_, MysqlBackendError>(())
        })
        .await;
    }
}

/// The SSL request packet payload: capabilities (with `CLIENT_SSL`), max packet, charset and 23
/// reserved bytes; the handshake response follows inside TLS.
fn ssl_request(capabilities: u32, charset: u8) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&capabilities.to_le_bytes());
    b[4..8].copy_from_slice(&0x4000_0000u32.to_le_bytes());
    b[8] = charset;
    b
}

fn server_err(p: &Packet) -> MysqlBackendError {
    match parse_err(&p.payload) {
        Some(e) => MysqlBackendError::Server(e, p.payload.clone()),
        None => MysqlBackendError::Protocol("malformed error packet".into()),
    }
}

fn scramble_for(plugin: &str, password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    match plugin {
        "caching_sha2_password" => sha2_scramble(password, scramble).to_vec(),
        _ => native_scramble(password, scramble).to_vec(),
    }
}

/// Status flags of an OK/EOF answer, if `payload` is one.
pub fn ok_status(payload: &[u8], capabilities: u32) -> Option<u16> {
    parse_ok(payload, capabilities).map(|o| o.status)
}
