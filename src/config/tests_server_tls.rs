//! Unit tests for the `server_tls` section: modes, required and unused keys, PEM files read and
//! the client config built at load, errors located by YAML path.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use super::validate::{load_str_with_env, Problem};
use super::{Config, ServerTlsMode};
use crate::tls::ServerVerify;

/// A CA, a certificate it signed (with its key), and a key that fits neither.
struct Files {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    other_key: PathBuf,
    garbage: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["proxy".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Files {
        ca: write("ca.pem", ca.pem()),
        cert: write("client.pem", cert.pem()),
        key: write("client.key", key.serialize_pem()),
        other_key: write("other.key", KeyPair::generate().unwrap().serialize_pem()),
        garbage: write("garbage.pem", "not a certificate\n".into()),
        _dir: dir,
    }
}

fn config(server_tls: &str) -> String {
    format!(
        "clusters:
  - name: main
    listen: 127.0.0.1:6432
    servers:
      - address: db1.internal:5432
    monitor:
      user: postgres
{server_tls}
users:
  - name: app
    password: pw
"
    )
}

fn load(server_tls: &str) -> Result<Config, Vec<Problem>> {
    load_str_with_env(&config(server_tls), &|_| {
        Err(std::env::VarError::NotPresent)
    })
    .map_err(|e| e.problems)
}

fn errors(server_tls: &str) -> Vec<Problem> {
    match load(server_tls) {
        Ok(c) => panic!("expected an error, got {:?}", c.clusters[0].server_tls),
        Err(p) => p,
    }
}

fn has(problems: &[Problem], path: &str, needle: &str) -> bool {
    problems
        .iter()
        .any(|p| p.path == path && p.message.contains(needle))
}

fn q(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

#[test]
fn absent_section_is_disabled() {
    let c = load("").unwrap();
    let t = &c.clusters[0].server_tls;
    assert_eq!(t.mode, ServerTlsMode::Disable);
    assert!(t.client.is_none());
    assert!(t.connector().is_none());
    assert!(t.plain_allowed());
    let c = load("    server_tls: { mode: disable }").unwrap();
    assert_eq!(c.clusters[0].server_tls.mode, ServerTlsMode::Disable);
}

#[test]
fn each_mode_builds_its_check() {
    let f = files();
    let cases = [
        ("prefer", false, ServerVerify::None, true),
        ("require", false, ServerVerify::None, false),
        ("verify-ca", true, ServerVerify::Chain, false),
        ("verify-full", true, ServerVerify::Full, false),
    ];
    for (mode, with_ca, verify, plain) in cases {
        let ca = if with_ca {
            format!(", ca: {}", q(&f.ca))
        } else {
            String::new()
        };
        let c = load(&format!("    server_tls: {{ mode: {mode}{ca} }}")).unwrap();
        let t = &c.clusters[0].server_tls;
        assert_eq!(t.mode.as_str(), mode);
        let client = t.connector().expect("client config built");
        assert_eq!(client.verify(), verify, "{mode}");
        assert_eq!(t.plain_allowed(), plain, "{mode}");
        assert_eq!(client.ca_pem().is_some(), with_ca);
        assert!(client.identity_pem().is_none());
        assert!(!client.config().client_auth_cert_resolver.has_certs());
    }
}

#[test]
fn client_certificate_is_loaded() {
    let f = files();
    let c = load(&format!(
        "    server_tls:\n      mode: verify-full\n      ca: {}\n      cert: {}\n      key: {}",
        q(&f.ca),
        q(&f.cert),
        q(&f.key)
    ))
    .unwrap();
    let t = &c.clusters[0].server_tls;
    assert_eq!(t.cert.as_deref(), Some(f.cert.as_path()));
    let client = t.connector().unwrap();
    assert!(client.identity_pem().is_some());
    assert!(client.config().client_auth_cert_resolver.has_certs());
}

#[test]
fn verify_modes_need_a_ca() {
    for mode in ["verify-ca", "verify-full"] {
        let p = errors(&format!("    server_tls: {{ mode: {mode} }}"));
        assert!(
            has(
                &p,
                "clusters[0].server_tls.ca",
                &format!("required when `mode` is {mode}")
            ),
            "{p:?}"
        );
    }
}

#[test]
fn unused_keys_are_refused() {
    let f = files();
    let p = errors(&format!(
        "    server_tls: {{ mode: require, ca: {} }}",
        q(&f.ca)
    ));
    assert!(
        has(
            &p,
            "clusters[0].server_tls.ca",
            "not used when `mode` is require"
        ),
        "{p:?}"
    );
    // Files without a mode: the default is disable, and the files would silently do nothing.
    let p = errors(&format!(
        "    server_tls: {{ ca: {}, cert: {} }}",
        q(&f.ca),
        q(&f.cert)
    ));
    assert!(
        has(
            &p,
            "clusters[0].server_tls.ca",
            "not used when `mode` is disable"
        ),
        "{p:?}"
    );
    assert!(has(&p, "clusters[0].server_tls.cert", "not used"), "{p:?}");
}

#[test]
fn cert_and_key_come_together() {
    let f = files();
    let p = errors(&format!(
        "    server_tls: {{ mode: require, cert: {} }}",
        q(&f.cert)
    ));
    assert!(
        has(&p, "clusters[0].server_tls.key", "required with `cert`"),
        "{p:?}"
    );
    let p = errors(&format!(
        "    server_tls: {{ mode: require, key: {} }}",
        q(&f.key)
    ));
    assert!(
        has(&p, "clusters[0].server_tls.cert", "required with `key`"),
        "{p:?}"
    );
}

#[test]
fn bad_files_name_their_key() {
    let f = files();
    let p = errors("    server_tls: { mode: verify-full, ca: /nonexistent/ca.pem }");
    assert!(
        has(
            &p,
            "clusters[0].server_tls.ca",
            "cannot read /nonexistent/ca.pem"
        ),
        "{p:?}"
    );
    let p = errors(&format!(
        "    server_tls: {{ mode: verify-ca, ca: {} }}",
        q(&f.garbage)
    ));
    assert!(
        has(&p, "clusters[0].server_tls.ca", "no CERTIFICATE"),
        "{p:?}"
    );
    let p = errors(&format!(
        "    server_tls: {{ mode: require, cert: {}, key: {} }}",
        q(&f.cert),
        q(&f.other_key)
    ));
    assert!(
        has(&p, "clusters[0].server_tls.key", "does not fit"),
        "{p:?}"
    );
    let p = errors(&format!(
        "    server_tls: {{ mode: require, cert: {}, key: {} }}",
        q(&f.cert),
        q(&f.garbage)
    ));
    assert!(
        has(&p, "clusters[0].server_tls.key", "no PRIVATE KEY"),
        "{p:?}"
    );
    let p = errors("    server_tls: { mode: verify-full, ca: \"  \" }");
    assert!(
        has(&p, "clusters[0].server_tls.ca", "must not be empty"),
        "{p:?}"
    );
}

#[test]
fn unknown_modes_and_keys_are_refused() {
    let p = errors("    server_tls: { mode: verify_full }");
    assert!(
        p.iter()
            .any(|p| p.path == "clusters[0].server_tls.mode"
                && p.message.contains("unknown variant")),
        "{p:?}"
    );
    let p = errors("    server_tls: { mode: require, sslrootcert: x }");
    assert!(
        p.iter()
            .any(|p| p.path.starts_with("clusters[0].server_tls")
                && p.message.contains("unknown field `sslrootcert`")),
        "{p:?}"
    );
}

#[test]
fn configs_compare_by_file_contents() {
    let f = files();
    let text = format!("    server_tls: {{ mode: verify-full, ca: {} }}", q(&f.ca));
    let a = load(&text).unwrap();
    let b = load(&text).unwrap();
    // Loaded twice from the same files: equal (a reload of them changes nothing).
    assert_eq!(a.clusters[0].server_tls, b.clusters[0].server_tls);
    let other = format!("    server_tls: {{ mode: verify-ca, ca: {} }}", q(&f.ca));
    let c = load(&other).unwrap();
    assert_ne!(a.clusters[0].server_tls, c.clusters[0].server_tls);
}
