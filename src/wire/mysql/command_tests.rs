//! Unit tests for command parsing and rewriting.

use super::*;

/// COM_STMT_EXECUTE for statement 7 with 3 params (second NULL): LONGLONG 5, NULL, VARSTRING "ab".
fn execute_bound() -> Vec<u8> {
    let mut v = vec![0x17, 7, 0, 0, 0, 0x00, 1, 0, 0, 0];
    v.push(0b0000_0010); // null bitmap
    v.push(1); // new_params_bound
    v.extend_from_slice(&[0x08, 0x00, 0x06, 0x00, 0xfd, 0x00]);
    v.extend_from_slice(&5u64.to_le_bytes());
    v.extend_from_slice(&[2, b'a', b'b']);
    v
}

fn execute_unbound() -> Vec<u8> {
    let mut v = vec![0x17, 7, 0, 0, 0, 0x00, 1, 0, 0, 0, 0b0000_0010, 0];
    v.extend_from_slice(&5u64.to_le_bytes());
    v.extend_from_slice(&[2, b'a', b'b']);
    v
}

#[test]
fn names() {
    assert_eq!(command_name(COM_QUERY), "COM_QUERY");
    assert_eq!(command_name(0x1f), "COM_RESET_CONNECTION");
    assert_eq!(command_name(0xfa), "COM_STMT_BULK_EXECUTE");
    assert_eq!(command_name(0x99), "COM_UNKNOWN");
    for c in 0..=0x20u8 {
        assert_ne!(command_name(c), "COM_UNKNOWN", "{c}");
    }
}

#[test]
fn stmt_ids() {
    let p = execute_bound();
    assert_eq!(stmt_id(&p), Some(7));
    let q = with_stmt_id(&p, 0x0102_0304);
    assert_eq!(&q[1..5], &[4, 3, 2, 1]);
    assert_eq!(&q[5..], &p[5..]);
    assert_eq!(stmt_id(&stmt_close(9)), Some(9));
    assert_eq!(stmt_close(9), vec![0x19, 9, 0, 0, 0]);
    assert_eq!(stmt_id(&[COM_STMT_FETCH, 1, 0, 0, 0, 10, 0, 0, 0]), Some(1));
    assert_eq!(stmt_id(&[COM_STMT_RESET, 1, 0, 0]), None);
    assert_eq!(stmt_id(b"\x03SELECT 1"), None);
    assert_eq!(stmt_id(&[]), None);
    assert_eq!(with_stmt_id(b"\x03SELECT 1", 5), b"\x03SELECT 1".to_vec());
    assert_eq!(with_stmt_id(&[0x19, 1], 5), vec![0x19, 1]);
}

#[test]
fn execute_view() {
    let p = execute_bound();
    let v = parse_execute(&p, 3).unwrap();
    assert_eq!(v.stmt_id, 7);
    assert_eq!(v.flags, CURSOR_TYPE_NO_CURSOR);
    assert_eq!(v.iterations, 1);
    assert_eq!(v.null_bitmap, &[0b10]);
    assert!(v.new_params_bound);
    assert_eq!(v.types, &[0x08, 0, 0x06, 0, 0xfd, 0]);
    assert_eq!(v.values.len(), 11);
    let u = execute_unbound();
    let v = parse_execute(&u, 3).unwrap();
    assert!(!v.new_params_bound);
    assert!(v.types.is_empty());
    assert_eq!(v.values.len(), 11);
    // No parameters: nothing after the iteration count.
    let z = [0x17, 1, 0, 0, 0, 1, 1, 0, 0, 0];
    let v = parse_execute(&z, 0).unwrap();
    assert_eq!(v.flags, CURSOR_TYPE_READ_ONLY);
    assert!(v.null_bitmap.is_empty() && v.values.is_empty());
    // 9 params need a 2-byte bitmap.
    let mut nine = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0x01, 0];
    assert_eq!(parse_execute(&nine, 9).unwrap().null_bitmap, &[0xff, 0x01]);
    nine.truncate(12);
    assert_eq!(parse_execute(&nine, 9), None);
}

#[test]
fn execute_rejects_malformed() {
    let p = execute_bound();
    for n in 0..12 {
        assert_eq!(parse_execute(&p[..n], 3), None, "len {n}");
    }
    // Types cut short.
    assert_eq!(parse_execute(&p[..15], 3), None);
    let mut bad = p.clone();
    bad[11] = 2;
    assert_eq!(parse_execute(&bad, 3), None);
    assert_eq!(parse_execute(b"\x03SELECT 1", 0), None);
    assert_eq!(execute_with_types(&p[..5], 3, &[0; 6]), None);
}

