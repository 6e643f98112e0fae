//! Fuzz the PostgreSQL side's pure code with client bytes: framing, the startup packet, the
//! message views, SCRAM's client messages, and the batch analysis that routes a batch of frames.
#![no_main]

use std::sync::OnceLock;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::classify::{Classifier, ClassifierSettings};
use switchyard::frontend::pg::state;
use switchyard::wire::pg::auth::{ScramServer, ScramVerifier};
use switchyard::wire::pg::{frame, msg, startup};

const MAX: usize = 1 << 16;

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| {
        Classifier::new(ClassifierSettings {
            cache_size: 64,
            ..Default::default()
        })
    })
}

fn verifier() -> &'static ScramVerifier {
    static V: OnceLock<ScramVerifier> = OnceLock::new();
    V.get_or_init(|| ScramVerifier::from_password("secret", b"fuzzsalt", 1))
}

fuzz_target!(|data: &[u8]| {
    // The startup packet, as the first bytes of a connection.
    let mut buf = BytesMut::from(data);
    if let Ok(Some(body)) = frame::split_startup(&mut buf, MAX) {
        let _ = startup::parse_startup(&body);
    }
    let _ = startup::parse_startup(data);

    // Tagged frames, every view on each, then the batch as the relay analyses it.
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    while let Ok(Some(f)) = frame::split_frame(&mut buf, MAX) {
        let b = f.body();
        let _ = msg::query_text(b);
        let _ = msg::parse_view(b);
        let _ = msg::bind_view(b);
        let _ = msg::target_view(b);
        let _ = msg::error_fields(b);
        let _ = msg::auth_view(b);
        let _ = msg::key_data_view(b);
        let _ = msg::parameter_status_view(b);
        let _ = msg::sasl_initial_view(b);
        frames.push(f);
    }
    let info = state::analyse(&frames, classifier(), &Default::default());
    let mut known = Default::default();
    let mut pending = std::collections::VecDeque::new();
    state::record_statements(&frames, &info, &mut known, &mut pending);
    let _ = state::analyse(&frames, classifier(), &known);
    // The server refused the batch: what it did not confirm is undone.
    state::unanswered(pending.into_iter(), None, &mut known);

    // SCRAM: the client's first message, then (if accepted) its final one from the same bytes.
    let (first, last) = data.split_at(data.len() / 2);
    if let Ok((server, _)) = ScramServer::start(verifier().clone(), first, "servernonce", None) {
        let _ = server.finish(last);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ScramVerifier::parse(s);
    }
});
