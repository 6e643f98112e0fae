//! MySQL client login: HandshakeV10 with a fresh scramble (offering CLIENT_SSL when TLS is on), the
//! TLS upgrade after an SSL request, HandshakeResponse41, auth switch, and verification with
//! mysql_native_password or caching_sha2_password (fast path; full authentication with the
//! cleartext password over TLS, or through the RSA public-key exchange over plain TCP).

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::OnceCell;

use super::conn::{MyClient, MyError};
use crate::backend::mysql::PROXY_CAPS;
use crate::config::{ClientSecret, MysqlAuth, TlsConfig};
use crate::frontend::users::{UserAuth, UserDirectory};
use crate::metrics::ErrorKind;
use crate::wire::mysql::auth::{
    native_verify, sha2_verify, RsaKeys, SHA2_FAST_AUTH_SUCCESS, SHA2_PERFORM_FULL_AUTH,
    SHA2_REQUEST_PUBLIC_KEY,
};
use crate::wire::mysql::handshake::{
    auth_more_data, auth_switch_request, is_ssl_request, HandshakeResponse, HandshakeV10,
};
use crate::wire::mysql::packet::{caps, status};

pub const NATIVE: &str = "mysql_native_password";
pub const SHA2: &str = "caching_sha2_password";
/// Version string announced to clients before any server connection of the cluster has logged
/// in (MariaDB's form, with the `5.5.5-` prefix MariaDB itself sends so that clients reading
/// the leading digits take it for a pre-5.7 MySQL, and MariaDB-aware drivers strip it).
pub const SERVER_VERSION: &str = "5.5.5-10.11.99-MariaDB-switchyard";
/// Appended to the servers' version string: clients see the server's version (what drivers and
/// ORMs branch on) and that a proxy answers.
const VERSION_SUFFIX: &str = "-switchyard";

/// MySQL state shared by the sessions of one cluster.
#[derive(Debug, Default)]
pub struct MysqlShared {
    /// RSA key pair for caching_sha2_password full authentication, generated on first use.
    keys: OnceCell<Option<Arc<RsaKeys>>>,
    /// Users that completed a full caching_sha2 authentication (later logins take the fast path).
    sha2_cache: Mutex<HashSet<String>>,
    /// The last connection id handed out (over all the cluster's listeners).
    connection_ids: std::sync::atomic::AtomicU32,
    /// The version the cluster's servers announce, as the last server login saw it.
    version: Mutex<Option<Arc<str>>>,
}

impl MysqlShared {
    /// A connection id for the handshake: one sequence per cluster, from a random start.
    pub fn next_connection_id(&self) -> u32 {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self.connection_ids.compare_exchange(
            0,
            rand::random::<u32>() & 0xffff,
            Relaxed,
            Relaxed,
        );
        self.connection_ids.fetch_add(1, Relaxed).wrapping_add(1)
    }

    /// A server connection logged in: its greeting's version is what clients are told from now on.
    pub fn note_server_version(&self, version: &str) {
        let mut have = self.version.lock();
        if have.as_deref() != Some(version) {
            *have = Some(Arc::from(version));
        }
    }

    /// The version string for a client's greeting: the servers' own (as their greeting had it,
    /// e.g. `5.5.5-10.11.6-MariaDB-0+deb12u1`) with `-switchyard` appended, or
    /// [`SERVER_VERSION`] before any server connection has logged in.
    pub fn greeting_version(&self) -> String {
        match self.version.lock().as_deref() {
            Some(v) if v.ends_with(VERSION_SUFFIX) => v.to_owned(),
            Some(v) => format!("{v}{VERSION_SUFFIX}"),
            None => SERVER_VERSION.to_owned(),
        }
    }

    pub async fn keys(&self) -> Option<Arc<RsaKeys>> {
        self.keys
            .get_or_init(|| async {
                match tokio::task::spawn_blocking(RsaKeys::generate).await {
                    Ok(Ok(k)) => Some(Arc::new(k)),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot generate the RSA key pair");
                        None
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "RSA key generation task failed");
                        None
                    }
                }
            })
            .await
            .clone()
    }
}

/// A logged-in MySQL client.
#[derive(Debug)]
pub struct MyLogin {
    pub user: Arc<UserAuth>,
    pub database: Option<String>,
    pub charset: u8,
    pub capabilities: u32,
}

fn scramble() -> [u8; 20] {
    let mut s: [u8; 20] = rand::random();
    for b in &mut s {
        // Printable, never NUL or '$' (some clients treat the scramble as a C string).
        *b = 0x21 + (*b % 0x5d);
        if *b == b'$' {
            *b = b'#';
        }
    }
    s
}

