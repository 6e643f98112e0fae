//! Entry point of one PostgreSQL client connection: its socket buffers, its typed errors (mapped to
//! ErrorResponse here and nowhere else), login, cancel requests, and handing over to the relay.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cancel::{self, CancelSlot, IDLE_GRACE, MAX_SENDS, MAX_WAIT, RESEND_EVERY};
use super::login::{login, Login};
use super::relay::Relay;
use crate::backend::pg::send_cancel;
use crate::frontend::cluster::ClusterCtx;
use crate::frontend::READ_CHUNK;
use crate::listener::Peer;
use crate::metrics::ErrorKind;
use crate::tls::{ClientStream, TlsServer};
use crate::wire::pg::frame::{split_frame, split_startup, Frame};
use crate::wire::pg::msg::{self, Severity};

/// A client-facing failure: what the client is told (SQLSTATE + message), and how we count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: &'static str,
    pub message: String,
    pub kind: ErrorKind,
    /// FATAL: the connection is closed after the message.
    pub fatal: bool,
    /// The client is gone: nothing can be sent.
    pub gone: bool,
}

impl ClientError {
    pub fn fatal(code: &'static str, message: impl Into<String>, kind: ErrorKind) -> Self {
        ClientError {
            code,
            message: message.into(),
            kind,
            fatal: true,
            gone: false,
        }
    }
    pub fn error(code: &'static str, message: impl Into<String>, kind: ErrorKind) -> Self {
        ClientError {
            fatal: false,
            ..Self::fatal(code, message, kind)
        }
    }
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::fatal("08P01", message, ErrorKind::ClientProtocol)
    }
    pub fn gone() -> Self {
        ClientError {
            gone: true,
            ..Self::fatal(
                "08006",
                "client closed the connection",
                ErrorKind::ClientProtocol,
            )
        }
    }
    /// The session ends on an error the client has already been sent (a server's FATAL,
    /// forwarded as it was): nothing more to say.
    pub fn already_told(message: impl Into<String>) -> Self {
        ClientError {
            gone: true,
            ..Self::fatal("08006", message, ErrorKind::BackendLost)
        }
    }
    /// The one place an error becomes protocol bytes.
    pub fn to_message(&self) -> Bytes {
        let sev = if self.fatal {
            Severity::Fatal
        } else {
            Severity::Error
        };
        msg::error_response(sev, self.code, &self.message)
    }
}

/// First byte of a TLS record carrying a handshake message (a ClientHello opens with it).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The client socket (plain or TLS) with its read buffer and a write buffer flushed in batches.
#[derive(Debug)]
pub struct ClientConn {
    /// `None` only after a failed TLS upgrade (the connection is then gone).
    stream: Option<ClientStream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_message: usize,
}

impl ClientConn {
    pub fn new(stream: ClientStream, max_message: usize) -> Self {
        ClientConn {
            stream: Some(stream),
            // Small to start: thousands of idle clients should cost little; the buffers grow
            // with the traffic (reads reserve READ_CHUNK at a time).
            rbuf: BytesMut::with_capacity(1024),
            wbuf: BytesMut::with_capacity(1024),
            max_message,
        }
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(ClientStream::is_tls)
    }

    /// Whether the client came through the Unix-domain socket.
    pub fn is_local(&self) -> bool {
        self.stream.as_ref().is_some_and(ClientStream::is_unix)
    }

    /// The ALPN protocol agreed by the TLS handshake, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.stream.as_ref().and_then(ClientStream::alpn)
    }

    /// Whether the client's first byte (not consumed) opens a TLS handshake (PostgreSQL 17
    /// direct TLS). Only meaningful before anything was read.
    pub async fn starts_with_tls_hello(&mut self) -> Result<bool, ClientError> {
        if !self.rbuf.is_empty() {
            return Ok(self.rbuf[0] == TLS_HANDSHAKE_RECORD);
        }
        let Some(ClientStream::Plain(tcp)) = &self.stream else {
            return Ok(false);
        };
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(1) => Ok(first[0] == TLS_HANDSHAKE_RECORD),
            _ => Err(ClientError::gone()),
        }
    }

    /// Upgrade the plain connection to TLS (server side of the handshake). Refuses bytes the
    /// client sent ahead of the handshake (they were not protected by it).
    pub async fn start_tls(&mut self, tls: &TlsServer) -> Result<(), ClientError> {
        if !self.rbuf.is_empty() {
            return Err(ClientError::protocol(
                "received unencrypted data after SSL request",
            ));
        }
        self.flush().await?;
        let Some(ClientStream::Plain(tcp)) = self.stream.take() else {
            return Err(ClientError::protocol("TLS is already on"));
        };
        match tls.accept(tcp).await {
            Ok(s) => {
                self.stream = Some(s);
                Ok(())
            }
            Err(e) => {
                tracing::info!(error = %e, "client TLS handshake failed");
                Err(ClientError::gone())
            }
        }
    }

    /// Read more bytes; cancel-safe.
    pub async fn fill(&mut self) -> Result<(), ClientError> {
        let rbuf = &mut self.rbuf;
        // An idle session (empty buffer) keeps 1 KiB; reads grow by READ_CHUNK only mid-message.
        let chunk = if rbuf.is_empty() { 1024 } else { READ_CHUNK };
        if rbuf.capacity() - rbuf.len() < chunk / 4 {
            rbuf.reserve(chunk);
        }
        let stream = self.stream.as_mut().ok_or_else(ClientError::gone)?;
        match stream.read_buf(rbuf).await {
            Ok(0) | Err(_) => Err(ClientError::gone()),
            Ok(_) => Ok(()),
        }
    }

    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        split_frame(&mut self.rbuf, self.max_message)
            .map_err(|e| ClientError::protocol(e.to_string()))
    }

    pub fn has_buffered_bytes(&self) -> bool {
        !self.rbuf.is_empty()
    }

    pub async fn read_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            if let Some(f) = self.buffered_frame()? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    pub async fn read_startup(&mut self, max: usize) -> Result<Bytes, ClientError> {
        loop {
            match split_startup(&mut self.rbuf, max) {
                Ok(Some(b)) => return Ok(b),
                Ok(None) => self.fill().await?,
                Err(e) => {
                    return Err(ClientError::protocol(format!(
                        "invalid startup packet: {e}"
                    )))
                }
            }
        }
    }

    pub fn queue(&mut self, data: &[u8]) {
        self.wbuf.extend_from_slice(data);
    }

    pub fn queued(&self) -> usize {
        self.wbuf.len()
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let stream = self.stream.as_mut().ok_or_else(ClientError::gone)?;
        let r = match stream.write_all(&self.wbuf).await {
            Ok(()) => stream.flush().await,
            Err(e) => Err(e),
        };
        self.wbuf.clear();
        r.map_err(|_| ClientError::gone())
    }

    pub async fn write_now(&mut self, data: &[u8]) -> Result<(), ClientError> {
        self.queue(data);
        self.flush().await
    }
}

