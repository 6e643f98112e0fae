//! Validation of a cluster's `tls` and `server_tls` sections: modes, PEM files read and the rustls
//! server and client configs built at load, so a missing or bad file is a configuration error
//! naming its YAML path.

use std::path::PathBuf;

use super::*;
use crate::tls::{ServerVerify, TlsClient, TlsServer, PG_ALPN};

impl Validator {
    pub(super) fn tls(&mut self, path: &str, raw: RawTls, protocol: Protocol) -> TlsConfig {
        let mode = match raw.mode {
            Some(RawTlsMode::Disable) => TlsMode::Disable,
            Some(RawTlsMode::Allow) => TlsMode::Allow,
            Some(RawTlsMode::Require) => TlsMode::Require,
            None if raw.cert.is_some() => TlsMode::Allow,
            None => TlsMode::Disable,
        };
        let mut file = |key: &str, value: Option<String>| match value {
            Some(v) if v.trim().is_empty() => {
                self.problem(
                    format!("{path}.{key}"),
                    "must not be empty (a PEM file path)",
                );
                None
            }
            v => v.map(PathBuf::from),
        };
        let cert = file("cert", raw.cert);
        let key = file("key", raw.key);
        let client_ca = file("client_ca", raw.client_ca);
        let mut config = TlsConfig {
            mode,
            cert,
            key,
            client_ca,
            server: None,
        };
        if mode == TlsMode::Disable {
            return config;
        }
        let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
            for (k, v) in [("cert", &config.cert), ("key", &config.key)] {
                if v.is_none() {
                    self.problem(
                        format!("{path}.{k}"),
                        format!("required when `mode` is {mode:?} (a PEM file path)")
                            .to_lowercase(),
                    );
                }
            }
            return config;
        };
        let alpn: &[&[u8]] = match protocol {
            Protocol::Postgres => &[PG_ALPN],
            Protocol::Mysql => &[],
        };
        match TlsServer::from_files(cert, key, config.client_ca.as_deref(), alpn) {
            Ok(server) => config.server = Some(server),
            Err(e) => self.problem(format!("{path}.{}", e.field), e.message),
        }
        config
    }
}

impl Validator {
    /// A cluster's `server_tls` section: mode, the PEM files read and the rustls client config
    /// built at load.
    pub(super) fn server_tls(&mut self, path: &str, raw: RawServerTls) -> ServerTls {
        let mode = match raw.mode {
            None | Some(RawServerTlsMode::Disable) => ServerTlsMode::Disable,
            Some(RawServerTlsMode::Prefer) => ServerTlsMode::Prefer,
            Some(RawServerTlsMode::Require) => ServerTlsMode::Require,
            Some(RawServerTlsMode::VerifyCa) => ServerTlsMode::VerifyCa,
            Some(RawServerTlsMode::VerifyFull) => ServerTlsMode::VerifyFull,
        };
        let mut file = |key: &str, value: Option<String>| match value {
            Some(v) if v.trim().is_empty() => {
                self.problem(
                    format!("{path}.{key}"),
                    "must not be empty (a PEM file path)",
                );
                None
            }
            v => v.map(PathBuf::from),
        };
        let ca = file("ca", raw.ca);
        let cert = file("cert", raw.cert);
        let key = file("key", raw.key);
        let mut config = ServerTls {
            mode,
            ca,
            cert,
            key,
            client: None,
        };
        let mode_name = mode.as_str();
        let mut ok = true;
        if mode == ServerTlsMode::Disable {
            for (k, v) in [
                ("ca", &config.ca),
                ("cert", &config.cert),
                ("key", &config.key),
            ] {
                if v.is_some() {
                    self.problem(
                        format!("{path}.{k}"),
                        "not used when `mode` is disable (the default): set `mode` to \
                         prefer, require, verify-ca or verify-full",
                    );
                }
            }
            return config;
        }
        let verify = match mode {
            ServerTlsMode::VerifyFull => ServerVerify::Full,
            ServerTlsMode::VerifyCa => ServerVerify::Chain,
            _ => ServerVerify::None,
        };
        match (verify, &config.ca) {
            (ServerVerify::None, Some(_)) => {
                self.problem(
                    format!("{path}.ca"),
                    format!(
                        "not used when `mode` is {mode_name} (certificates are not checked): \
                         use verify-ca or verify-full to check them against `ca`"
                    ),
                );
                ok = false;
            }
            (ServerVerify::Chain | ServerVerify::Full, None) => {
                self.problem(
                    format!("{path}.ca"),
                    format!("required when `mode` is {mode_name} (a PEM CA bundle)"),
                );
                ok = false;
            }
            _ => {}
        }
        match (&config.cert, &config.key) {
            (Some(_), None) => {
                self.problem(
                    format!("{path}.key"),
                    "required with `cert` (the client certificate's PEM private key)",
                );
                ok = false;
            }
            (None, Some(_)) => {
                self.problem(
                    format!("{path}.cert"),
                    "required with `key` (a PEM client certificate)",
                );
                ok = false;
            }
            _ => {}
        }
        if !ok {
            return config;
        }
        let identity = config.cert.as_deref().zip(config.key.as_deref());
        match TlsClient::from_files(verify, config.ca.as_deref(), identity) {
            Ok(client) => config.client = Some(client),
            Err(e) => self.problem(format!("{path}.{}", e.field), e.message),
        }
        config
    }
}
