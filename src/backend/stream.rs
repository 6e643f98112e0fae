//! The stream to a server, plain TCP, TLS or a Unix-domain socket (an enum, so the relay's reads
//! and writes stay static calls): where it is opened, and the choice a cluster's `server_tls`
//! mode makes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::{ServerConfig, ServerTls, ServerTlsMode};
use crate::tls::TlsClient;

/// Where the data path opens a connection to a server.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    /// Host and port over TCP (a DNS name is resolved at connect time).
    Tcp(&'a str, u16),
    /// The server's Unix-domain socket (its `socket` setting). Never TLS, as libpq and the MySQL
    /// clients do on a local socket.
    Unix(&'a Arc<Path>),
}

/// Where an open server connection ends: what a cancel request must reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    Tcp(SocketAddr),
    Unix(Arc<Path>),
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Tcp(a) => a.fmt(f),
            ServerAddr::Unix(p) => p.display().fmt(f),
        }
    }
}

/// Open a connection to `endpoint` (TCP with `TCP_NODELAY`; plain, before any TLS), and say
/// where it ended.
pub async fn dial(endpoint: Endpoint<'_>) -> io::Result<(ServerStream, ServerAddr)> {
    match endpoint {
        Endpoint::Tcp(host, port) => {
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let addr = tcp.peer_addr()?;
            Ok((ServerStream::Plain(tcp), ServerAddr::Tcp(addr)))
        }
        Endpoint::Unix(path) => {
            let unix = UnixStream::connect(&**path).await?;
            Ok((ServerStream::Unix(unix), ServerAddr::Unix(path.clone())))
        }
    }
}

impl ServerConfig {
    /// Where the data path reaches this server: its `socket` when set, else its TCP address (the
    /// monitor and failover's sessions make the same choice through their drivers).
    pub fn endpoint(&self) -> Endpoint<'_> {
        match &self.socket {
            Some(path) => Endpoint::Unix(path),
            None => Endpoint::Tcp(&self.host, self.port),
        }
    }
}

/// A server connection, before or after a TLS upgrade.
pub type ServerStream = crate::maybe_tls::MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

impl ServerStream {
    /// Read whatever is available now into `buf` without waiting: `Ok(0)` = the server closed
    /// the connection, `WouldBlock` = nothing to read. TLS records that carry no data (session
    /// tickets, key updates) are consumed and reported as `WouldBlock`.
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            ServerStream::Plain(s) => s.try_read_buf(buf),
            ServerStream::Unix(s) => s.try_read_buf(buf),
            ServerStream::Tls(t) => {
                let mut chunk = [0u8; 4096];
                let mut rb = ReadBuf::new(&mut chunk);
                let mut cx = Context::from_waker(Waker::noop());
                match Pin::new(t.as_mut()).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        buf.extend_from_slice(rb.filled());
                        Ok(rb.filled().len())
                    }
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }
}

/// What a connection to a server does about TLS, from the cluster's `server_tls`.
#[derive(Debug, Clone, Copy)]
pub enum TlsPlan<'a> {
    /// Plain TCP; TLS is never asked for.
    Plain,
    /// Ask for TLS; `required` = refuse a server that does not offer it (else go on in plain).
    Tls {
        client: &'a TlsClient,
        required: bool,
    },
}

/// TLS settings for one server connection: the cluster's `server_tls` and the configured `host`
/// of the server (the name a verify-full certificate must carry).
#[derive(Debug, Clone, Copy)]
pub struct ServerTlsTarget<'a> {
    pub tls: &'a ServerTls,
    pub host: &'a str,
}

impl<'a> ServerTlsTarget<'a> {
    pub fn new(tls: &'a ServerTls, host: &'a str) -> Self {
        ServerTlsTarget { tls, host }
    }

    /// The plan for this connection; an error when the mode asks for TLS but no client config
    /// was built (a config that did not go through validation).
    pub fn plan(&self) -> io::Result<TlsPlan<'a>> {
        if self.tls.mode == ServerTlsMode::Disable {
            return Ok(TlsPlan::Plain);
        }
        match self.tls.connector() {
            Some(client) => Ok(TlsPlan::Tls {
                client,
                required: !self.tls.plain_allowed(),
            }),
            None => Err(io::Error::other(format!(
                "server_tls mode {} has no TLS client configuration",
                self.tls.mode.as_str()
            ))),
        }
    }

    /// The mode's name, for error messages.
    pub fn mode(&self) -> &'static str {
        self.tls.mode.as_str()
    }
}
