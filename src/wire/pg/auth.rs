//! Server-side client authentication bodies: SCRAM-SHA-256 (RFC 5802/7677) and md5.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// What the proxy stores to verify a SCRAM client (never the password itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    m.update(data);
    m.finalize().into_bytes().into()
}

impl ScramVerifier {
    /// Derive a verifier from a plain password.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac(&salted, b"Server Key");
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    /// Parse a pg_authid-style verifier `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iter.parse().ok().filter(|&i| i > 0)?;
        let salt = B64.decode(salt).ok()?;
        let stored_key: [u8; 32] = B64.decode(stored).ok()?.try_into().ok()?;
        let server_key: [u8; 32] = B64.decode(server).ok()?.try_into().ok()?;
        Some(ScramVerifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message")]
    Malformed,
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("channel binding negotiation error (the client says the server offers none)")]
    BindingDowngrade,
    #[error("channel binding check failed")]
    BindingMismatch,
    #[error("SCRAM nonce mismatch")]
    Nonce,
    #[error("password authentication failed")]
    BadProof,
}

/// Server side of one SCRAM-SHA-256 exchange.
#[derive(Debug)]
pub struct ScramServer {
    verifier: ScramVerifier,
    /// `c=` the client-final-message must carry: base64(gs2 header + binding data).
    expected_c: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramServer {
    /// Handle client-first-message; returns the state and server-first-message. `binding`:
    /// the connection's `tls-server-end-point` data when the server offered
    /// SCRAM-SHA-256-PLUS (TLS), `None` otherwise.
    pub fn start(
        verifier: ScramVerifier,
        client_first: &[u8],
        server_nonce: &str,
        binding: Option<&[u8]>,
    ) -> Result<(Self, String), ScramError> {
        let msg = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed)?;
        // gs2-header: "n,," (no binding), "y,," (client could bind but thinks we can't: a
        // downgrade when we offered it), "p=tls-server-end-point,," (bound).
        let (header, bare) = if let Some(r) = msg.strip_prefix("n,,") {
            ("n,,", r)
        } else if let Some(r) = msg.strip_prefix("y,,") {
            if binding.is_some() {
                return Err(ScramError::BindingDowngrade);
            }
            ("y,,", r)
        } else if let Some(r) = msg.strip_prefix("p=tls-server-end-point,,") {
            if binding.is_none() {
                return Err(ScramError::ChannelBinding);
            }
            ("p=tls-server-end-point,,", r)
        } else if msg.starts_with("p=") {
            return Err(ScramError::ChannelBinding);
        } else {
            return Err(ScramError::Malformed);
        };
        let mut cbind = header.as_bytes().to_vec();
        if header.starts_with("p=") {
            cbind.extend_from_slice(binding.unwrap_or_default());
        }
        let expected_c = B64.encode(cbind);
        let client_nonce = bare
            .split(',')
            .find_map(|p| p.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed)?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        Ok((
            ScramServer {
                verifier,
                expected_c,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
            },
            server_first,
        ))
    }

