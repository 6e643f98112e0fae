//! Unit tests for the connection-phase packets.

use super::*;

const SCRAMBLE: [u8; 20] = *b"abcdefgh0123456789AB";

/// A MariaDB 10.11 greeting as sent on the wire: CLIENT_MYSQL clear, extended capabilities in
/// the last 4 reserved bytes.
fn mariadb_greeting() -> Vec<u8> {
    let mut v = vec![0x0a];
    v.extend_from_slice(b"5.5.5-10.11.6-MariaDB-0+deb12u1\0");
    v.extend_from_slice(&[0x2a, 0, 0, 0]);
    v.extend_from_slice(&SCRAMBLE[..8]);
    v.push(0);
    v.extend_from_slice(&[0xfe, 0xf7]); // caps low
    v.push(0x2d); // utf8mb4_general_ci
    v.extend_from_slice(&[0x02, 0x00]); // status
    v.extend_from_slice(&[0xff, 0x81]); // caps high
    v.push(21);
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x1d, 0, 0, 0]);
    v.extend_from_slice(&SCRAMBLE[8..]);
    v.push(0);
    v.extend_from_slice(b"mysql_native_password\0");
    v
}

#[test]
fn parses_mariadb_greeting() {
    let h = HandshakeV10::parse(&mariadb_greeting()).unwrap();
    assert_eq!(h.server_version, "5.5.5-10.11.6-MariaDB-0+deb12u1");
    assert_eq!(h.connection_id, 42);
    assert_eq!(h.scramble, SCRAMBLE);
    assert_eq!(h.capabilities, 0x81ff_f7fe);
    assert_eq!(h.capabilities & caps::CLIENT_MYSQL, 0);
    assert_ne!(h.capabilities & caps::CLIENT_PLUGIN_AUTH, 0);
    assert_eq!(h.charset, 0x2d);
    assert_eq!(h.status, 2);
    assert_eq!(h.auth_plugin, "mysql_native_password");
}

#[test]
fn greeting_roundtrip_and_layout() {
    let h = HandshakeV10 {
        server_version: "8.0.36-switchyard".into(),
        connection_id: 0x0102_0304,
        scramble: SCRAMBLE,
        capabilities: 0xdfff_ffff,
        charset: 255,
        status: 2,
        auth_plugin: "caching_sha2_password".into(),
    };
    let p = h.encode();
    assert_eq!(p[0], 10);
    let v = 1 + h.server_version.len() + 1;
    assert_eq!(&p[v..v + 4], &[4, 3, 2, 1]);
    assert_eq!(&p[v + 4..v + 12], b"abcdefgh");
    assert_eq!(p[v + 12], 0);
    assert_eq!(p[v + 20], 21);
    assert_eq!(&p[v + 21..v + 31], &[0; 10]);
    assert_eq!(&p[v + 31..v + 44], b"0123456789AB\0");
    assert_eq!(&p[v + 44..], b"caching_sha2_password\0");
    assert_eq!(HandshakeV10::parse(&p).unwrap(), h);
    // Without PLUGIN_AUTH no plugin name is written or read.
    let old = HandshakeV10 {
        capabilities: caps::CLIENT_PROTOCOL_41 | caps::CLIENT_SECURE_CONNECTION,
        auth_plugin: String::new(),
        ..h
    };
    assert_eq!(HandshakeV10::parse(&old.encode()).unwrap(), old);
}

#[test]
fn greeting_errors() {
    assert_eq!(
        HandshakeV10::parse(&[0xFF, 0x10, 0x04, b'x']),
        Err(WireError::Malformed("handshake: server sent an error"))
    );
    assert_eq!(
        HandshakeV10::parse(&[9, b'x', 0]),
        Err(WireError::Unsupported("handshake protocol version"))
    );
    let g = mariadb_greeting();
    // Every truncation before the end of the scramble fails; none panics.
    let scramble_end = g.len() - 22 - 1;
    for n in 0..g.len() {
        let r = HandshakeV10::parse(&g[..n]);
        if n < scramble_end {
            assert!(r.is_err(), "len {n}");
        }
    }
    // Missing NUL after the plugin name is tolerated.
    let h = HandshakeV10::parse(&g[..g.len() - 1]).unwrap();
    assert_eq!(h.auth_plugin, "mysql_native_password");
}

fn response(capabilities: u32) -> HandshakeResponse {
    HandshakeResponse {
        capabilities,
        max_packet: 16 * 1024 * 1024,
        charset: 45,
        username: "app".into(),
        auth_response: (1..=20).collect(),
        database: Some("shop".into()),
        auth_plugin: Some("mysql_native_password".into()),
        attributes: vec![
            ("_client_name".into(), "libmariadb".into()),
            ("_os".into(), "Linux".into()),
        ],
    }
}

const FULL: u32 = caps::CLIENT_PROTOCOL_41
    | caps::CLIENT_SECURE_CONNECTION
    | caps::CLIENT_PLUGIN_AUTH
    | caps::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::CLIENT_CONNECT_WITH_DB
    | caps::CLIENT_CONNECT_ATTRS;

