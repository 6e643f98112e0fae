//! Unit tests for OK / ERR / EOF builders and parsers.

use super::*;
use crate::wire::mysql::packet::put_lenenc_bytes;

const ST: u32 = caps::CLIENT_PROTOCOL_41 | caps::CLIENT_SESSION_TRACK;

#[test]
fn ok_packet_bytes() {
    assert_eq!(ok_packet(0, 0, 2, 0, ""), vec![0, 0, 0, 2, 0, 0, 0]);
    assert_eq!(
        ok_packet(300, 7, IN_TRANS | AUTOCOMMIT, 1, "hi"),
        vec![0, 0xFC, 0x2C, 0x01, 7, 3, 0, 1, 0, b'h', b'i']
    );
    assert_eq!(
        ok_packet_for(ST, 1, 0, 2, 0, "hi"),
        vec![0, 1, 0, 2, 0, 0, 0, 2, b'h', b'i']
    );
    // Never announces session state it does not carry.
    assert_eq!(ok_packet(0, 0, 0x4002, 0, ""), vec![0, 0, 0, 2, 0, 0, 0]);
}

#[test]
fn ok_roundtrip_and_info() {
    let ok = parse_ok(&ok_packet(300, 7, 3, 1, "Rows matched: 1"), 0).unwrap();
    assert_eq!(ok.affected, 300);
    assert_eq!(ok.last_insert_id, 7);
    assert_eq!(ok.status, 3);
    assert_eq!(ok.warnings, 1);
    assert_eq!(ok.info, b"Rows matched: 1");
    let ok = parse_ok(&ok_packet_for(ST, 1, 2, 2, 0, "hi"), ST).unwrap();
    assert_eq!(ok.info, b"hi");
    assert!(ok.session_state.is_empty());
    let ok = parse_ok(&ok_packet(1, 2, 2, 0, ""), ST).unwrap();
    assert!(ok.info.is_empty());
}

#[test]
fn deprecate_eof_terminator_is_an_ok() {
    let p = result_end_packet(caps::CLIENT_DEPRECATE_EOF, 2, AUTOCOMMIT | IN_TRANS);
    assert_eq!(p, vec![0xFE, 0, 0, 3, 0, 2, 0]);
    let ok = parse_ok(&p, caps::CLIENT_DEPRECATE_EOF).unwrap();
    assert_eq!((ok.status, ok.warnings), (3, 2));
    assert!(!is_ok(&p));
    assert!(is_eof(&p));
    assert_eq!(result_end_packet(0, 1, 2), eof_packet(1, 2));
    // A 5-byte EOF is not an OK.
    assert_eq!(
        parse_ok(&eof_packet(0, 2), caps::CLIENT_DEPRECATE_EOF),
        None
    );
}