    /// Verify client-final-message; returns server-final-message on success.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed)?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed)?;
        let mut channel_ok = false;
        let mut nonce_ok = false;
        for part in without_proof.split(',') {
            if let Some(c) = part.strip_prefix("c=") {
                // "biws" = base64("n,,"); with binding, base64 of the header + binding data.
                channel_ok = constant_time_eq(c.as_bytes(), self.expected_c.as_bytes());
            } else if let Some(r) = part.strip_prefix("r=") {
                nonce_ok = r == self.nonce;
            }
        }
        if !channel_ok {
            return Err(ScramError::BindingMismatch);
        }
        if !nonce_ok {
            return Err(ScramError::Nonce);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed)?;
        if proof.len() != 32 {
            return Err(ScramError::Malformed);
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ client_signature[i];
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        if !constant_time_eq(&computed, &self.verifier.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The md5 response a client must send: `"md5" + md5(md5(password + user) + salt)` in hex.
pub fn md5_response(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex(&Md5::digest(format!("{password}{user}").as_bytes()));
    let mut h = Md5::new();
    h.update(inner.as_bytes());
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

/// Check a client's md5 PasswordMessage payload (NUL-terminated string).
pub fn md5_verify(user: &str, password: &str, salt: [u8; 4], payload: &[u8]) -> bool {
    let got = payload.strip_suffix(&[0]).unwrap_or(payload);
    constant_time_eq(got, md5_response(user, password, salt).as_bytes())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    #[test]
    fn scram_exchange_with_real_client_implementation() {
        let verifier = ScramVerifier::from_password("pencil", b"0123456789abcdef", 4096);
        let mut client = ScramSha256::new(b"pencil", ChannelBinding::unsupported());
        let (server, first) =
            ScramServer::start(verifier.clone(), client.message(), "servernonce", None).unwrap();
        client.update(first.as_bytes()).unwrap();
        let fin = server.finish(client.message()).unwrap();
        client.finish(fin.as_bytes()).unwrap();
    }

    #[test]
    fn scram_wrong_password_fails() {
        let verifier = ScramVerifier::from_password("pencil", b"salt", 4096);
        let mut client = ScramSha256::new(b"crayon", ChannelBinding::unsupported());
        let (server, first) = ScramServer::start(verifier, client.message(), "sn", None).unwrap();
        client.update(first.as_bytes()).unwrap();
        assert_eq!(server.finish(client.message()), Err(ScramError::BadProof));
    }

    #[test]
    fn verifier_parse_matches_derivation() {
        let v = ScramVerifier::from_password("pw", b"saltsalt", 4096);
        let text = format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            v.iterations,
            B64.encode(&v.salt),
            B64.encode(v.stored_key),
            B64.encode(v.server_key)
        );
        assert_eq!(ScramVerifier::parse(&text), Some(v));
        assert_eq!(ScramVerifier::parse("md5abc"), None);
        assert_eq!(ScramVerifier::parse("SCRAM-SHA-256$0:AA==$AA==:AA=="), None);
    }

    #[test]
    fn malformed_scram_messages() {
        let v = ScramVerifier::from_password("pw", b"s", 4096);
        assert_eq!(
            ScramServer::start(v.clone(), b"p=tls-server-end-point,,n=,r=x", "s", None).err(),
            Some(ScramError::ChannelBinding)
        );
        assert!(ScramServer::start(v.clone(), b"garbage", "s", None).is_err());
        assert!(ScramServer::start(v.clone(), b"n,,n=,r=", "s", None).is_err());
        let (srv, _) = ScramServer::start(v, b"n,,n=,r=abc", "s", None).unwrap();
        assert_eq!(srv.finish(b"c=biws,r=wrong,p=AAAA"), Err(ScramError::Nonce));
    }

    #[test]
    fn scram_plus_binds_to_the_server_certificate() {
        let verifier = ScramVerifier::from_password("pencil", b"0123456789abcdef", 4096);
        let cert_hash = b"certificate-hash".to_vec();
        let bound = |data: Vec<u8>| ChannelBinding::tls_server_end_point(data);
        // The client's binding data matches ours: accepted.
        let mut client = ScramSha256::new(b"pencil", bound(cert_hash.clone()));
        let (server, first) =
            ScramServer::start(verifier.clone(), client.message(), "sn", Some(&cert_hash)).unwrap();
        client.update(first.as_bytes()).unwrap();
        let fin = server.finish(client.message()).unwrap();
        client.finish(fin.as_bytes()).unwrap();
        // A different certificate (a man in the middle): refused.
        let mut client = ScramSha256::new(b"pencil", bound(b"other".to_vec()));
        let (server, first) =
            ScramServer::start(verifier.clone(), client.message(), "sn", Some(&cert_hash)).unwrap();
        client.update(first.as_bytes()).unwrap();
        assert_eq!(
            server.finish(client.message()),
            Err(ScramError::BindingMismatch)
        );
        // "y": the client could bind but believes we cannot, although we offered it.
        let client = ScramSha256::new(b"pencil", ChannelBinding::unrequested());
        assert_eq!(
            ScramServer::start(verifier.clone(), client.message(), "sn", Some(&cert_hash)).err(),
            Some(ScramError::BindingDowngrade)
        );
        // Without TLS the same "y" is fine.
        let mut client = ScramSha256::new(b"pencil", ChannelBinding::unrequested());
        let (server, first) = ScramServer::start(verifier, client.message(), "sn", None).unwrap();
        client.update(first.as_bytes()).unwrap();
        assert!(server.finish(client.message()).is_ok());
    }

    #[test]
    fn md5_matches_postgres_protocol() {
        let salt = [1, 2, 3, 4];
        let ours = md5_response("u", "p", salt);
        let theirs = postgres_protocol::authentication::md5_hash(b"u", b"p", salt);
        assert_eq!(ours, theirs);
        assert!(md5_verify("u", "p", salt, format!("{ours}\0").as_bytes()));
        assert!(!md5_verify("u", "x", salt, ours.as_bytes()));
    }
}
