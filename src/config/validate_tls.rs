//! Validation of a cluster's `tls` section: mode, PEM files read and the rustls server config built
//! at load, so a missing or bad file is a configuration error naming its YAML path.

use std::path::PathBuf;

use super::*;
use crate::tls::{TlsServer, PG_ALPN};

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