#[test]
fn response_lenenc_fixture() {
    let r = response(FULL);
    let p = r.encode();
    let mut want = FULL.to_le_bytes().to_vec();
    want.extend_from_slice(&[0, 0, 0, 1, 45]);
    want.extend_from_slice(&[0; 23]);
    want.extend_from_slice(b"app\0");
    want.push(20);
    want.extend(1..=20u8);
    want.extend_from_slice(b"shop\0mysql_native_password\0");
    want.push(34);
    want.push(12);
    want.extend_from_slice(b"_client_name");
    want.push(10);
    want.extend_from_slice(b"libmariadb");
    want.push(3);
    want.extend_from_slice(b"_os");
    want.push(5);
    want.extend_from_slice(b"Linux");
    assert_eq!(p, want);
    assert_eq!(HandshakeResponse::parse(&p).unwrap(), r);
}

#[test]
fn response_auth_forms() {
    // 1-byte length form.
    let c = caps::CLIENT_PROTOCOL_41 | caps::CLIENT_SECURE_CONNECTION | caps::CLIENT_PLUGIN_AUTH;
    let r = HandshakeResponse {
        database: None,
        attributes: vec![],
        ..response(c)
    };
    let p = r.encode();
    assert_eq!(p[36], 20);
    assert_eq!(HandshakeResponse::parse(&p).unwrap(), r);
    // NUL-terminated form (no SECURE_CONNECTION) with an empty password.
    let c = caps::CLIENT_PROTOCOL_41 | caps::CLIENT_CONNECT_WITH_DB;
    let r = HandshakeResponse {
        auth_response: vec![],
        auth_plugin: None,
        attributes: vec![],
        ..response(c)
    };
    let p = r.encode();
    assert_eq!(&p[32..], b"app\0\0shop\0");
    assert_eq!(HandshakeResponse::parse(&p).unwrap(), r);
    // An empty database name is no database.
    let mut p = r.encode();
    p.truncate(37);
    p.push(0);
    assert_eq!(HandshakeResponse::parse(&p).unwrap().database, None);
}

#[test]
fn response_rejects_malformed() {
    let p = response(FULL).encode();
    for n in 0..p.len() {
        let r = HandshakeResponse::parse(&p[..n]);
        // Up to and including the auth response everything is mandatory.
        if n < 32 + 4 + 21 {
            assert!(r.is_err(), "len {n}");
        }
    }
    // Auth length running past the end.
    let mut bad = p.clone();
    bad[36] = 200;
    assert!(HandshakeResponse::parse(&bad).is_err());
    // Attribute block longer than the packet.
    let mut bad = p.clone();
    let at = p.len() - 35;
    assert_eq!(bad[at], 34);
    bad[at] = 35;
    assert!(HandshakeResponse::parse(&bad).is_err());
    // Non-UTF-8 user name.
    let mut bad = p.clone();
    bad[32] = 0xC3;
    bad[33] = 0x28;
    assert_eq!(
        HandshakeResponse::parse(&bad),
        Err(WireError::Malformed("user name"))
    );
    // Pre-4.1 clients.
    let mut old = p;
    old[1] &= !0x02;
    assert_eq!(
        HandshakeResponse::parse(&old),
        Err(WireError::Unsupported("pre-4.1 client"))
    );
}

#[test]
fn ssl_request_detection() {
    let p = ssl_request(FULL, 1 << 24, 45);
    assert_eq!(p.len(), 32);
    assert!(is_ssl_request(&p));
    assert!(!is_ssl_request(&ssl_request(FULL, 1, 45)[..31]));
    assert!(!is_ssl_request(&response(FULL | caps::CLIENT_SSL).encode()));
    let mut no_ssl = p.clone();
    no_ssl[1] &= !0x08;
    assert!(!is_ssl_request(&no_ssl));
}

#[test]
fn auth_switch_and_more_data() {
    let mut data = SCRAMBLE.to_vec();
    data.push(0);
    let p = auth_switch_request("mysql_native_password", &data);
    assert_eq!(p[0], 0xFE);
    assert_eq!(&p[1..23], b"mysql_native_password\0");
    assert_eq!(&p[23..], &data[..]);
    assert_eq!(
        parse_auth_switch(&p),
        Some(("mysql_native_password".to_string(), SCRAMBLE.to_vec()))
    );
    assert_eq!(
        parse_auth_switch(&[0xFE]),
        Some(("mysql_old_password".to_string(), vec![]))
    );
    assert_eq!(parse_auth_switch(&[0xFE, b'x']), None);
    assert_eq!(parse_auth_switch(&[0x00, b'x', 0]), None);
    assert_eq!(parse_auth_switch(&[]), None);
    assert_eq!(auth_more_data(&[3]), vec![1, 3]);
    assert_eq!(parse_auth_more_data(&[1, 4]), Some(&[4u8][..]));
    assert_eq!(parse_auth_more_data(&[2]), None);
}
