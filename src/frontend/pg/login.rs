//! Client login: startup packet (TLS upgrade through SSLRequest or PostgreSQL 17 direct TLS, GSS
//! refusal, cancel requests) and client authentication (SCRAM-SHA-256 or md5) against the users in
//! the config.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::session::{ClientConn, ClientError};
use crate::config::{AuthMethod, ClientSecret, TlsConfig};
use crate::frontend::users::{UserAuth, UserDirectory};
use crate::metrics::ErrorKind;
use crate::tls::PG_ALPN;
use crate::wire::pg::auth::{md5_verify, ScramServer, ScramVerifier};
use crate::wire::pg::msg;
use crate::wire::pg::startup::{parse_startup, StartupPacket, StartupParams};

/// Largest startup packet accepted (PostgreSQL uses 10000 too).
const MAX_STARTUP: usize = 10_000;

/// How a client connection's startup ended.
#[derive(Debug)]
pub enum Login {
    Session {
        user: Arc<UserAuth>,
        params: StartupParams,
    },
    Cancel {
        pid: i32,
        secret: i32,
    },
}

fn auth_failed(user: &str) -> ClientError {
    ClientError::fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
        ErrorKind::AuthFailed,
    )
}

/// Run the startup phase (with the TLS upgrade `tls` allows) and authenticate. Errors are sent to
/// the client by the caller.
pub async fn login(
    client: &mut ClientConn,
    cluster: &str,
    users: &UserDirectory,
    tls: &TlsConfig,
) -> Result<Login, ClientError> {
    if let Some(server) = tls.offered() {
        // PostgreSQL 17 direct TLS: the connection opens with a ClientHello, no SSLRequest.
        if client.starts_with_tls_hello().await? {
            client.start_tls(server).await?;
            if client.alpn() != Some(PG_ALPN) {
                return Err(ClientError::protocol(
                    "received direct SSL connection request without ALPN protocol negotiation \
                     extension",
                ));
            }
        }
    }
    let params = loop {
        let body = client.read_startup(MAX_STARTUP).await?;
        match parse_startup(&body) {
            Ok(StartupPacket::SslRequest) => match tls.offered() {
                Some(server) if !client.is_tls() => {
                    client.write_now(b"S").await?;
                    client.start_tls(server).await?;
                }
                _ => client.write_now(b"N").await?,
            },
            Ok(StartupPacket::GssEncRequest) => client.write_now(b"N").await?,
            Ok(StartupPacket::Cancel { pid, secret }) => return Ok(Login::Cancel { pid, secret }),
            Ok(StartupPacket::Startup(p)) => break p,
            Err(e) => return Err(ClientError::protocol(e.to_string())),
        }
    };
    if tls.required() && !client.is_tls() {
        tracing::warn!(user = ?params.user(), "login refused: TLS required");
        return Err(ClientError::fatal(
            "28000",
            "TLS required: this listener accepts only encrypted connections (use sslmode=require)",
            ErrorKind::AuthFailed,
        ));
    }
    let Some(user_name) = params.user().map(str::to_string) else {
        return Err(ClientError::fatal(
            "28000",
            "no PostgreSQL user name specified in startup packet",
            ErrorKind::ClientProtocol,
        ));
    };
    if params
        .get("replication")
        .is_some_and(|v| v != "false" && v != "0")
    {
        return Err(ClientError::fatal(
            "08P01",
            "replication connections are not supported by switchyard",
            ErrorKind::ClientProtocol,
        ));
    }
    // SCRAM-SHA-256-PLUS is offered on TLS connections whose certificate allows binding.
    let binding = tls
        .offered()
        .filter(|_| client.is_tls())
        .and_then(|s| s.channel_binding());
    let user = users
        .get(&user_name)
        .filter(|u| u.config.clusters.is_empty() || u.config.clusters.iter().any(|c| c == cluster))
        .cloned();
    let Some(user) = user else {
        // Same exchange as for a real user, so a client cannot tell unknown users apart.
        let salt: [u8; 16] = rand::random();
        let fake =
            ScramVerifier::from_password(&B64.encode(rand::random::<[u8; 16]>()), &salt, 4096);
        let _ = scram(client, fake, binding).await;
        tracing::warn!(user = %user_name, "login refused: unknown user");
        let mut e = auth_failed(&user_name);
        e.kind = ErrorKind::UnknownUser;
        return Err(e);
    };
    let ok = match (user.config.auth, &user.config.secret) {
        (AuthMethod::Md5, ClientSecret::Password(pw)) => md5(client, &user_name, pw).await?,
        (AuthMethod::Md5, ClientSecret::ScramVerifier(_)) => false,
        (AuthMethod::ScramSha256, _) => match &user.scram {
            Some(v) => scram(client, v.clone(), binding).await?,
            None => false,
        },
    };
    if !ok {
        tracing::warn!(user = %user_name, "login refused: wrong password");
        return Err(auth_failed(&user_name));
    }
    client.queue(&msg::auth_ok());
    Ok(Login::Session { user, params })
}

