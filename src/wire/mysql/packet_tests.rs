//! Unit tests for packet framing and length-encoded values.

use super::*;

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

#[test]
fn splits_single_frames_and_waits_for_partial() {
    let mut all = frame(0, b"\x03SELECT 1");
    all.extend(frame(7, b""));
    let mut buf = BytesMut::new();
    for (i, b) in all.iter().enumerate() {
        if i < 13 {
            assert_eq!(split_packet(&mut buf, 1024).unwrap(), None);
        }
        buf.put_u8(*b);
    }
    let p = split_packet(&mut buf, 1024).unwrap().unwrap();
    assert_eq!(p.seq, 0);
    assert_eq!(&p.payload[..], b"\x03SELECT 1");
    assert_eq!(&p.raw[..], &frame(0, b"\x03SELECT 1")[..]);
    let e = split_packet(&mut buf, 1024).unwrap().unwrap();
    assert_eq!(e.seq, 7);
    assert!(e.payload.is_empty());
    assert_eq!(&e.raw[..], &[0, 0, 0, 7]);
    assert!(buf.is_empty());
    assert_eq!(split_packet(&mut buf, 1024).unwrap(), None);
}

#[test]
fn joins_continuation_frames() {
    let big: Vec<u8> = (0..MAX_PAYLOAD + 10).map(|i| (i % 251) as u8).collect();
    let mut out = BytesMut::new();
    let next = encode_into(&mut out, 3, &big);
    assert_eq!(next, 5);
    assert_eq!(out.len(), big.len() + 8);
    assert_eq!(&out[..4], &[0xFF, 0xFF, 0xFF, 3]);
    assert_eq!(&out[MAX_PAYLOAD + 4..MAX_PAYLOAD + 8], &[10, 0, 0, 4]);
    let wire = out.clone().freeze();

    // Partial: only the first frame visible.
    let mut buf = BytesMut::from(&wire[..MAX_PAYLOAD + 6]);
    assert_eq!(split_packet(&mut buf, usize::MAX).unwrap(), None);
    let mut buf = BytesMut::from(&wire[..]);
    buf.put_slice(&frame(0, b"\x0e"));
    let p = split_packet(&mut buf, big.len()).unwrap().unwrap();
    assert_eq!(p.seq, 4);
    assert_eq!(&p.payload[..], &big[..]);
    assert_eq!(p.raw, wire);
    assert_eq!(&buf[..], &frame(0, b"\x0e")[..]);
}

#[test]
fn exact_multiple_needs_trailing_empty_frame() {
    let big = vec![0x41u8; MAX_PAYLOAD];
    let mut out = BytesMut::new();
    assert_eq!(encode_into(&mut out, 255, &big), 1);
    assert_eq!(out.len(), MAX_PAYLOAD + 8);
    assert_eq!(&out[MAX_PAYLOAD + 4..], &[0, 0, 0, 0]);
    let mut partial = BytesMut::from(&out[..MAX_PAYLOAD + 4]);
    assert_eq!(split_packet(&mut partial, usize::MAX).unwrap(), None);
    let p = split_packet(&mut out, usize::MAX).unwrap().unwrap();
    assert_eq!(p.payload.len(), MAX_PAYLOAD);
    assert_eq!(p.seq, 0);
    assert!(out.is_empty());
}

#[test]
fn empty_payload_is_one_empty_frame() {
    let mut out = BytesMut::new();
    assert_eq!(encode_into(&mut out, 9, b""), 10);
    assert_eq!(&out[..], &[0, 0, 0, 9]);
    let mut out = BytesMut::new();
    assert_eq!(encode_into(&mut out, 0, b"\x01"), 1);
    assert_eq!(&out[..], &[1, 0, 0, 0, 1]);
}

#[test]
fn too_large_is_reported_from_headers_alone() {
    let mut buf = BytesMut::from(&[0x00, 0x10, 0x00, 0x00][..]);
    assert_eq!(
        split_packet(&mut buf, 1024),
        Err(PacketError::TooLarge {
            len: 4096,
            max: 1024
        })
    );
    assert!(buf.capacity() < 4096);
    // Continuation: the second header pushes the total past the limit.
    let mut v = vec![0xFF, 0xFF, 0xFF, 0];
    v.resize(MAX_PAYLOAD + 4, 0);
    v.extend_from_slice(&[2, 0, 0, 1]);
    let mut buf = BytesMut::from(&v[..]);
    assert!(matches!(
        split_packet(&mut buf, MAX_PAYLOAD + 1),
        Err(PacketError::TooLarge { .. })
    ));
    let mut buf = BytesMut::from(&v[..]);
    assert_eq!(split_packet(&mut buf, MAX_PAYLOAD + 2).unwrap(), None);
}