/// Run the handshake (with the TLS upgrade `tls` allows) and authentication. On success nothing
/// has been sent after the auth exchange: the caller connects a server and then sends OK.
pub async fn login(
    client: &mut MyClient,
    cluster: &str,
    users: &UserDirectory,
    shared: &MysqlShared,
    connection_id: u32,
    tls: &TlsConfig,
) -> Result<MyLogin, MyError> {
    let scramble = scramble();
    let offered = tls.offered();
    let hs = HandshakeV10 {
        server_version: shared.greeting_version(),
        connection_id,
        scramble,
        capabilities: if offered.is_some() {
            PROXY_CAPS | caps::CLIENT_SSL
        } else {
            PROXY_CAPS
        },
        charset: 45,
        status: status::AUTOCOMMIT,
        auth_plugin: NATIVE.to_string(),
    };
    client.seq = 0;
    client.queue(&hs.encode());
    client.flush().await?;
    let mut p = client.read_packet().await?;
    if is_ssl_request(&p.payload) {
        let Some(server) = offered else {
            return Err(MyError::new(
                1045,
                "08004",
                "TLS is not enabled on this switchyard listener",
                ErrorKind::ClientProtocol,
            )
            .fatal());
        };
        // The real handshake response follows over TLS; sequence ids continue.
        client.start_tls(server).await?;
        p = client.read_packet().await?;
    } else if tls.required() {
        tracing::warn!(peer = %client.peer_ip, "mysql login refused: TLS required");
        return Err(MyError::new(
            3159,
            "08004",
            "TLS required: connections using insecure transport are prohibited on this listener",
            ErrorKind::AuthFailed,
        )
        .fatal());
    }
    let resp = HandshakeResponse::parse(&p.payload)
        .map_err(|e| MyError::protocol(format!("Bad handshake: {e}")))?;
    if resp.capabilities & caps::CLIENT_PROTOCOL_41 == 0 {
        return Err(MyError::protocol(
            "clients without CLIENT_PROTOCOL_41 are not supported",
        ));
    }
    let capabilities = resp.capabilities & PROXY_CAPS;
    let user = users
        .get(&resp.username)
        .filter(|u| u.config.clusters.is_empty() || u.config.clusters.iter().any(|c| c == cluster))
        .cloned();
    let wanted = match user.as_ref().map(|u| u.config.mysql_auth) {
        Some(MysqlAuth::CachingSha2) => SHA2,
        _ => NATIVE,
    };
    let used = resp.auth_plugin.as_deref().unwrap_or(NATIVE);
    let mut data = resp.auth_response.clone();
    if used != wanted || (data.is_empty() && wanted == SHA2) {
        let mut d = scramble.to_vec();
        d.push(0);
        client.queue(&auth_switch_request(wanted, &d));
        client.flush().await?;
        data = client.read_packet().await?.payload.to_vec();
    }
    let leaks = leaks_password_on_full_auth(client, resp.capabilities, &resp.attributes);
    let ok = verify(
        client,
        shared,
        user.as_ref(),
        &resp.username,
        wanted,
        &scramble,
        &data,
        leaks,
    )
    .await?;
    match user {
        Some(user) if ok => Ok(MyLogin {
            user,
            database: resp.database.filter(|d| !d.is_empty()),
            charset: resp.charset,
            capabilities,
        }),
        Some(_) => {
            tracing::warn!(user = %resp.username, "mysql login refused: wrong password");
            Err(MyError::access_denied(&resp.username, &client.peer_ip))
        }
        None => {
            tracing::warn!(user = %resp.username, "mysql login refused: unknown user");
            let mut e = MyError::access_denied(&resp.username, &client.peer_ip);
            e.kind = ErrorKind::UnknownUser;
            Err(e)
        }
    }
}

/// Check the client's answer for `wanted` against the configured password (caching_sha2: fast
/// path for cached users and clients that would leak the password, else the RSA exchange).
#[allow(clippy::too_many_arguments)]
async fn verify(
    client: &mut MyClient,
    shared: &MysqlShared,
    user: Option<&Arc<UserAuth>>,
    username: &str,
    wanted: &str,
    scramble: &[u8],
    data: &[u8],
    leaks: bool,
) -> Result<bool, MyError> {
    let password = match user.map(|u| &u.config.secret) {
        Some(ClientSecret::Password(p)) => p.clone(),
        _ => return Ok(false),
    };
    Ok(match wanted {
        NATIVE => native_verify(password.as_bytes(), scramble, data),
        SHA2 => {
            if !sha2_verify(password.as_bytes(), scramble, data) {
                false
            } else {
                let cached = shared.sha2_cache.lock().contains(username);
                let ok = if cached || leaks {
                    client.queue(&auth_more_data(&[SHA2_FAST_AUTH_SUCCESS]));
                    true
                } else {
                    full_sha2(client, shared, &password, scramble).await?
                };
                if ok && !cached {
                    shared.sha2_cache.lock().insert(username.to_string());
                }
                ok
            }
        }
        _ => false,
    })
}