async fn md5(client: &mut ClientConn, user: &str, password: &str) -> Result<bool, ClientError> {
    let salt: [u8; 4] = rand::random();
    client.write_now(&msg::auth_md5(salt)).await?;
    let f = client.read_frame().await?;
    if f.tag != b'p' {
        return Err(ClientError::protocol("expected password message"));
    }
    Ok(md5_verify(user, password, salt, f.body()))
}

/// SCRAM-SHA-256 exchange (with SCRAM-SHA-256-PLUS offered first when `binding` is the TLS
/// connection's channel binding data); Ok(false) on a wrong proof.
async fn scram(
    client: &mut ClientConn,
    verifier: ScramVerifier,
    binding: Option<&[u8]>,
) -> Result<bool, ClientError> {
    let mechanisms: &[&str] = if binding.is_some() {
        &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    } else {
        &["SCRAM-SHA-256"]
    };
    client.write_now(&msg::auth_sasl(mechanisms)).await?;
    let f = client.read_frame().await?;
    if f.tag != b'p' {
        return Err(ClientError::protocol("expected SASLInitialResponse"));
    }
    let (mech, data) = msg::sasl_initial_view(f.body())
        .ok_or_else(|| ClientError::protocol("malformed SASLInitialResponse"))?;
    let plus = mech == b"SCRAM-SHA-256-PLUS" && binding.is_some();
    if mech != b"SCRAM-SHA-256" && !plus {
        return Err(ClientError::fatal(
            "28000",
            "client selected an invalid SASL authentication mechanism",
            ErrorKind::AuthFailed,
        ));
    }
    let nonce = B64.encode(rand::random::<[u8; 18]>());
    // The bound mechanism needs a bound gs2 header and the other way round.
    if plus != data.starts_with(b"p=") {
        return Err(ClientError::fatal(
            "08P01",
            "SCRAM: the channel binding flag does not match the selected mechanism",
            ErrorKind::ClientProtocol,
        ));
    }
    let (server, first) = ScramServer::start(verifier, data, &nonce, binding).map_err(|e| {
        ClientError::fatal("08P01", format!("SCRAM: {e}"), ErrorKind::ClientProtocol)
    })?;
    client
        .write_now(&msg::auth_sasl_continue(first.as_bytes()))
        .await?;
    let f = client.read_frame().await?;
    if f.tag != b'p' {
        return Err(ClientError::protocol("expected SASLResponse"));
    }
    match server.finish(f.body()) {
        Ok(fin) => {
            client.queue(&msg::auth_sasl_final(fin.as_bytes()));
            Ok(true)
        }
        Err(crate::wire::pg::auth::ScramError::BadProof) => Ok(false),
        Err(e) => Err(ClientError::fatal(
            "08P01",
            format!("SCRAM: {e}"),
            ErrorKind::ClientProtocol,
        )),
    }
}
