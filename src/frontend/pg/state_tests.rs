use super::*;
use crate::classify::ClassifierSettings;
use crate::wire::pg::frame::split_frame;
use bytes::BytesMut;
use foldhash::HashMapExt;

fn frame(raw: bytes::Bytes) -> Frame {
    let mut b = BytesMut::from(&raw[..]);
    split_frame(&mut b, 1 << 20).unwrap().unwrap()
}

fn bind(stmt: &str) -> Frame {
    let mut body = vec![0u8];
    body.extend_from_slice(stmt.as_bytes());
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
    let mut raw = vec![b'B'];
    raw.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    raw.extend_from_slice(&body);
    frame(raw.into())
}

fn execute() -> Frame {
    frame(bytes::Bytes::from_static(b"E\0\0\0\x09\0\0\0\0\0"))
}

fn classifier() -> Classifier {
    Classifier::new(ClassifierSettings::default())
}

#[test]
fn batch_of_parse_bind_execute_sync_is_a_read() {
    let frames = vec![
        frame(msg::parse("s1", "SELECT 1")),
        bind("s1"),
        execute(),
        frame(msg::sync()),
    ];
    let info = analyse(&frames, &classifier(), &HashMap::new());
    assert_eq!(info.class.map(|c| c.intent), Some(Intent::Read));
    assert_eq!(info.syncs, 1);
    assert!(info.uses.is_empty());
    assert_eq!(info.parses.len(), 1);
    assert!(!info.unsynced);
}

#[test]
fn bind_of_known_statement_uses_its_class_and_needs_injection() {
    let c = classifier();
    let first_frames = [
        frame(msg::parse("w", "INSERT INTO t VALUES (1)")),
        frame(msg::sync()),
    ];
    let first = analyse(&first_frames, &c, &HashMap::new());
    let mut session = HashMap::new();
    record_statements(&first_frames, &first, &mut session, &mut Default::default());
    let second = analyse(&[bind("w"), execute(), frame(msg::sync())], &c, &session);
    assert_eq!(second.class.map(|c| c.intent), Some(Intent::Write));
    assert_eq!(second.uses.as_slice(), [Bytes::from_static(b"w")]);

    let mut fresh = BackendState::default();
    let inj = plan(&second, &mut fresh, &session);
    assert_eq!(inj.swallow, 1);
    assert_eq!(inj.frames, vec![session[&b"w".to_vec()].parse.clone()]);
    // Second time on the same backend: nothing to inject.
    let inj = plan(&second, &mut fresh, &session);
    assert_eq!(inj, Injection::default());
}

#[test]
fn unknown_statement_name_fails_closed() {
    let info = analyse(
        &[bind("nope"), execute(), frame(msg::sync())],
        &classifier(),
        &HashMap::new(),
    );
    assert_eq!(info.class.map(|c| c.intent), Some(Intent::Write));
}

#[test]
fn reparse_after_close_elsewhere_closes_stale_copy() {
    let c = classifier();
    let p1_frames = [frame(msg::parse("s", "SELECT 1")), frame(msg::sync())];
    let p1 = analyse(&p1_frames, &c, &HashMap::new());
    let mut session = HashMap::new();
    let mut b = BackendState::default();
    plan(&p1, &mut b, &session);
    record_statements(&p1_frames, &p1, &mut session, &mut Default::default());
    // Client closes "s" on another backend, then parses a new "s" that lands here.
    let close_frames = [frame(msg::close(b'S', "s")), frame(msg::sync())];
    let close = analyse(&close_frames, &c, &session);
    record_statements(&close_frames, &close, &mut session, &mut Default::default());
    let p2 = analyse(
        &[frame(msg::parse("s", "SELECT 2")), frame(msg::sync())],
        &c,
        &session,
    );
    let inj = plan(&p2, &mut b, &session);
    assert_eq!(inj.swallow, 1);
    assert_eq!(inj.frames, vec![msg::close(b'S', "s")]);
}

#[test]
fn simple_query_drops_unnamed_statement() {
    let c = classifier();
    let mut b = BackendState::default();
    let p = analyse(
        &[frame(msg::parse("", "SELECT 1")), frame(msg::sync())],
        &c,
        &HashMap::new(),
    );
    plan(&p, &mut b, &HashMap::new());
    assert!(b.statements.contains_key(&Vec::new()));
    let q = analyse(&[frame(msg::query("SELECT 2"))], &c, &HashMap::new());
    plan(&q, &mut b, &HashMap::new());
    assert!(!b.statements.contains_key(&Vec::new()));
}

#[test]
fn flush_leaves_batch_unsynced_and_set_texts_are_kept() {
    let c = classifier();
    let info = analyse(
        &[
            frame(msg::parse("", "SELECT 1")),
            frame(bytes::Bytes::from_static(b"H\0\0\0\x04")),
        ],
        &c,
        &HashMap::new(),
    );
    assert!(info.unsynced);
    assert_eq!(info.syncs, 0);
    let set = analyse(
        &[frame(msg::query("SET search_path TO public"))],
        &c,
        &HashMap::new(),
    );
    assert_eq!(set.class.map(|c| c.intent), Some(Intent::SessionSet));
    assert_eq!(
        set.session_texts,
        vec!["SET search_path TO public".to_string()]
    );
}

#[test]
fn combine_prefers_the_stronger_intent() {
    let read = Classification {
        intent: Intent::Read,
        reason: Reason::Read,
        hint: None,
    };
    let write = Classification {
        intent: Intent::Write,
        reason: Reason::Write,
        hint: None,
    };
    assert_eq!(combine(Some(read), write).intent, Intent::Write);
    assert_eq!(combine(Some(write), read).intent, Intent::Write);
    assert_eq!(combine(None, read).intent, Intent::Read);
}