#[test]
fn eof_packet_bytes() {
    let p = eof_packet(3, MORE_RESULTS_EXISTS | AUTOCOMMIT);
    assert_eq!(p, vec![0xFE, 3, 0, 0x0A, 0]);
    assert!(is_eof(&p));
    assert_eq!(parse_eof(&p), Some((3, 0x0A)));
    assert_eq!(parse_eof(&[0xFE]), Some((0, 0)));
    assert_eq!(parse_eof(&[0xFE, 1]), None);
    assert_eq!(parse_eof(&[0xFE, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    assert_eq!(parse_eof(&[0x00, 0, 0, 0, 0]), None);
}

#[test]
fn err_packet_bytes() {
    let p = err_packet(1045, "28000", "Access denied");
    let mut want = vec![0xFF, 0x15, 0x04, b'#', b'2', b'8', b'0', b'0', b'0'];
    want.extend_from_slice(b"Access denied");
    assert_eq!(p, want);
    assert!(is_err(&p));
    let e = parse_err(&p).unwrap();
    assert_eq!(e.code, 1045);
    assert_eq!(e.sqlstate, "28000");
    assert_eq!(e.message, "Access denied");
    let e = parse_err(&err_packet(1, "bad", "m")).unwrap();
    assert_eq!(e.sqlstate, "HY000");
    // No '#' marker (early handshake error).
    let e = parse_err(&[0xFF, 0x10, 0x04, b'T', b'o', b'o']).unwrap();
    assert_eq!(
        (e.code, e.sqlstate.as_str(), e.message.as_str()),
        (1040, "HY000", "Too")
    );
    assert_eq!(parse_err(&[0xFF, 1]), None);
    assert_eq!(parse_err(&[0x00, 1, 0]), None);
    assert!(is_progress_report(&[0xFF, 0xFF, 0xFF, 1]));
    assert!(!is_progress_report(&p));
}

fn ok_with_state(entries: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut p = vec![0x00, 1, 0];
    p.extend_from_slice(&(AUTOCOMMIT | SESSION_STATE_CHANGED).to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    put_lenenc_bytes(&mut p, b"");
    let mut all = Vec::new();
    for (kind, data) in entries {
        all.push(*kind);
        put_lenenc_bytes(&mut all, data);
    }
    put_lenenc_bytes(&mut p, &all);
    p
}

#[test]
fn session_state_and_mysql_gtids() {
    let mut gtid = vec![0u8];
    put_lenenc_bytes(&mut gtid, b"3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5");
    let mut schema = Vec::new();
    put_lenenc_bytes(&mut schema, b"shop");
    let p = ok_with_state(&[
        (SESSION_TRACK_SCHEMA, schema.clone()),
        (SESSION_TRACK_GTIDS, gtid),
    ]);
    let ok = parse_ok(&p, ST).unwrap();
    assert_eq!(ok.session_state.len(), 2);
    assert_eq!(ok.session_state[0], (SESSION_TRACK_SCHEMA, schema));
    assert_eq!(
        gtid_from_session_state(&ok).as_deref(),
        Some("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5")
    );
    // Without CLIENT_SESSION_TRACK the same bytes are plain info.
    let ok = parse_ok(&p, caps::CLIENT_PROTOCOL_41).unwrap();
    assert!(ok.session_state.is_empty());
    assert_eq!(gtid_from_session_state(&ok), None);
}

#[test]
fn mariadb_last_gtid_system_variable() {
    let mut var = Vec::new();
    put_lenenc_bytes(&mut var, b"autocommit");
    put_lenenc_bytes(&mut var, b"ON");
    let mut gtid = Vec::new();
    put_lenenc_bytes(&mut gtid, b"last_gtid");
    put_lenenc_bytes(&mut gtid, b"0-1-42");
    let p = ok_with_state(&[
        (SESSION_TRACK_SYSTEM_VARIABLES, var),
        (SESSION_TRACK_SYSTEM_VARIABLES, gtid),
        (SESSION_TRACK_STATE_CHANGE, b"1".to_vec()),
    ]);
    let ok = parse_ok(&p, ST).unwrap();
    assert_eq!(gtid_from_session_state(&ok).as_deref(), Some("0-1-42"));
    // An empty last_gtid (no write yet) is no position.
    let mut empty = Vec::new();
    put_lenenc_bytes(&mut empty, b"last_gtid");
    put_lenenc_bytes(&mut empty, b"");
    let ok = parse_ok(&ok_with_state(&[(0, empty)]), ST).unwrap();
    assert_eq!(gtid_from_session_state(&ok), None);
}

#[test]
fn malformed_ok_is_rejected_and_truncations_never_panic() {
    let mut gtid = vec![0u8];
    put_lenenc_bytes(&mut gtid, b"uuid:1-9");
    let p = ok_with_state(&[(SESSION_TRACK_GTIDS, gtid)]);
    for n in 0..p.len() {
        let cut = &p[..n];
        let _ = parse_ok(cut, ST);
        let _ = parse_ok(cut, 0);
        let _ = parse_err(cut);
        let _ = parse_eof(cut);
    }
    // Session-state length running past the end.
    let mut bad = p.clone();
    bad[8] = 0xFA;
    assert_eq!(parse_ok(&bad, ST), None);
    assert_eq!(parse_ok(&[0x00, 0xFB, 0, 0, 0, 0, 0], 0), None);
    assert_eq!(parse_ok(&[0x01, 0, 0, 0, 0, 0, 0], 0), None);
    assert_eq!(parse_ok(&[0x00, 0, 0, 0], 0), None);
    assert_eq!(parse_ok(&[], 0), None);
    assert!(!is_ok(&[]) && !is_err(&[]) && !is_eof(&[]));
}