/// Serve one accepted client connection to its end. Never panics on client or server input.
pub async fn serve_client(ctx: Arc<ClusterCtx>, stream: ClientStream, peer: Peer) {
    let local = stream.is_unix();
    let mut client = ClientConn::new(stream, ctx.limits().max_message_size);
    let cfg = ctx.config();
    let login_result = tokio::time::timeout(
        ctx.limits().client_login_timeout,
        login(
            &mut client,
            &ctx.name,
            &ctx.users(),
            cfg.tls.for_client(local),
        ),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ClientError::fatal(
            "08006",
            "login timed out",
            ErrorKind::Timeout,
        ))
    });
    let outcome = match login_result {
        Ok(Login::Cancel { pid, secret }) => {
            if let Some(slot) = ctx.cancels.lookup(pid, secret) {
                forward_cancel(&ctx, &slot, &peer).await;
            }
            return;
        }
        Ok(Login::Session { user, params })
            if user.config.console
                && params.get("database") == Some(super::console::CONSOLE_DATABASE) =>
        {
            super::console::run(&ctx, &mut client, &user.config.name).await
        }
        Ok(Login::Session { user, params }) => {
            drop(cfg); // a reload may replace it while the session runs
            let mut relay = Relay::new(ctx.clone(), client, user, params);
            let r = relay.start_and_run().await;
            client = relay.into_client();
            r
        }
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        report(&ctx, &peer, &mut client, e).await;
    }
}

async fn report(ctx: &ClusterCtx, peer: &Peer, client: &mut ClientConn, e: ClientError) {
    if e.gone {
        tracing::debug!(%peer, "session ended: {}", e.message);
        // What was queued before (a server's FATAL, forwarded), if the client is still there.
        let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
        return;
    }
    ctx.metrics.error(&ctx.name, e.kind);
    tracing::info!(%peer, code = e.code, kind = e.kind.as_str(), "closing client: {}", e.message);
    client.queue(&e.to_message());
    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
}

/// Forward a client's cancel to the backend running its unanswered request. A request not yet on
/// a server (being routed, waiting for a pool slot or a login) gets it once it is; PostgreSQL
/// ignores a cancel that arrives before the backend starts executing, so it is sent again every
/// [`RESEND_EVERY`] while the same request is unanswered, at most [`MAX_SENDS`] times. The client's
/// cancel connection closes after the first send (as PostgreSQL's does once it signalled); the
/// re-sends go on in a task of their own. A client with nothing unanswered gets nothing cancelled,
/// as with PostgreSQL; its session task may not have read a request sent just before the cancel
/// yet, so a request that starts within [`IDLE_GRACE`] (while this client still waits for its
/// cancel connection to close) counts as sent before it.
async fn forward_cancel(ctx: &Arc<ClusterCtx>, slot: &CancelSlot, peer: &Peer) {
    let grace_end = tokio::time::Instant::now() + IDLE_GRACE;
    let request = loop {
        if let Some(r) = slot.lock().busy_request() {
            break r;
        }
        if tokio::time::Instant::now() >= grace_end {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    tracing::debug!(%peer, "forwarding cancel request");
    let give_up = tokio::time::Instant::now() + MAX_WAIT;
    if !send_while_busy(ctx, slot, request, 1, give_up).await {
        return;
    }
    let (ctx, slot) = (ctx.clone(), slot.clone());
    tokio::spawn(async move {
        tokio::time::sleep(RESEND_EVERY).await;
        send_while_busy(&ctx, &slot, request, MAX_SENDS - 1, give_up).await;
    });
}

/// Send up to `max` cancels for `request`, [`RESEND_EVERY`] apart, while it is unanswered and
/// before `give_up`; false when the request ended (or time ran out) first.
async fn send_while_busy(
    ctx: &ClusterCtx,
    slot: &CancelSlot,
    request: u64,
    max: u32,
    give_up: tokio::time::Instant,
) -> bool {
    let mut sends = 0;
    while tokio::time::Instant::now() < give_up {
        let Some(key) = cancel::target(slot, request) else {
            return false;
        };
        if let Some(k) = key {
            let cfg = ctx.config();
            let (tls, servers) = (&cfg.server_tls, &cfg.servers);
            let deadline = ctx.limits().connect_timeout;
            send_cancel(&k.addr, k.pid, k.secret, tls, servers, deadline).await;
            sends += 1;
            if sends >= max {
                return true;
            }
        }
        tokio::time::sleep(RESEND_EVERY).await;
    }
    false
}