#[test]
fn lenenc_roundtrip() {
    for v in [
        0u64,
        1,
        250,
        251,
        252,
        0xFFFF,
        0x1_0000,
        0xFF_FFFF,
        0x100_0000,
        u64::MAX,
    ] {
        let mut b = BytesMut::new();
        put_lenenc_int(&mut b, v);
        let expect_len = match v {
            0..=250 => 1,
            251..=0xFFFF => 3,
            0x1_0000..=0xFF_FFFF => 4,
            _ => 9,
        };
        assert_eq!(b.len(), expect_len, "{v}");
        let mut s: &[u8] = &b;
        assert_eq!(read_lenenc_int(&mut s), Some(v));
        assert!(s.is_empty());
    }
    let mut b = Vec::new();
    put_lenenc_bytes(&mut b, b"hello");
    put_nul_str(&mut b, b"x");
    let mut s: &[u8] = &b;
    assert_eq!(read_lenenc_bytes(&mut s), Some(&b"hello"[..]));
    assert_eq!(read_nul_str(&mut s), Some(&b"x"[..]));
    assert!(s.is_empty());
}

#[test]
fn lenenc_rejects_bad_input_without_advancing() {
    for bad in [
        &[][..],
        &[0xFB][..],
        &[0xFF][..],
        &[0xFC, 1][..],
        &[0xFD, 1, 2][..],
        &[0xFE, 1, 2, 3, 4, 5, 6, 7][..],
    ] {
        let mut s = bad;
        assert_eq!(read_lenenc_int(&mut s), None, "{bad:?}");
        assert_eq!(s, bad);
    }
    let bad: &[u8] = &[5, b'a', b'b'];
    let mut s = bad;
    assert_eq!(read_lenenc_bytes(&mut s), None);
    assert_eq!(s, bad);
    let huge: &[u8] = &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1];
    let mut s = huge;
    assert_eq!(read_lenenc_bytes(&mut s), None);
    let mut s: &[u8] = b"no terminator";
    assert_eq!(read_nul_str(&mut s), None);
    let mut s: &[u8] = &[1, 2, 3];
    assert_eq!(read_u32(&mut s), None);
    assert_eq!(read_u16(&mut s), Some(0x0201));
    assert_eq!(read_u8(&mut s), Some(3));
    assert_eq!(read_u8(&mut s), None);
}

#[test]
fn flag_values_match_mysql_common() {
    use mysql_async::consts::{CapabilityFlags as C, StatusFlags as S};
    assert_eq!(caps::CLIENT_SSL, C::CLIENT_SSL.bits());
    assert_eq!(caps::CLIENT_PROTOCOL_41, C::CLIENT_PROTOCOL_41.bits());
    assert_eq!(caps::CLIENT_PLUGIN_AUTH, C::CLIENT_PLUGIN_AUTH.bits());
    assert_eq!(
        caps::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
        C::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA.bits()
    );
    assert_eq!(caps::CLIENT_SESSION_TRACK, C::CLIENT_SESSION_TRACK.bits());
    assert_eq!(caps::CLIENT_DEPRECATE_EOF, C::CLIENT_DEPRECATE_EOF.bits());
    assert_eq!(
        caps::CLIENT_QUERY_ATTRIBUTES,
        C::CLIENT_QUERY_ATTRIBUTES.bits()
    );
    assert_eq!(
        caps::CLIENT_REMEMBER_OPTIONS,
        C::CLIENT_REMEMBER_OPTIONS.bits()
    );
    assert_eq!(status::IN_TRANS, S::SERVER_STATUS_IN_TRANS.bits());
    assert_eq!(
        status::MORE_RESULTS_EXISTS,
        S::SERVER_MORE_RESULTS_EXISTS.bits()
    );
    assert_eq!(status::CURSOR_EXISTS, S::SERVER_STATUS_CURSOR_EXISTS.bits());
    assert_eq!(
        status::SESSION_STATE_CHANGED,
        S::SERVER_SESSION_STATE_CHANGED.bits()
    );
    assert_eq!(
        status::IN_TRANS_READONLY,
        S::SERVER_STATUS_IN_TRANS_READONLY.bits()
    );
}

#[test]
fn random_frames_never_panic() {
    let mut x: u32 = 0x1234_5678;
    for _ in 0..2000 {
        let mut v = Vec::new();
        for _ in 0..(x % 40) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            v.push((x >> 3) as u8);
        }
        let mut buf = BytesMut::from(&v[..]);
        while let Ok(Some(_)) = split_packet(&mut buf, 64) {}
        let mut s: &[u8] = &v;
        let _ = read_lenenc_bytes(&mut s);
        let _ = read_lenenc_int(&mut s);
    }
}

#[test]
fn whole_frames_are_read_in_place_and_others_left_to_split_packet() {
    let mut all = frame(1, b"\x01");
    all.extend(frame(2, b"row"));
    let end = all.len();
    all.extend(&frame(3, b"partial")[..6]);
    assert_eq!(whole_frame(&all, 0, 1024), Some((5, &b"\x01"[..])));
    assert_eq!(whole_frame(&all, 5, 1024), Some((end, &b"row"[..])));
    assert_eq!(whole_frame(&all, end, 1024), None, "not all buffered");
    assert_eq!(whole_frame(&all, end + 2, 1024), None, "no whole header");
    assert_eq!(whole_frame(&all, 5, 2), None, "over the limit");
    // A frame of the maximum length starts a packet of several frames.
    let mut out = BytesMut::new();
    encode_into(&mut out, 0, &vec![7u8; MAX_PAYLOAD + 1]);
    assert_eq!(whole_frame(&out, 0, usize::MAX), None);
}
