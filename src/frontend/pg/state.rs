//! Pure session bookkeeping: batch analysis, prepared-statement placement, injected-message plans,
//! session-setting history. No I/O: the relay loop in `session.rs` asks, this answers.

use foldhash::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::classify::{Classification, Classifier, Intent, Reason};
use crate::wire::pg::frame::Frame;
use crate::wire::pg::msg;

/// A statement the client prepared (named or unnamed), as the client sees it.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The client's original Parse frame, re-sent verbatim to other backends.
    pub parse: Bytes,
    pub class: Classification,
}

/// What a backend had under a statement name before [`remember`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Had {
    Nothing,
    Same,
    Other,
}

/// Note that a backend has `parse` as statement `name` (one lookup, one byte comparison) and say
/// what it had before. The frame is copied (not a view into the client's read buffer, which the
/// pooled backend may outlive), and only when it changed.
fn remember(statements: &mut HashMap<Vec<u8>, Bytes>, name: &[u8], parse: &Bytes) -> Had {
    match statements.get_mut(name) {
        Some(have) if have[..] == parse[..] => Had::Same,
        Some(have) => {
            *have = Bytes::copy_from_slice(parse);
            Had::Other
        }
        None => {
            statements.insert(name.to_vec(), Bytes::copy_from_slice(parse));
            Had::Nothing
        }
    }
}

/// Rank of an intent when a batch holds several statements: the strongest decides.
fn rank(i: Intent) -> u8 {
    match i {
        Intent::Read => 0,
        Intent::Begin { read_only: true } => 1,
        Intent::TxnControl => 2,
        Intent::SessionSet | Intent::ProxyRoute(_) => 3,
        Intent::Begin { read_only: false } => 4,
        Intent::Write => 5,
        Intent::Pin => 6,
    }
}

/// Combine two classifications: the higher-ranked intent wins; hints survive.
pub fn combine(a: Option<Classification>, b: Classification) -> Classification {
    match a {
        None => b,
        Some(a) => {
            let mut out = if rank(b.intent) > rank(a.intent) {
                b
            } else {
                a
            };
            out.hint = a.hint.or(b.hint);
            out
        }
    }
}

/// What a batch of client messages (up to a Sync, Query, Flush or pause) needs.
#[derive(Debug, Clone, Default)]
pub struct BatchInfo {
    /// Combined classification; `None` for a batch with no statement (e.g. Describe + Sync).
    pub class: Option<Classification>,
    /// Number of ReadyForQuery answers the batch will produce (Query, Sync, FunctionCall).
    pub syncs: usize,
    /// Named statements the batch uses without parsing them itself, in first-use order (views
    /// into the client's frames: no copy per Bind).
    pub uses: SmallVec<[Bytes; 2]>,
    /// Statements the batch parses (name -> Parse frame); most batches parse one at most.
    pub parses: SmallVec<[(Vec<u8>, Prepared); 1]>,
    /// Statements the batch closes.
    pub closes: Vec<Vec<u8>>,
    /// Texts of session-setting statements, replayed on other backends if the batch succeeds.
    pub session_texts: Vec<String>,
    /// The batch holds a simple Query (which drops the server's unnamed statement).
    pub has_simple_query: bool,
    /// The batch ends without Sync (Flush, or dispatched on a pause): the backend stays bound.
    pub unsynced: bool,
    /// The batch only prepares statements (Parse, Describe) and runs none: it goes anywhere (it
    /// has no `class`), but to a replica the session's read consistency allows whenever the
    /// primary is at hand for that check, since a replica that has not replayed the session's
    /// CREATE TABLE cannot describe an INSERT into it.
    pub prepare_only: bool,
}

/// A Parse or Close sent to a server and not answered yet. The server answers them in the order
/// sent; after an error it runs none of those left until the Sync, and the one that failed did
/// nothing either.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The statement's name (`None`: a portal's Close).
    pub name: Option<Vec<u8>>,
    /// The client's own message: what the session had under the name before it. `None`: the
    /// proxy's injected message.
    pub before: Option<Option<Prepared>>,
}

