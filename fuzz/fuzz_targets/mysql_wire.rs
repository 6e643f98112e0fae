//! Fuzz the MySQL side's pure code: packet framing, the client's handshake response and
//! commands, the server's answers (OK / ERR / EOF / prepare OK) and the answer tracker.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::wire::mysql::handshake::{self, HandshakeResponse, HandshakeV10};
use switchyard::wire::mysql::response::{expect_for, ResponseTracker};
use switchyard::wire::mysql::{caps, command, split_packet, status};

const MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // The low two bits of the selector pick the optional capabilities the answers depend on.
    let mut capabilities = caps::CLIENT_PROTOCOL_41;
    if selector & 1 != 0 {
        capabilities |= caps::CLIENT_DEPRECATE_EOF;
    }
    if selector & 2 != 0 {
        capabilities |= caps::CLIENT_SESSION_TRACK;
    }

    // Whole payloads, one by one.
    let _ = HandshakeResponse::parse(rest);
    let _ = HandshakeV10::parse(rest);
    let _ = handshake::is_ssl_request(rest);
    let _ = handshake::parse_auth_switch(rest);
    let _ = handshake::parse_auth_more_data(rest);
    let _ = command::stmt_id(rest);
    let _ = command::parse_execute(rest, u16::from(selector));
    let _ = command::parse_change_user(rest, capabilities);
    let _ = command::parse_prepare_ok(rest);
    if let Some(ok) = status::parse_ok(rest, capabilities) {
        let _ = status::gtid_from_session_state(&ok);
    }
    let _ = status::parse_err(rest);
    let _ = status::parse_eof(rest);

    // Framed packets, fed as the answer to the command the selector names.
    let mut buf = BytesMut::from(rest);
    let mut tracker = ResponseTracker::new(expect_for(selector >> 2), capabilities);
    while let Ok(Some(p)) = split_packet(&mut buf, MAX) {
        let _ = tracker.feed(&p.payload);
        if tracker.is_done() || tracker.is_malformed() {
            let _ = tracker.prepare_ok();
            tracker = ResponseTracker::new(
                expect_for(p.payload.first().copied().unwrap_or(3)),
                capabilities,
            );
        }
    }
});
