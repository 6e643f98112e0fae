//! TLS setup for both directions: the rustls `ServerConfig` offered to clients (with an optional
//! client-CA verifier), the `ClientConfig` used towards servers (with the certificate check of
//! its `sslmode`-like level), the crypto provider every rustls user in the process shares (ring),
//! and the client stream type (plain TCP or TLS) both front ends read and write.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::Digest;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// ALPN protocol name PostgreSQL 17 clients send (and require with direct TLS).
pub const PG_ALPN: &[u8] = b"postgresql";

/// The one crypto provider of the process (ring), shared by every rustls config built here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Install [`provider`] as the process default (for crates that build their own rustls configs).
/// Harmless when one is installed already.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A PEM file that could not be used; `field` names the config key it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFileError {
    pub field: &'static str,
    pub message: String,
}

impl TlsFileError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        TlsFileError {
            field,
            message: message.into(),
        }
    }
}

/// Every certificate of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE found", path.display()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("{}: no PRIVATE KEY found", path.display())
        }
        e => format!("{}: invalid PEM: {e}", path.display()),
    })
}

/// A root store holding every certificate of a PEM file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A built server-side TLS configuration, shared by the sessions of one listener. Compares equal
/// only to itself (configs hold keys, not comparable values).
#[derive(Clone)]
pub struct TlsServer {
    acceptor: TlsAcceptor,
    config: Arc<ServerConfig>,
    /// `tls-server-end-point` channel binding data of the leaf certificate (SCRAM-PLUS).
    end_point: Option<Vec<u8>>,
    /// SHA-256 over the certificate, key and client CA files' contents.
    fingerprint: [u8; 32],
}