/// Analyse a batch of client frames. `known` resolves statement names parsed in earlier batches.
pub fn analyse(
    frames: &[Frame],
    classifier: &Classifier,
    known: &HashMap<Vec<u8>, Prepared>,
) -> BatchInfo {
    let mut info = BatchInfo::default();
    // Statements parsed in this batch (names borrowed from the frames; a batch has few, so a
    // short list beats hashing every name).
    let mut parsed_here: SmallVec<[(&[u8], Classification); 4]> = SmallVec::new();
    let parsed = |list: &[(&[u8], Classification)], name: &[u8]| {
        list.iter().rev().find(|(n, _)| *n == name).map(|(_, c)| *c)
    };
    let mut last_synced = true;
    for f in frames {
        match f.tag {
            b'Q' => {
                info.syncs += 1;
                info.has_simple_query = true;
                last_synced = true;
                let text = msg::query_text(f.body()).map(crate::wire::text);
                let c = match &text {
                    Some(t) => classifier.classify(t),
                    None => parse_error(),
                };
                if is_session(c.intent) {
                    if let Some(t) = text {
                        info.session_texts.push(t.into_owned());
                    }
                }
                info.class = Some(combine(info.class, c));
            }
            b'P' => {
                let Some((name, text)) = msg::parse_view(f.body()) else {
                    info.class = Some(combine(info.class, parse_error()));
                    continue;
                };
                let c = classifier.classify(&crate::wire::text(text));
                parsed_here.push((name, c));
                info.parses.push((
                    name.to_vec(),
                    Prepared {
                        parse: f.raw.clone(),
                        class: c,
                    },
                ));
            }
            b'B' => {
                let stmt = msg::bind_view(f.body()).map(|(_, s)| s);
                let c = match stmt {
                    Some(s) => match parsed(&parsed_here, s) {
                        Some(c) => c,
                        None => {
                            let c = known.get(s).map_or_else(unknown, |p| p.class);
                            if !info.uses.iter().any(|u| u == s) {
                                info.uses.push(f.raw.slice_ref(s));
                            }
                            c
                        }
                    },
                    None => parse_error(),
                };
                if is_session(c.intent) {
                    if let Some(p) = stmt_text(frames, known, f) {
                        info.session_texts.push(p);
                    }
                }
                info.class = Some(combine(info.class, c));
            }
            b'D' => {
                if let Some((b'S', name)) = msg::target_view(f.body()) {
                    if parsed(&parsed_here, name).is_none() && !info.uses.iter().any(|u| u == name)
                    {
                        if let Some(p) = known.get(name) {
                            info.class = Some(combine(info.class, p.class));
                        }
                        info.uses.push(f.raw.slice_ref(name));
                    }
                }
            }
            b'C' => {
                if let Some((b'S', name)) = msg::target_view(f.body()) {
                    parsed_here.retain(|(n, _)| *n != name);
                    info.closes.push(name.to_vec());
                }
            }
            b'F' => {
                // FunctionCall: an arbitrary function by OID; cannot be proven read-only.
                info.syncs += 1;
                last_synced = true;
                info.class = Some(combine(info.class, write_unknown()));
            }
            b'S' => {
                info.syncs += 1;
                last_synced = true;
            }
            b'E' | b'H' => last_synced = false,
            _ => {}
        }
        if matches!(f.tag, b'P' | b'B' | b'D' | b'C') {
            last_synced = false;
        }
    }
    info.unsynced = !last_synced;
    info.prepare_only = info.class.is_none() && !info.parses.is_empty();
    info
}

fn stmt_text(frames: &[Frame], known: &HashMap<Vec<u8>, Prepared>, bind: &Frame) -> Option<String> {
    let (_, s) = msg::bind_view(bind.body())?;
    let parse = frames
        .iter()
        .rev()
        .filter(|f| f.tag == b'P')
        .find_map(|f| {
            msg::parse_view(f.body())
                .filter(|(n, _)| *n == s)
                .map(|(_, t)| t.to_vec())
        })
        .or_else(|| {
            known
                .get(s)
                .and_then(|p| msg::parse_view(p.parse.get(5..)?).map(|(_, t)| t.to_vec()))
        })?;
    Some(String::from_utf8_lossy(&parse).into_owned())
}

fn is_session(i: Intent) -> bool {
    matches!(i, Intent::SessionSet | Intent::ProxyRoute(_))
}

fn parse_error() -> Classification {
    Classification {
        intent: Intent::Write,
        reason: Reason::ParseError,
        hint: None,
    }
}

fn unknown() -> Classification {
    Classification {
        intent: Intent::Write,
        reason: Reason::Unknown,
        hint: None,
    }
}

fn write_unknown() -> Classification {
    unknown()
}

/// What one backend connection holds of the session's state.
#[derive(Debug, Default)]
pub struct BackendState {
    /// Prepared statements present on this backend: name -> the Parse frame that made it
    /// (compared byte for byte: a hash could be made to collide by a client).
    pub statements: HashMap<Vec<u8>, Bytes>,
    /// How many entries of the session-setting history this backend has applied...
    pub applied: usize,
    /// ...and the [`chain`] hash of those entries: a pooled connection serving another session
    /// reuses what it has when that is a prefix of the new session's history, else it is reset.
    pub applied_hash: u64,
}

