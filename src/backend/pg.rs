//! One authenticated connection to a PostgreSQL server: TLS negotiation (`SSLRequest`, as the
//! cluster's `server_tls` mode says), startup, auth (SCRAM, md5, cleartext, trust), framed
//! reads/writes, and cancel requests.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::stream::{dial, Endpoint, ServerAddr, ServerStream, ServerTlsTarget, TlsPlan};
use crate::config::ServerConfig;
use crate::wire::pg::frame::{split_frame, Frame, FrameError};
use crate::wire::pg::msg::{self, ErrorFields};
use crate::wire::pg::startup::{encode_startup, SSL_REQUEST};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("server i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("server closed the connection")]
    Closed,
    #[error("server refused: {} {}", .0.code, .0.message)]
    Server(ErrorFields, Bytes),
    #[error("server protocol error: {0}")]
    Protocol(String),
    #[error("server authentication: {0}")]
    Auth(String),
    /// TLS towards the server failed or was refused (`server_tls`).
    #[error("server TLS: {0}")]
    Tls(String),
    /// Transaction pooling: no pooled connection became free in time.
    #[error("{0}")]
    PoolExhausted(String),
}

impl From<FrameError> for BackendError {
    fn from(e: FrameError) -> Self {
        BackendError::Protocol(e.to_string())
    }
}

/// An authenticated server connection, ready for queries (it sent ReadyForQuery).
#[derive(Debug)]
pub struct BackendConn {
    stream: ServerStream,
    rbuf: BytesMut,
    max_message: usize,
    /// Where the connection ends (a cancel request goes there).
    pub addr: ServerAddr,
    /// BackendKeyData (pid, secret) for cancellation.
    pub key: Option<(i32, i32)>,
    /// ParameterStatus values reported at startup.
    pub params: Vec<(String, String)>,
}

/// What to log in as.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub user: &'a str,
    pub password: Option<&'a str>,
    /// Startup parameters other than `user` (database, application_name, options...).
    pub params: &'a [(String, String)],
}

impl BackendConn {
    /// Connect to `endpoint`, negotiate TLS as `tls` says (never over a Unix-domain socket), and
    /// log in, all under `deadline`.
    pub async fn connect(
        endpoint: Endpoint<'_>,
        tls: ServerTlsTarget<'_>,
        login: Login<'_>,
        max_message: usize,
        deadline: Duration,
    ) -> Result<Self, BackendError> {
        tokio::time::timeout(
            deadline,
            Self::connect_inner(endpoint, tls, login, max_message),
        )
        .await
        .map_err(|_| BackendError::Timeout(deadline))?
    }

    async fn connect_inner(
        endpoint: Endpoint<'_>,
        tls: ServerTlsTarget<'_>,
        login: Login<'_>,
        max_message: usize,
    ) -> Result<Self, BackendError> {
        let (stream, addr) = match dial(endpoint).await? {
            (ServerStream::Plain(tcp), addr) => (start_tls(tcp, tls).await?, addr),
            plain => plain,
        };
        let mut conn = BackendConn {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            max_message,
            addr,
            key: None,
            params: Vec::new(),
        };
        let mut startup: Vec<(&str, &str)> = vec![("user", login.user)];
        for (k, v) in login.params {
            if k != "user" {
                startup.push((k, v));
            }
        }
        conn.write_all(&encode_startup(&startup)).await?;
        conn.authenticate(login).await?;
        loop {
            let f = conn.read_frame().await?;
            match f.tag {
                b'S' => {
                    if let Some(kv) = msg::parameter_status_view(f.body()) {
                        conn.params.push(kv);
                    }
                }
                b'K' => conn.key = msg::key_data_view(f.body()),
                b'Z' => return Ok(conn),
                b'E' => return Err(BackendError::Server(msg::error_fields(f.body()), f.raw)),
                b'N' => {}
                t => {
                    return Err(BackendError::Protocol(format!(
                        "unexpected message {:?} during startup",
                        t as char
                    )))
                }
            }
        }
    }