#[test]
fn execute_types_inserted() {
    let types = [0x08, 0x00, 0x06, 0x00, 0xfd, 0x00];
    let out = execute_with_types(&execute_unbound(), 3, &types).unwrap();
    assert_eq!(out, execute_bound());
    // Already bound, or no params: unchanged.
    assert_eq!(
        execute_with_types(&execute_bound(), 3, &[1, 2, 3, 4, 5, 6]).unwrap(),
        execute_bound()
    );
    let z = [0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0];
    assert_eq!(execute_with_types(&z, 0, &[]).unwrap(), z.to_vec());
    // Wrong number of type bytes.
    assert_eq!(execute_with_types(&execute_unbound(), 3, &types[..4]), None);
}

fn cu_caps() -> u32 {
    caps::CLIENT_PROTOCOL_41
        | caps::CLIENT_SECURE_CONNECTION
        | caps::CLIENT_PLUGIN_AUTH
        | caps::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | caps::CLIENT_CONNECT_ATTRS
}

#[test]
fn change_user_fixture_and_roundtrip() {
    let mut p = vec![0x11];
    p.extend_from_slice(b"bob\0");
    p.push(20);
    p.extend(1..=20u8);
    p.extend_from_slice(b"shop\0");
    p.extend_from_slice(&[45, 0]);
    p.extend_from_slice(b"mysql_native_password\0");
    p.extend_from_slice(&[7, 3, b'_', b'o', b's', 2, b'L', b'x']);
    let c = parse_change_user(&p, cu_caps()).unwrap();
    assert_eq!(c.username, "bob");
    assert_eq!(c.auth_response, (1..=20).collect::<Vec<u8>>());
    assert_eq!(c.database.as_deref(), Some("shop"));
    assert_eq!(c.charset, Some(45));
    assert_eq!(c.auth_plugin.as_deref(), Some("mysql_native_password"));
    assert_eq!(c.attributes, vec![("_os".to_string(), "Lx".to_string())]);
    assert_eq!(change_user(&c, cu_caps()), p);

    // Minimal old form: NUL-terminated auth, no charset.
    let old = b"\x11bob\0\0\0".to_vec();
    let c = parse_change_user(&old, caps::CLIENT_PROTOCOL_41).unwrap();
    assert_eq!(c.username, "bob");
    assert!(c.auth_response.is_empty());
    assert_eq!((c.database, c.charset), (None, None));
    let c2 = ChangeUser {
        username: "bob".into(),
        ..ChangeUser::default()
    };
    assert_eq!(change_user(&c2, caps::CLIENT_PROTOCOL_41), old);
}

#[test]
fn change_user_malformed() {
    let full = change_user(
        &ChangeUser {
            username: "u".into(),
            auth_response: vec![9; 20],
            database: Some("d".into()),
            charset: Some(33),
            auth_plugin: Some("p".into()),
            attributes: vec![("k".into(), "v".into())],
        },
        cu_caps(),
    );
    for n in 0..full.len() {
        let r = parse_change_user(&full[..n], cu_caps());
        if n < 24 {
            assert_eq!(r, None, "len {n}");
        }
    }
    assert!(parse_change_user(&full, cu_caps()).is_some());
    let mut bad = full.clone();
    bad[3] = 200;
    assert_eq!(parse_change_user(&bad, cu_caps()), None);
    assert_eq!(parse_change_user(b"\x03x\0", 0), None);
    // Charset cut to one byte.
    let mut short = b"\x11u\0\0d\0".to_vec();
    short.push(1);
    assert_eq!(parse_change_user(&short, 0), None);
}

#[test]
fn prepare_ok_roundtrip() {
    let p = PrepareOk {
        stmt_id: 0x11,
        columns: 2,
        params: 3,
        warnings: 1,
    };
    let b = prepare_ok(&p);
    assert_eq!(b, vec![0, 0x11, 0, 0, 0, 2, 0, 3, 0, 0, 1, 0]);
    assert_eq!(parse_prepare_ok(&b), Some(p));
    assert_eq!(
        parse_prepare_ok(&b[..9]),
        Some(PrepareOk { warnings: 0, ..p })
    );
    for n in 0..9 {
        assert_eq!(parse_prepare_ok(&b[..n]), None);
    }
    assert_eq!(parse_prepare_ok(&b[..10]), None);
    assert_eq!(
        parse_prepare_ok(&[0xFF, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        None
    );
    assert_eq!(command(COM_QUERY, b"SELECT 1"), b"\x03SELECT 1".to_vec());
}
