//! The MySQL client socket (plain or TLS: packet reads, sequence ids, buffered writes, the TLS
//! upgrade) and the typed client error that becomes an ERR packet in exactly one place.

use std::borrow::Cow;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::listener::Peer;
use crate::metrics::ErrorKind;
use crate::tls::{ClientStream, TlsServer};
use crate::wire::mysql::packet::{encode_into, split_packet, Packet};
use crate::wire::mysql::status::err_packet;

/// A client-facing failure: MySQL error code, SQLSTATE and message; how it is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyError {
    pub code: u16,
    /// The SQLSTATE: ours, or a server's as it gave it.
    pub state: Cow<'static, str>,
    pub message: String,
    pub kind: ErrorKind,
    /// Close the connection after sending.
    pub fatal: bool,
    /// The client is gone; nothing can be sent.
    pub gone: bool,
}

impl MyError {
    pub fn new(
        code: u16,
        state: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
        kind: ErrorKind,
    ) -> Self {
        MyError {
            code,
            state: state.into(),
            message: message.into(),
            kind,
            fatal: false,
            gone: false,
        }
    }
    pub fn fatal(mut self) -> Self {
        self.fatal = true;
        self
    }
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(1047, "08S01", message, ErrorKind::ClientProtocol).fatal()
    }
    pub fn gone() -> Self {
        MyError {
            gone: true,
            ..Self::new(
                2013,
                "HY000",
                "client closed the connection",
                ErrorKind::ClientProtocol,
            )
        }
    }
    pub fn access_denied(user: &str, host: &str) -> Self {
        Self::new(
            1045,
            "28000",
            format!("Access denied for user '{user}'@'{host}' (using password: YES)"),
            ErrorKind::AuthFailed,
        )
        .fatal()
    }
    /// The ERR packet payload.
    pub fn payload(&self) -> Vec<u8> {
        err_packet(self.code, &self.state, &self.message)
    }
}

#[derive(Debug)]
pub struct MyClient {
    /// `None` only after a failed TLS upgrade (the connection is then gone).
    stream: Option<ClientStream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_packet: usize,
    /// Sequence id of the next packet the proxy sends.
    pub seq: u8,
    pub peer_ip: String,
}

impl MyClient {
    pub fn new(stream: ClientStream, peer: Peer, max_packet: usize) -> Self {
        MyClient {
            stream: Some(stream),
            rbuf: BytesMut::with_capacity(1024),
            wbuf: BytesMut::with_capacity(1024),
            max_packet,
            seq: 0,
            peer_ip: peer.host(),
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

    /// TLS or the Unix-domain socket: where MySQL lets a password travel in cleartext.
    pub fn is_secure(&self) -> bool {
        self.is_tls() || self.is_local()
    }

    /// Upgrade to TLS after the client's SSL request packet; sequence ids continue. A MySQL
    /// client does not wait for an answer to the SSL request, so bytes already read behind it
    /// are the start of its TLS handshake and go to the handshake (never to the packet reader:
    /// plaintext smuggled there only makes the handshake fail).
    pub async fn start_tls(&mut self, tls: &TlsServer) -> Result<(), MyError> {
        self.flush().await?;
        let Some(ClientStream::Plain(tcp)) = self.stream.take() else {
            return Err(MyError::protocol("TLS is already on"));
        };
        let early = self.rbuf.split();
        match tls.accept_after(tcp, &early).await {
            Ok(s) => {
                self.stream = Some(s);
                Ok(())
            }
            Err(e) => {
                tracing::info!(peer = %self.peer_ip, error = %e, "client TLS handshake failed");
                Err(MyError::gone())
            }
        }
    }

    pub async fn read_packet(&mut self) -> Result<Packet, MyError> {
        loop {
            match split_packet(&mut self.rbuf, self.max_packet) {
                Ok(Some(p)) => {
                    self.seq = p.seq.wrapping_add(1);
                    return Ok(p);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(MyError::new(
                        1153,
                        "08S01",
                        format!("Got a packet bigger than 'max_allowed_packet' bytes ({e})"),
                        ErrorKind::ClientProtocol,
                    )
                    .fatal())
                }
            }
            // Between commands the buffer is empty: a small read will do, and an idle client
            // keeps 1 KiB instead of a whole read chunk. A packet under way reads in chunks.
            let chunk = if self.rbuf.is_empty() {
                1024
            } else {
                crate::frontend::READ_CHUNK
            };
            if self.rbuf.capacity() - self.rbuf.len() < chunk / 4 {
                self.rbuf.reserve(chunk);
            }
            let stream = self.stream.as_mut().ok_or_else(MyError::gone)?;
            match stream.read_buf(&mut self.rbuf).await {
                Ok(0) | Err(_) => return Err(MyError::gone()),
                Ok(_) => {}
            }
        }
    }

    /// Queue a packet the proxy builds, with the next sequence id.
    pub fn queue(&mut self, payload: &[u8]) {
        self.seq = encode_into(&mut self.wbuf, self.seq, payload);
    }

    /// Queue a packet received from a server, unchanged.
    pub fn queue_raw(&mut self, raw: &[u8]) {
        self.wbuf.extend_from_slice(raw);
    }

    pub fn queued(&self) -> usize {
        self.wbuf.len()
    }

    pub async fn flush(&mut self) -> Result<(), MyError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let stream = self.stream.as_mut().ok_or_else(MyError::gone)?;
        let r = match stream.write_all(&self.wbuf).await {
            Ok(()) => stream.flush().await,
            Err(e) => Err(e),
        };
        self.wbuf.clear();
        r.map_err(|_| MyError::gone())
    }
}