    async fn authenticate(&mut self, login: Login<'_>) -> Result<(), BackendError> {
        let mut scram: Option<ScramSha256> = None;
        loop {
            let f = self.read_frame().await?;
            if f.tag == b'E' {
                return Err(BackendError::Server(msg::error_fields(f.body()), f.raw));
            }
            if f.tag != b'R' {
                return Err(BackendError::Protocol(format!(
                    "expected authentication request, got {:?}",
                    f.tag as char
                )));
            }
            let (code, data) = msg::auth_view(f.body())
                .ok_or_else(|| BackendError::Protocol("short authentication request".into()))?;
            let need_pw = || {
                login.password.ok_or_else(|| {
                    BackendError::Auth("server asks for a password; none configured".into())
                })
            };
            match code {
                0 => return Ok(()),
                3 => {
                    let mut p = need_pw()?.as_bytes().to_vec();
                    p.push(0);
                    self.write_all(&msg::password(&p)).await?;
                }
                5 => {
                    let salt: [u8; 4] = data
                        .get(..4)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| BackendError::Protocol("short md5 salt".into()))?;
                    let h = postgres_protocol::authentication::md5_hash(
                        login.user.as_bytes(),
                        need_pw()?.as_bytes(),
                        salt,
                    );
                    let mut p = h.into_bytes();
                    p.push(0);
                    self.write_all(&msg::password(&p)).await?;
                }
                10 => {
                    let offers_scram = data
                        .split(|&b| b == 0)
                        .any(|m| m == SCRAM_SHA_256.as_bytes());
                    if !offers_scram {
                        return Err(BackendError::Auth("no supported SASL mechanism".into()));
                    }
                    let s = ScramSha256::new(need_pw()?.as_bytes(), ChannelBinding::unsupported());
                    self.write_all(&msg::sasl_initial(SCRAM_SHA_256, s.message()))
                        .await?;
                    scram = Some(s);
                }
                11 => {
                    let s = scram.as_mut().ok_or_else(|| {
                        BackendError::Protocol("SASL continue without start".into())
                    })?;
                    s.update(data)
                        .map_err(|e| BackendError::Auth(format!("SCRAM: {e}")))?;
                    self.write_all(&msg::password(s.message())).await?;
                }
                12 => {
                    let mut s = scram
                        .take()
                        .ok_or_else(|| BackendError::Protocol("SASL final without start".into()))?;
                    s.finish(data)
                        .map_err(|e| BackendError::Auth(format!("SCRAM server proof: {e}")))?;
                }
                other => {
                    return Err(BackendError::Auth(format!(
                        "unsupported authentication method {other}"
                    )))
                }
            }
        }
    }

    /// Read one complete frame (waits as long as needed; callers put a deadline around it).
    pub async fn read_frame(&mut self) -> Result<Frame, BackendError> {
        loop {
            if let Some(f) = split_frame(&mut self.rbuf, self.max_message)? {
                return Ok(f);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(BackendError::Closed);
            }
        }
    }

    /// A frame already buffered, without waiting.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, BackendError> {
        Ok(split_frame(&mut self.rbuf, self.max_message)?)
    }

    /// The complete frames at the head of the read buffer whose tag is in `tags` (up to the
    /// first other, incomplete or oversized one): handed to `sink` as one slice and consumed.
    /// Returns their length (0: none; the next frame goes through [`Self::buffered_frame`]).
    pub fn forward_run(&mut self, tags: &[u8], sink: impl FnOnce(&[u8])) -> usize {
        let mut end = 0;
        while let Some(head) = self.rbuf.get(end..end + 5) {
            let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
            let total = usize::try_from(len).unwrap_or(0) + 1;
            if !tags.contains(&head[0])
                || total < 5
                || total > self.max_message
                || self.rbuf.len() - end < total
            {
                break;
            }
            end += total;
        }
        if end > 0 {
            sink(&self.rbuf[..end]);
            self.rbuf.advance(end);
        }
        end
    }

    /// Wait until more bytes arrive into the read buffer. Cancel-safe.
    pub async fn fill(&mut self) -> Result<(), BackendError> {
        if self.stream.read_buf(&mut self.rbuf).await? == 0 {
            return Err(BackendError::Closed);
        }
        Ok(())
    }

    /// Non-blocking check of an idle connection: pulls whatever the server sent meanwhile.
    /// Returns Err if the server closed the connection.
    pub fn poll_idle(&mut self) -> Result<(), BackendError> {
        loop {
            self.rbuf.reserve(4096);
            match self.stream.try_read_buf(&mut self.rbuf) {
                Ok(0) => return Err(BackendError::Closed),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Run one simple query on an idle connection and return the first column of the first row
    /// (`None` for NULL or no row). Everything the server says is consumed, under `deadline`.
    pub async fn query_value(
        &mut self,
        sql: &str,
        deadline: Duration,
    ) -> Result<Option<String>, BackendError> {
        tokio::time::timeout(deadline, async {
            self.write_all(&msg::query(sql)).await?;
            let mut value = None;
            let mut failure = None;
            let mut first_row = true;
            loop {
                let f = self.read_frame().await?;
                match f.tag {
                    b'D' if first_row => {
                        first_row = false;
                        value = data_row_first(f.body());
                    }
                    b'E' => {
                        failure = Some(BackendError::Server(
                            msg::error_fields(f.body()),
                            f.raw.clone(),
                        ))
                    }
                    b'Z' => break,
                    _ => {}
                }
            }
            match failure {
                Some(e) => Err(e),
                None => Ok(value),
            }
        })
        .await
        .map_err(|_| BackendError::Timeout(deadline))?
    }

    /// Write `data` and flush it (a TLS stream may hold written bytes until flushed).
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), BackendError> {
        self.stream.write_all(data).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Is the connection encrypted?
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Polite close: Terminate (and a TLS close_notify), then drop.
    pub async fn terminate(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            self.write_all(&msg::terminate()).await?;
            self.stream.shutdown().await?;
            Ok::<_, BackendError>(())
        })
        .await;
    }
}