impl TlsServer {
    /// Read `cert` (chain, leaf first) and `key`; with `client_ca`, clients must present a
    /// certificate signed by one of its CAs. `alpn`: protocols offered (empty = no ALPN).
    pub fn from_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        alpn: &[&[u8]],
    ) -> Result<TlsServer, TlsFileError> {
        let mut digest = sha2::Sha256::new();
        for (field, path) in [
            ("cert", Some(cert)),
            ("key", Some(key)),
            ("client_ca", client_ca),
        ] {
            if let Some(path) = path {
                let bytes = std::fs::read(path).map_err(|e| {
                    TlsFileError::new(field, format!("cannot read {}: {e}", path.display()))
                })?;
                digest.update(&bytes);
            }
        }
        let fingerprint: [u8; 32] = digest.finalize().into();
        let chain = load_certs(cert).map_err(|e| TlsFileError::new("cert", e))?;
        let end_point = chain
            .first()
            .and_then(|c| crate::tls_binding::tls_server_end_point(c));
        let key = load_key(key).map_err(|e| TlsFileError::new("key", e))?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFileError::new("mode", e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = load_roots(ca).map_err(|e| TlsFileError::new("client_ca", e))?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsFileError::new("client_ca", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsFileError::new("key", format!("does not fit the certificate: {e}")))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let config = Arc::new(config);
        Ok(TlsServer {
            acceptor: TlsAcceptor::from(config.clone()),
            config,
            end_point,
            fingerprint,
        })
    }

    /// Channel binding data (`tls-server-end-point`) for SCRAM-SHA-256-PLUS, when the
    /// certificate's signature algorithm has one.
    pub fn channel_binding(&self) -> Option<&[u8]> {
        self.end_point.as_deref()
    }

    /// Run the server side of a TLS handshake on `stream` (the caller puts it under a deadline).
    pub async fn accept(&self, stream: TcpStream) -> io::Result<ClientStream> {
        self.accept_after(stream, &[]).await
    }

    /// Like [`TlsServer::accept`], when the client's first TLS bytes were already read off the
    /// socket (a MySQL client sends its ClientHello right behind the SSL request, without waiting
    /// for an answer, so both can arrive in one read). `early` is fed to the handshake first.
    pub async fn accept_after(&self, stream: TcpStream, early: &[u8]) -> io::Result<ClientStream> {
        let mut failed = None;
        let accept = self.acceptor.accept_with(stream, |conn| {
            let mut rest = early;
            while !rest.is_empty() {
                if let Err(e) = conn.read_tls(&mut rest) {
                    failed = Some(e);
                    return;
                }
                if let Err(e) = conn.process_new_packets() {
                    failed = Some(io::Error::new(io::ErrorKind::InvalidData, e));
                    return;
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let tls = accept.await?;
        Ok(ClientStream::Tls(Box::new(tls)))
    }
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("alpn", &self.config.alpn_protocols.len())
            .finish_non_exhaustive()
    }
}

/// Equal when built from the same file contents and ALPN list (a reload compares them).
impl PartialEq for TlsServer {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
            && self.config.alpn_protocols == other.config.alpn_protocols
    }
}

/// How much of a server's certificate the proxy checks (the `sslmode` levels that use TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerVerify {
    /// Encryption only: any certificate is accepted (the handshake signatures are still checked,
    /// so the server holds the key of the certificate it shows).
    None,
    /// The chain must lead to one of the configured CAs; the host name is not checked.
    Chain,
    /// The chain is checked and the certificate must name the host the proxy connects to.
    Full,
}

/// A built client-side TLS configuration towards one cluster's servers. Compares equal only to
/// itself (configs hold keys, not comparable values).
#[derive(Clone)]
pub struct TlsClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    verify: ServerVerify,
    config: Arc<ClientConfig>,
    connector: TlsConnector,
    postgres: tokio_postgres_rustls::MakeRustlsConnect,
    /// PEM bytes of the CA bundle and of the client certificate + key, for drivers that build
    /// their own rustls config from files (mysql_async).
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsClient {
    /// Read `ca` (required for [`ServerVerify::Chain`] and [`ServerVerify::Full`]) and the
    /// optional client `identity` (certificate chain, key) and build the client config.
    pub fn from_files(
        verify: ServerVerify,
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<TlsClient, TlsFileError> {
        let provider = provider();
        let read = |field: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                TlsFileError::new(field, format!("cannot read {}: {e}", path.display()))
            })
        };
        let (roots, ca_pem) = match ca {
            Some(path) => (
                Some(Arc::new(
                    load_roots(path).map_err(|e| TlsFileError::new("ca", e))?,
                )),
                Some(read("ca", path)?),
            ),
            None => (None, None),
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (verify, roots) {
            (ServerVerify::None, _) => Arc::new(AnyCertificate {
                provider: provider.clone(),
            }),
            (ServerVerify::Chain, Some(roots)) => Arc::new(ChainOnly {
                roots,
                provider: provider.clone(),
            }),
            (ServerVerify::Full, Some(roots)) => {
                WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| TlsFileError::new("ca", e.to_string()))?
            }
            (_, None) => {
                return Err(TlsFileError::new(
                    "ca",
                    "required to check server certificates",
                ))
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFileError::new("mode", e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let (config, identity_pem) = match identity {
            None => (builder.with_no_client_auth(), None),
            Some((cert, key)) => {
                let chain = load_certs(cert).map_err(|e| TlsFileError::new("cert", e))?;
                let der = load_key(key).map_err(|e| TlsFileError::new("key", e))?;
                let config = builder.with_client_auth_cert(chain, der).map_err(|e| {
                    TlsFileError::new("key", format!("does not fit the certificate: {e}"))
                })?;
                (config, Some((read("cert", cert)?, read("key", key)?)))
            }
        };
        let postgres = tokio_postgres_rustls::MakeRustlsConnect::new(config.clone());
        let config = Arc::new(config);
        Ok(TlsClient {
            inner: Arc::new(ClientInner {
                verify,
                connector: TlsConnector::from(config.clone()),
                config,
                postgres,
                ca_pem,
                identity_pem,
            }),
        })
    }

    pub fn verify(&self) -> ServerVerify {
        self.inner.verify
    }

    /// The rustls client config (shared by every connection to the cluster's servers).
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.inner.config
    }

    /// The same config as a tokio-postgres TLS connector (a cheap clone).
    pub fn postgres(&self) -> tokio_postgres_rustls::MakeRustlsConnect {
        self.inner.postgres.clone()
    }

    /// PEM bytes of the CA bundle (when one is configured).
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.inner.ca_pem.as_deref()
    }

    /// PEM bytes of the client certificate chain and its key (when configured).
    pub fn identity_pem(&self) -> Option<(&[u8], &[u8])> {
        self.inner
            .identity_pem
            .as_ref()
            .map(|(c, k)| (c.as_slice(), k.as_slice()))
    }

    /// Run the client side of a TLS handshake on `stream`, checking the certificate against
    /// `host` (the configured server host, a DNS name or an IP address) as the level demands.
    /// The caller puts it under a deadline.
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = server_name(host)?;
        self.inner.connector.connect(name, stream).await
    }
}

/// The TLS server name of a configured host (`[v6]` brackets removed).
pub fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is not a valid TLS server name: {e}"),
        )
    })
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("verify", &self.inner.verify)
            .field("client_cert", &self.inner.identity_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Equal when built with the same verification level from the same file contents.
impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        self.inner.verify == other.inner.verify
            && self.inner.ca_pem == other.inner.ca_pem
            && self.inner.identity_pem == other.inner.identity_pem
    }
}

/// `require`/`prefer`: accepts any certificate; handshake signatures are still verified.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

/// `verify-ca`: the chain must lead to a trusted root; names are not checked.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

fn signatures(
    provider: &CryptoProvider,
) -> (
    &rustls::crypto::WebPkiSupportedAlgorithms,
    Vec<SignatureScheme>,
) {
    let algs = &provider.signature_verification_algorithms;
    (algs, algs.supported_schemes())
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, signatures(&self.provider).0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, signatures(&self.provider).0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signatures(&self.provider).1
    }
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, signatures(&self.provider).0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, signatures(&self.provider).0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signatures(&self.provider).1
    }
}

/// A client connection, before or after a TLS upgrade.
pub type ClientStream = crate::maybe_tls::MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;

impl ClientStream {
    /// The ALPN protocol the TLS handshake agreed on (`None` without TLS or without ALPN).
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            ClientStream::Plain(_) | ClientStream::Unix(_) => None,
            ClientStream::Tls(t) => t.get_ref().1.alpn_protocol(),
        }
    }
}
