//! A cluster's client listeners, TCP and Unix-domain socket: binding (a stale socket file is
//! replaced, a live one refused), accepting into one stream type, and removing the socket file.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener, UnixStream};

use crate::tls::ClientStream;

/// Who is on the other end of a client connection.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A process on this host, through the Unix-domain socket.
    Local,
}

impl Peer {
    /// The host part, as MySQL names it in `'user'@'host'` (`localhost` for the socket).
    pub fn host(&self) -> String {
        match self {
            Peer::Tcp(a) => a.ip().to_string(),
            Peer::Local => "localhost".to_owned(),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => a.fmt(f),
            Peer::Local => f.write_str("unix socket"),
        }
    }
}

/// One listening socket of a cluster.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

impl Listener {
    pub async fn tcp(addr: SocketAddr) -> io::Result<Listener> {
        Ok(Listener::Tcp(TcpListener::bind(addr).await?))
    }

    /// Listen on the socket file `path`, open to every local user (mode 0777, as PostgreSQL's
    /// and PgBouncer's sockets are by default: the directory's permissions restrict access, and
    /// clients still log in). A file left behind by a process that is gone is replaced; a socket
    /// someone still accepts on, or a file that is not a socket, is an error.
    pub async fn unix(path: &Path) -> io::Result<Listener> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the path exists and is not a socket",
                ));
            }
            if UnixStream::connect(path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process is listening on this socket",
                ));
            }
            tracing::info!(path = %path.display(), "replacing a stale socket file");
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
        let meta = std::fs::symlink_metadata(path)?;
        let file = SocketFile {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
        };
        Ok(Listener::Unix(listener, file))
    }

    /// Accept one client (TCP connections get `TCP_NODELAY`: the relay writes whole answers).
    pub async fn accept(&self) -> io::Result<(ClientStream, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (stream, addr) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok((ClientStream::Plain(stream), Peer::Tcp(addr)))
            }
            Listener::Unix(l, _) => {
                let (stream, _) = l.accept().await?;
                Ok((ClientStream::Unix(stream), Peer::Local))
            }
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => a.fmt(f),
                Err(_) => f.write_str("tcp"),
            },
            Listener::Unix(_, file) => file.path.display().fmt(f),
        }
    }
}

/// The socket file a Unix listener created; removed when the listener closes, unless another
/// process has replaced it meanwhile (then it is theirs).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode of the file bound.
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.id)
            .unwrap_or(false);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_files_are_replaced_live_sockets_and_other_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s.PGSQL.6432");
        // A socket whose listener is gone (a crashed proxy) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let first = Listener::unix(&path).await.unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o777
        );
        // A second proxy on the same path is refused while the first accepts.
        let e = Listener::unix(&path).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // Closing removes the file.
        drop(first);
        assert!(!path.exists());
        // A regular file is never deleted.
        std::fs::write(&path, b"data").unwrap();
        let e = Listener::unix(&path).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[tokio::test]
    async fn a_replaced_file_is_left_to_its_new_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my.sock");
        let l = Listener::unix(&path).await.unwrap();
        std::fs::remove_file(&path).unwrap();
        let _other = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(l);
        assert!(path.exists());
    }

    #[tokio::test]
    async fn accepts_local_clients() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = Listener::unix(&path).await.unwrap();
        let _c = UnixStream::connect(&path).await.unwrap();
        let (stream, peer) = l.accept().await.unwrap();
        assert!(stream.is_unix());
        assert_eq!(peer.host(), "localhost");
        assert_eq!(peer.to_string(), "unix socket");
    }
}