/// The `SSLRequest` packet (length 8, code 80877103).
fn ssl_request() -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&8i32.to_be_bytes());
    b[4..].copy_from_slice(&SSL_REQUEST.to_be_bytes());
    b
}

/// Negotiate TLS on a fresh connection as `target`'s mode says: `SSLRequest`, then the handshake
/// on `S`; on `N` go on in plain TCP only when the mode allows it (`prefer`).
async fn start_tls(
    mut tcp: TcpStream,
    target: ServerTlsTarget<'_>,
) -> Result<ServerStream, BackendError> {
    let (client, required) = match target.plan()? {
        TlsPlan::Plain => return Ok(ServerStream::Plain(tcp)),
        TlsPlan::Tls { client, required } => (client, required),
    };
    tcp.write_all(&ssl_request()).await?;
    // Exactly one byte: anything the server sent after it must come inside TLS.
    let mut answer = [0u8; 1];
    if tcp.read(&mut answer).await? == 0 {
        return Err(BackendError::Closed);
    }
    match answer[0] {
        b'S' => {}
        b'N' if !required => return Ok(ServerStream::Plain(tcp)),
        b'N' => {
            return Err(BackendError::Tls(format!(
                "the server does not accept TLS connections (server_tls mode {})",
                target.mode()
            )))
        }
        b'E' => {
            return Err(BackendError::Tls(
                "the server answered the TLS request with an error".into(),
            ))
        }
        other => {
            return Err(BackendError::Protocol(format!(
                "unexpected answer {other:#04x} to SSLRequest"
            )))
        }
    }
    let tls = client
        .connect(target.host, tcp)
        .await
        .map_err(|e| BackendError::Tls(format!("handshake with {} failed: {e}", target.host)))?;
    Ok(ServerStream::Tls(Box::new(tls)))
}

/// First column of a DataRow body as text (`None` for NULL or a malformed row).
fn data_row_first(body: &[u8]) -> Option<String> {
    let mut b = body;
    let n = crate::wire::pg::frame::read_i16(&mut b)?;
    if n < 1 {
        return None;
    }
    let len = crate::wire::pg::frame::read_i32(&mut b)?;
    if len < 0 {
        return None;
    }
    let v = b.get(..len as usize)?;
    Some(String::from_utf8_lossy(v).into_owned())
}

/// Send a CancelRequest for (pid, secret) to the server at `addr`: over its Unix-domain socket, or
/// over TCP with TLS when the cluster's `server_tls` mode asks for it. `servers` (the cluster's)
/// give the configured host name of the server at a TCP `addr`, which a verify-full certificate
/// must carry. Failures are logged.
pub async fn send_cancel(
    addr: &ServerAddr,
    pid: i32,
    secret: i32,
    tls: &crate::config::ServerTls,
    servers: &[ServerConfig],
    deadline: Duration,
) {
    let fut = async {
        let mut s = match addr {
            ServerAddr::Unix(path) => {
                ServerStream::Unix(tokio::net::UnixStream::connect(&**path).await?)
            }
            ServerAddr::Tcp(addr) => {
                let host = if tls.mode == crate::config::ServerTlsMode::Disable {
                    String::new()
                } else {
                    cancel_host(*addr, servers).await
                };
                let tcp = TcpStream::connect(addr).await?;
                start_tls(tcp, ServerTlsTarget::new(tls, &host)).await?
            }
        };
        let encrypted = s.is_tls();
        s.write_all(&crate::wire::pg::startup::encode_cancel(pid, secret))
            .await?;
        s.flush().await?;
        let mut b = [0u8; 1];
        // The server closes the connection after processing the request.
        let _ = s.read(&mut b).await;
        Ok::<_, BackendError>(encrypted)
    };
    match tokio::time::timeout(deadline, fut).await {
        Ok(Ok(tls)) => tracing::debug!(%addr, tls, "cancel request sent"),
        Ok(Err(e)) => tracing::warn!(%addr, error = %e, "cancel request failed"),
        Err(_) => tracing::warn!(%addr, "cancel request timed out"),
    }
}

/// The configured host of the server listening at `addr`: a server whose host is that IP
/// address, else one whose DNS name resolves to it; else the IP address itself.
async fn cancel_host(addr: std::net::SocketAddr, servers: &[ServerConfig]) -> String {
    let candidates = servers.iter().filter(|s| s.port == addr.port());
    for s in candidates.clone() {
        let host = s.host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<std::net::IpAddr>().ok() == Some(addr.ip()) {
            return s.host.clone();
        }
    }
    for s in candidates {
        if s.host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        if let Ok(mut found) = tokio::net::lookup_host((s.host.as_str(), s.port)).await {
            if found.any(|a| a == addr) {
                return s.host.clone();
            }
        }
    }
    addr.ip().to_string()
}
