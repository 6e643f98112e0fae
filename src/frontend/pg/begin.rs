//! A pipelined BEGIN (transaction pooling): a plain `BEGIN` sent as a simple Query is answered by
//! the proxy and goes to the server in the same write as the transaction's next request, so it
//! costs no round trip of its own and holds no connection across the client's; a COMMIT or
//! ROLLBACK before any request is answered too.
//!
//! The BEGIN goes first as extended-protocol messages without a Sync (Parse, Bind, Execute). Should
//! it fail, the server discards everything up to the next Sync, the client's request included, so
//! nothing of the transaction can run outside it; the session then ends with the server's error.

use super::*;

/// Whether `text` is exactly one of the `words` lists: ASCII case-insensitive, blanks and one final
/// `;` allowed, nothing else (no comments, options or further statements).
fn is_plain(text: &str, words: &[&[&str]]) -> bool {
    let text = text.trim();
    let text = text.strip_suffix(';').unwrap_or(text);
    words.iter().any(|w| {
        let mut got = text.split_ascii_whitespace();
        w.iter()
            .all(|x| got.next().is_some_and(|g| g.eq_ignore_ascii_case(x)))
            && got.next().is_none()
    })
}

const BEGIN: &[&[&str]] = &[
    &["BEGIN"],
    &["BEGIN", "WORK"],
    &["BEGIN", "TRANSACTION"],
    &["START", "TRANSACTION"],
];
/// The plain ends of a transaction, and the command tag PostgreSQL answers each with.
const ENDS: &[(&[&[&str]], &str)] = &[
    (
        &[
            &["COMMIT"],
            &["COMMIT", "WORK"],
            &["COMMIT", "TRANSACTION"],
            &["END"],
            &["END", "WORK"],
            &["END", "TRANSACTION"],
        ],
        "COMMIT",
    ),
    (
        &[
            &["ROLLBACK"],
            &["ROLLBACK", "WORK"],
            &["ROLLBACK", "TRANSACTION"],
            &["ABORT"],
            &["ABORT", "WORK"],
            &["ABORT", "TRANSACTION"],
        ],
        "ROLLBACK",
    ),
];

/// Parse (unnamed, `BEGIN`), Bind (unnamed portal) and Execute, with no Sync: written just before
/// the transaction's first request.
pub(super) const BEGIN_PREFIX: &[u8] = &[
    b'P', 0, 0, 0, 13, 0, b'B', b'E', b'G', b'I', b'N', 0, 0, 0, // Parse
    b'B', 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, // Bind
    b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0, // Execute
];
/// The length of [`BEGIN_PREFIX`]'s Parse (what follows is the Bind and Execute).
pub(super) const BEGIN_PARSE_LEN: usize = 14;
/// The answers to [`BEGIN_PREFIX`] when it succeeds: ParseComplete, BindComplete and the
/// CommandComplete of the BEGIN, none of which the client is to see.
pub(super) const BEGIN_ANSWERS: u8 = 3;

impl Relay {
    /// Answer `frames` locally when they are one simple Query with a BEGIN that can wait for the
    /// transaction's next request, or the end of such a transaction before any request ran.
    /// `class` is the batch's classification: only a BEGIN or a transaction end has its words
    /// looked at. `true`: answered.
    pub(super) fn defer_begin(&mut self, frames: &[Frame], class: Option<Classification>) -> bool {
        let wanted = if self.deferred_begin {
            Intent::TxnControl
        } else {
            Intent::Begin { read_only: false }
        };
        let [f] = frames else { return false };
        let idle = class.is_some_and(|c| c.intent == wanted)
            && f.tag == b'Q'
            && self.pooling()
            && self.txn.is_none()
            && self.pinned.is_none()
            && self.bound.is_none()
            && self.inflight.is_empty()
            && !self.unsynced;
        if !idle {
            return false;
        }
        let Some(text) = msg::query_text(f.body()).map(crate::wire::text) else {
            return false;
        };
        if self.deferred_begin {
            let Some(tag) = ENDS.iter().find(|(w, _)| is_plain(&text, w)).map(|e| e.1) else {
                return false;
            };
            self.deferred_begin = false;
            self.status = b'I';
            self.client.queue(&msg::command_complete(tag));
        } else {
            if self.status != b'I' || !is_plain(&text, BEGIN) {
                return false;
            }
            self.deferred_begin = true;
            self.status = b'T';
            self.client.queue(&msg::command_complete("BEGIN"));
        }
        self.client.queue(&msg::ready_for_query(self.status));
        true
    }