#[test]
fn discard_all_is_detected() {
    assert!(drops_statements("discard all"));
    assert!(drops_statements("  DEALLOCATE ALL"));
    assert!(!drops_statements("SET x = 1"));
}

#[test]
fn a_backend_keeps_a_statement_only_when_its_parse_is_byte_for_byte_the_same() {
    let c = classifier();
    let mut backend = BackendState::default();
    let batch = |text: &str| {
        let frames = [frame(msg::parse("s", text)), frame(msg::sync())];
        let info = analyse(&frames, &c, &HashMap::new());
        let mut session = HashMap::new();
        record_statements(&frames, &info, &mut session, &mut Default::default());
        session
    };
    // Session A prepared "s" on this backend.
    let a = batch("SELECT 1");
    let uses = |session: &HashMap<Vec<u8>, Prepared>| {
        analyse(&[bind("s"), execute(), frame(msg::sync())], &c, session)
    };
    let first = plan(&uses(&a), &mut backend, &a);
    assert_eq!(first.swallow, 1, "not there yet: parsed first");
    // Session B's "s" is the same text, from another buffer: nothing to inject.
    let same = batch("SELECT 1");
    assert_eq!(
        plan(&uses(&same), &mut backend, &same),
        Injection::default()
    );
    // Session C's "s" is the same length but another text: closed and parsed again.
    let other = batch("SELECT 2");
    let inj = plan(&uses(&other), &mut backend, &other);
    assert_eq!(inj.swallow, 2);
    assert_eq!(inj.frames[1], other[&b"s".to_vec()].parse);
}

#[test]
fn a_batch_that_only_prepares_has_no_class_but_is_marked() {
    let c = classifier();
    let prepare = |sql: &str| {
        analyse(
            &[frame(msg::parse("", sql)), frame(msg::sync())],
            &c,
            &HashMap::new(),
        )
    };
    for sql in [
        "INSERT INTO t VALUES (1)",
        "SELECT * FROM t",
        "LISTEN ch",
        "BEGIN",
    ] {
        let info = prepare(sql);
        assert!(info.prepare_only, "{sql}");
        assert!(info.class.is_none(), "{sql}: runs nothing, so pins nothing");
    }
    // A batch that runs its statement is not prepare-only.
    let run = analyse(
        &[
            frame(msg::parse("", "INSERT INTO t VALUES (1)")),
            bind(""),
            execute(),
            frame(msg::sync()),
        ],
        &c,
        &HashMap::new(),
    );
    assert!(!run.prepare_only);
    assert_eq!(run.class.map(|c| c.intent), Some(Intent::Write));
    let sync_only = analyse(&[frame(msg::sync())], &c, &HashMap::new());
    assert!(!sync_only.prepare_only && sync_only.class.is_none());
}

/// A refused Parse (an aborted transaction refuses every Parse) leaves nothing: the session's map
/// goes back to what it had, and the backend's record of the name is unknown, so the next use
/// closes and prepares it again instead of trusting a statement the server does not have.
#[test]
fn refused_parses_are_undone() {
    let c = classifier();
    let mut session = HashMap::new();
    let mut backend = BackendState::default();
    let first_frames = [frame(msg::parse("kept", "SELECT 1")), frame(msg::sync())];
    let first = analyse(&first_frames, &c, &session);
    plan(&first, &mut backend, &session);
    let mut pending = std::collections::VecDeque::new();
    record_statements(&first_frames, &first, &mut session, &mut pending);
    assert_eq!(pending.len(), 1);
    // Answered: nothing to undo.
    pending.clear();
    // On another connection: `kept` injected, `new` parsed, a portal closed; all refused.
    let mut other = BackendState::default();
    let batch_frames = [
        frame(msg::parse("new", "SELECT 2")),
        frame(msg::close(b'P', "")),
        bind("kept"),
        execute(),
        frame(msg::sync()),
    ];
    let batch = analyse(&batch_frames, &c, &session);
    let inj = plan(&batch, &mut other, &session);
    assert_eq!(inj.names, vec![b"kept".to_vec()]);
    let mut pending: std::collections::VecDeque<Pending> = inj
        .names
        .into_iter()
        .map(|n| Pending {
            name: Some(n),
            before: None,
        })
        .collect();
    record_statements(&batch_frames, &batch, &mut session, &mut pending);
    assert!(session.contains_key(&b"new"[..]));
    unanswered(pending.into_iter(), Some(&mut other), &mut session);
    assert!(
        !session.contains_key(&b"new"[..]),
        "the refused Parse is not the session's"
    );
    assert!(session.contains_key(&b"kept"[..]));
    let again = analyse(&[bind("kept"), execute(), frame(msg::sync())], &c, &session);
    let inj = plan(&again, &mut other, &session);
    assert_eq!(inj.swallow, 2, "Close and Parse again: {inj:?}");
    assert_eq!(inj.frames[0], msg::close(b'S', "kept"));
    // A refused Close leaves the statement the session's.
    let close_frames = [frame(msg::close(b'S', "kept")), frame(msg::sync())];
    let close = analyse(&close_frames, &c, &session);
    let mut pending = std::collections::VecDeque::new();
    record_statements(&close_frames, &close, &mut session, &mut pending);
    assert!(!session.contains_key(&b"kept"[..]));
    unanswered(pending.into_iter(), None, &mut session);
    assert!(session.contains_key(&b"kept"[..]));
}