/// COM_CHANGE_USER: authenticate as another user with a fresh scramble (through an auth switch,
/// whatever the client sent first). Returns the new user; the caller resets the session.
pub async fn change_user(
    client: &mut MyClient,
    cluster: &str,
    users: &UserDirectory,
    shared: &MysqlShared,
    username: &str,
    leaks: bool,
) -> Result<Arc<UserAuth>, MyError> {
    let scramble = scramble();
    let user = users
        .get(username)
        .filter(|u| u.config.clusters.is_empty() || u.config.clusters.iter().any(|c| c == cluster))
        .cloned();
    let wanted = match user.as_ref().map(|u| u.config.mysql_auth) {
        Some(MysqlAuth::CachingSha2) => SHA2,
        _ => NATIVE,
    };
    let mut d = scramble.to_vec();
    d.push(0);
    client.queue(&auth_switch_request(wanted, &d));
    client.flush().await?;
    let data = client.read_packet().await?.payload.to_vec();
    let ok = verify(
        client,
        shared,
        user.as_ref(),
        username,
        wanted,
        &scramble,
        &data,
        leaks,
    )
    .await?;
    match user {
        Some(u) if ok => Ok(u),
        _ => {
            tracing::warn!(user = %username, "mysql change user refused");
            Err(MyError::access_denied(username, &client.peer_ip))
        }
    }
}

/// Whether the client would answer "perform full authentication" with its password in cleartext
/// on this plain-TCP session (`capabilities` and `attributes` are from its handshake response or
/// COM_CHANGE_USER). libmariadb (MariaDB Connector/C 3.x, used by the `mariadb` CLI)
/// does so whenever TLS was merely *requested* — the CLI's default — even though we offer no TLS
/// and it did not set CLIENT_SSL; only with TLS switched off (`--skip-ssl`) does it use the RSA
/// exchange. Asking such a client for the full password would put it on the wire unencrypted
/// (and it could never be accepted), so it is authenticated by its scramble alone. That is as
/// strong as full authentication here: the proxy holds the plain password, so a correct
/// caching_sha2 scramble proves the client knows it (MySQL needs the full exchange only because
/// it stores a salted hash it cannot check a scramble against).
/// On the Unix-domain socket nothing leaks: the password stays on this host.
pub fn leaks_password_on_full_auth(
    client: &MyClient,
    capabilities: u32,
    attributes: &[(String, String)],
) -> bool {
    !client.is_local()
        && capabilities & caps::CLIENT_SSL == 0
        && attributes
            .iter()
            .any(|(k, v)| k == "_client_name" && v.eq_ignore_ascii_case("libmariadb"))
}

/// caching_sha2_password full authentication. Over TLS or the Unix-domain socket the client sends
/// its password in cleartext (NUL-terminated), as MySQL accepts on secure transports. Otherwise
/// the client asks for our public key and sends the password encrypted with it; anything but an
/// RSA ciphertext of our key's size (such as a cleartext password) is refused.
async fn full_sha2(
    client: &mut MyClient,
    shared: &MysqlShared,
    password: &str,
    scramble: &[u8],
) -> Result<bool, MyError> {
    client.queue(&auth_more_data(&[SHA2_PERFORM_FULL_AUTH]));
    client.flush().await?;
    let mut p = client.read_packet().await?;
    if client.is_secure() && p.payload.as_ref() != [SHA2_REQUEST_PUBLIC_KEY] {
        let over = if client.is_tls() {
            "TLS"
        } else {
            "the Unix socket"
        };
        tracing::debug!(peer = %client.peer_ip, "caching_sha2 full authentication in cleartext over {over}");
        let sent = p.payload.strip_suffix(&[0]).unwrap_or(&p.payload);
        return Ok(sent == password.as_bytes());
    }
    let Some(keys) = shared.keys().await else {
        return Ok(false);
    };
    if p.payload.as_ref() == [SHA2_REQUEST_PUBLIC_KEY] {
        client.queue(&auth_more_data(keys.public_pem().as_bytes()));
        client.flush().await?;
        p = client.read_packet().await?;
    }
    if p.payload.len() != keys.ciphertext_len() {
        tracing::warn!(
            len = p.payload.len(),
            "caching_sha2 full authentication answer is not RSA-encrypted; a password sent in \
             cleartext over plain TCP is never accepted"
        );
        return Ok(false);
    }
    Ok(match keys.decrypt_password(&p.payload, scramble) {
        Some(pw) => pw == password.as_bytes(),
        None => false,
    })
}