    /// One answer from server `b` while a pipelined BEGIN's are still due.
    pub(super) fn begin_answer(&mut self, b: usize, f: Frame) -> Result<(), ClientError> {
        match f.tag {
            b'1' | b'2' | b'C' => {
                if let Some(front) = self.inflight.front_mut() {
                    front.begin = front.begin.saturating_sub(1);
                }
                Ok(())
            }
            b'E' => Err(self.begin_failed(b, &f)),
            // Notices, parameter changes: passed on as ever.
            _ => {
                self.on_backend_frame(b, f);
                Ok(())
            }
        }
    }

    /// The server refused the pipelined BEGIN (it discarded the request sent with it): the
    /// server connection is closed and the session ends with the server's error.
    fn begin_failed(&mut self, b: usize, f: &Frame) -> ClientError {
        let fields = msg::error_fields(f.body());
        tracing::warn!(cluster = %self.ctx.name, code = %fields.code, "the server refused a transaction's BEGIN: {}", fields.message);
        self.drop_backend(b);
        ClientError::fatal(
            "08006",
            format!(
                "switchyard: the server refused this transaction's BEGIN: {}",
                fields.message
            ),
            ErrorKind::BackendLost,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_words_match() {
        let begin: &[&[&str]] = &[&["BEGIN"], &["START", "TRANSACTION"]];
        for t in [
            "BEGIN",
            "begin;",
            "  Begin ; ",
            "start  transaction;",
            "\tBEGIN\n",
        ] {
            assert!(is_plain(t, begin), "{t:?}");
        }
        for t in [
            "",
            ";",
            "BEGIN;;",
            "BEGIN; SELECT 1",
            "BEGIN WORK",
            "START TRANSACTION READ ONLY",
            "/* c */ BEGIN",
            "BEGIN -- c",
        ] {
            assert!(!is_plain(t, begin), "{t:?}");
        }
    }

    #[test]
    fn postgres_begins_and_ends_by_their_words() {
        for t in [
            "BEGIN",
            "begin transaction;",
            "START TRANSACTION",
            "Begin Work",
        ] {
            assert!(is_plain(t, BEGIN), "{t:?}");
        }
        for t in [
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "BEGIN READ ONLY",
            "START TRANSACTION READ WRITE",
            "BEGIN; SELECT 1",
        ] {
            assert!(!is_plain(t, BEGIN), "{t:?}");
        }
        let tag = |t: &str| ENDS.iter().find(|(w, _)| is_plain(t, w)).map(|e| e.1);
        assert_eq!(tag("END;"), Some("COMMIT"));
        assert_eq!(tag("commit work"), Some("COMMIT"));
        assert_eq!(tag("ABORT"), Some("ROLLBACK"));
        assert_eq!(tag("rollback transaction"), Some("ROLLBACK"));
        assert_eq!(tag("COMMIT AND CHAIN"), None);
        assert_eq!(tag("ROLLBACK TO SAVEPOINT a"), None);
        assert_eq!(tag("PREPARE TRANSACTION 'x'"), None);
    }

    #[test]
    fn the_prefix_is_parse_bind_execute_of_begin() {
        let mut buf = bytes::BytesMut::from(BEGIN_PREFIX);
        let mut tags = Vec::new();
        while let Some(f) = crate::wire::pg::frame::split_frame(&mut buf, 1 << 20).unwrap() {
            tags.push(f.tag);
            if f.tag == b'P' {
                assert_eq!(
                    msg::parse_view(f.body()),
                    Some((&b""[..], &b"BEGIN"[..])),
                    "unnamed, BEGIN"
                );
                assert_eq!(f.raw, msg::parse("", "BEGIN"));
            }
            if f.tag == b'B' {
                assert_eq!(msg::bind_view(f.body()), Some((&b""[..], &b""[..])));
            }
        }
        assert!(buf.is_empty(), "nothing left over");
        assert_eq!(
            &BEGIN_PREFIX[..BEGIN_PARSE_LEN],
            &msg::parse("", "BEGIN")[..]
        );
        assert_eq!(tags, b"PBE", "no Sync");
    }
}
