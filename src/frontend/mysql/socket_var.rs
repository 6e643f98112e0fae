//! `@@socket` in a client's query names the proxy's own Unix-domain socket (or is NULL), never a
//! server's. Drivers such as mysql_async (`prefer_socket`, on by default) read `@@socket` after
//! logging in over TCP and reconnect to the socket it names: a server's path would send such a
//! client, on a host that also runs a database, straight to that server and around the proxy.

use std::path::Path;

/// What precedes a token, as far as select-list items go.
#[derive(Clone, Copy, PartialEq)]
enum Prev {
    /// `SELECT` (or `DISTINCT` / `ALL` after it) or a comma: an item starts here.
    ItemStart,
    Other,
}

/// Words after which a select-list item has ended.
const ITEM_END_WORDS: &[&str] = &[
    "from",
    "into",
    "union",
    "where",
    "limit",
    "order",
    "group",
    "having",
    "for",
    "window",
    "lock",
    "except",
    "intersect",
];

/// `sql` with every `@@socket` / `@@global.socket` outside quotes and comments replaced by the
/// proxy's socket path as a string literal (`NULL` without one), aliased to the original name
/// when it is a whole select-list item (so the column keeps its name); `None` when there is none.
/// The relay calls it only for text with an `@@` in it.
pub(super) fn rewrite(sql: &str, socket: Option<&Path>) -> Option<String> {
    let b = sql.as_bytes();
    let mut out = String::new();
    let (mut i, mut copied, mut prev) = (0usize, 0usize, Prev::Other);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i = skip_quoted(b, i, q);
                prev = Prev::Other;
            }
            b'#' => i = skip_line(b, i),
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = skip_line(b, i)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block(b, i),
            b'@' if b.get(i + 1) == Some(&b'@') => {
                let end = word_end(b, i + 2, true);
                let name = &sql[i + 2..end];
                if name.eq_ignore_ascii_case("socket") || name.eq_ignore_ascii_case("global.socket")
                {
                    out.push_str(&sql[copied..i]);
                    out.push_str(&literal(socket));
                    if prev == Prev::ItemStart && item_ends(sql, end) {
                        out.push_str(" AS `");
                        out.push_str(&sql[i..end]);
                        out.push('`');
                    }
                    copied = end;
                }
                i = end;
                prev = Prev::Other;
            }
            b',' => {
                prev = Prev::ItemStart;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = word_end(b, i, false);
                let w = &sql[i..end];
                let starts = w.eq_ignore_ascii_case("select")
                    || (prev == Prev::ItemStart
                        && (w.eq_ignore_ascii_case("distinct") || w.eq_ignore_ascii_case("all")));
                prev = if starts { Prev::ItemStart } else { Prev::Other };
                i = end;
            }
            _ => {
                prev = Prev::Other;
                i += 1;
            }
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

/// The path as a MySQL string literal: the config allows no quotes, backslashes or control
/// characters in it, so it needs no escapes whatever the session's `sql_mode`.
fn literal(socket: Option<&Path>) -> String {
    match socket {
        Some(p) => format!("'{}'", p.display()),
        None => "NULL".to_owned(),
    }
}

/// Whether the select-list item ends right after byte `at`: end of text, `,`, `;`, `)`, or a
/// clause keyword.
fn item_ends(sql: &str, at: usize) -> bool {
    let rest = sql[at..].trim_start();
    match rest.as_bytes().first() {
        None | Some(b',' | b';' | b')') => true,
        Some(c) if c.is_ascii_alphabetic() => {
            let w = &rest[..word_end(rest.as_bytes(), 0, false)];
            ITEM_END_WORDS.iter().any(|k| w.eq_ignore_ascii_case(k))
        }
        _ => false,
    }
}

/// End of the identifier starting at `i` (letters, digits, `_`, `$`, and `.` when `dotted`).
fn word_end(b: &[u8], mut i: usize, dotted: bool) -> usize {
    while i < b.len()
        && (b[i].is_ascii_alphanumeric()
            || b[i] == b'_'
            || b[i] == b'$'
            || (dotted && b[i] == b'.'))
    {
        i += 1;
    }
    i
}

/// Past the quoted text opening at `i` (a doubled quote stays inside; a backslash escapes the
/// next byte in '...' and "..." strings).
fn skip_quoted(b: &[u8], mut i: usize, q: u8) -> usize {
    i += 1;
    while i < b.len() {
        if b[i] == b'\\' && q != b'`' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn skip_line(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |n| i + n + 1)
}

fn skip_block(b: &[u8], i: usize) -> usize {
    b[i + 2..]
        .windows(2)
        .position(|w| w == b"*/")
        .map_or(b.len(), |n| i + 2 + n + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Option<&'static Path> {
        Some(Path::new("/run/sy/mysql.sock"))
    }

    #[test]
    fn the_drivers_query_keeps_its_columns() {
        // mysql_async's settings query, as it sends it.
        assert_eq!(
            rewrite("SELECT @@max_allowed_packet,@@wait_timeout,@@socket", p()).as_deref(),
            Some("SELECT @@max_allowed_packet,@@wait_timeout,'/run/sy/mysql.sock' AS `@@socket`")
        );
        assert_eq!(
            rewrite("select @@SOCKET", None).as_deref(),
            Some("select NULL AS `@@SOCKET`")
        );
        assert_eq!(
            rewrite("SELECT DISTINCT @@global.socket FROM dual;", p()).as_deref(),
            Some("SELECT DISTINCT '/run/sy/mysql.sock' AS `@@global.socket` FROM dual;")
        );
        assert_eq!(
            rewrite("SELECT @@socket AS s, 1", p()).as_deref(),
            Some("SELECT '/run/sy/mysql.sock' AS s, 1")
        );
    }

    #[test]
    fn inside_expressions_it_is_the_bare_value() {
        assert_eq!(
            rewrite("SELECT CONCAT(@@socket, 'x'), @@socket IS NULL", None).as_deref(),
            Some("SELECT CONCAT(NULL, 'x'), NULL IS NULL")
        );
    }

    #[test]
    fn quotes_comments_and_other_variables_are_left_alone() {
        for sql in [
            "SELECT '@@socket', \"@@socket\", `@@socket`",
            "SELECT 1 -- @@socket",
            "SELECT 1 # @@socket",
            "SELECT /* @@socket */ 1",
            "SELECT @@socket_timeout, @@session.sockets, @@port",
            "SELECT 'it''s @@socket', 'a\\'@@socket'",
            "SELECT 1",
        ] {
            assert_eq!(rewrite(sql, p()), None, "{sql}");
        }
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for sql in [
            "SELECT '@@socket",
            "SELECT /* @@socket",
            "@@",
            "@@socket",
            "SELECT `",
        ] {
            let _ = rewrite(sql, p());
        }
        assert_eq!(
            rewrite("@@socket", p()).as_deref(),
            Some("'/run/sy/mysql.sock'")
        );
    }
}