/// Hash chain over session-setting texts: `chain(chain(0, a), b)` stands for `[a, b]`.
pub fn chain(prev: u64, text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    prev.hash(&mut h);
    text.hash(&mut h);
    h.finish()
}

/// Messages to send before a batch so that the backend has what the batch uses, and how many
/// ParseComplete/CloseComplete answers they produce (to be swallowed).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Injection {
    pub frames: Vec<Bytes>,
    pub swallow: usize,
    /// The statement each of `frames` parses or closes, in order.
    pub names: Vec<Vec<u8>>,
}

impl Injection {
    fn push(&mut self, frame: Bytes, name: &[u8]) {
        self.frames.push(frame);
        self.names.push(name.to_vec());
        self.swallow += 1;
    }
}

/// Plan the injections for `info` on a backend, and update its statement map as if the batch ran.
pub fn plan(
    info: &BatchInfo,
    backend: &mut BackendState,
    session: &HashMap<Vec<u8>, Prepared>,
) -> Injection {
    let mut inj = Injection::default();
    for name in &info.uses {
        let Some(p) = session.get(&name[..]) else {
            continue;
        };
        match remember(&mut backend.statements, name, &p.parse) {
            Had::Same => {}
            Had::Other if !name.is_empty() => {
                inj.push(msg::close(b'S', &String::from_utf8_lossy(name)), name);
                inj.push(p.parse.clone(), name);
            }
            _ => inj.push(p.parse.clone(), name),
        }
    }
    for (name, p) in &info.parses {
        let had = remember(&mut backend.statements, name, &p.parse);
        if had != Had::Nothing && !name.is_empty() && !info.closes.contains(name) {
            // A stale copy from before the client closed it elsewhere.
            inj.push(msg::close(b'S', &String::from_utf8_lossy(name)), name);
        }
    }
    for name in &info.closes {
        if !info.parses.iter().any(|(n, _)| n == name) {
            backend.statements.remove(name);
        }
    }
    if info.has_simple_query
        && !backend.statements.is_empty()
        && !info.parses.iter().any(|(n, _)| n.is_empty())
    {
        // A simple Query drops the server's unnamed statement.
        backend.statements.remove(&b""[..]);
    }
    inj
}

/// Apply a batch's parses and closes (from `frames`, as [`analyse`] found them) to the session's
/// own statement map, in the order sent, as if they succeed; what each replaced goes in `pending`
/// (after the injected messages'), to be undone by [`unanswered`] if the server does not run it.
pub fn record_statements(
    frames: &[Frame],
    info: &BatchInfo,
    session: &mut HashMap<Vec<u8>, Prepared>,
    pending: &mut std::collections::VecDeque<Pending>,
) {
    if info.parses.is_empty() && info.closes.is_empty() {
        return;
    }
    let (mut parses, mut closes) = (info.parses.iter(), info.closes.iter());
    for f in frames {
        let (name, before) = match f.tag {
            b'P' if msg::parse_view(f.body()).is_some() => {
                let Some((name, p)) = parses.next() else {
                    continue;
                };
                (Some(name.clone()), session.insert(name.clone(), p.clone()))
            }
            b'C' => match msg::target_view(f.body()) {
                Some((b'S', _)) => {
                    let Some(name) = closes.next() else { continue };
                    (Some(name.clone()), session.remove(name))
                }
                // A portal's: answered with a CloseComplete too.
                _ => (None, None),
            },
            _ => continue,
        };
        pending.push_back(Pending {
            name,
            before: Some(before),
        });
    }
}

/// The server answered an error before running `left` (the failed message and those after it up
/// to the Sync): the session's map goes back to what it had before them, and the backend's record
/// of each name becomes unknown (not any Parse: the next use closes and prepares it again; a
/// Close of a statement the server does not have is no error).
pub fn unanswered(
    left: impl DoubleEndedIterator<Item = Pending>,
    backend: Option<&mut BackendState>,
    session: &mut HashMap<Vec<u8>, Prepared>,
) {
    let mut backend = backend;
    for p in left.rev() {
        let Some(name) = p.name else { continue };
        match p.before {
            Some(Some(was)) => {
                session.insert(name.clone(), was);
            }
            Some(None) => {
                session.remove(&name);
            }
            None => {}
        }
        if let Some(b) = backend.as_deref_mut() {
            b.statements.insert(name, Bytes::new());
        }
    }
}

/// True if a session-setting text drops prepared statements (DISCARD ALL / DEALLOCATE ALL).
pub fn drops_statements(text: &str) -> bool {
    let t = text.trim_start().to_ascii_uppercase();
    t.starts_with("DISCARD ALL") || t.contains("DEALLOCATE ALL")
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
