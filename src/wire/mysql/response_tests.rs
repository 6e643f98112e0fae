//! Unit tests for the response tracker, on byte fixtures built with the packet builders.

use super::*;
use crate::wire::mysql::command::{prepare_ok, COM_PING, COM_QUERY, COM_STMT_CLOSE};
use crate::wire::mysql::packet::put_lenenc_bytes;
use crate::wire::mysql::status::{
    eof_packet, err_packet, ok_packet, result_end_packet, AUTOCOMMIT, IN_TRANS, LAST_ROW_SENT,
};

const OLD: u32 = caps::CLIENT_PROTOCOL_41;
const NEW: u32 = caps::CLIENT_PROTOCOL_41 | caps::CLIENT_DEPRECATE_EOF;

/// A column definition: catalog/schema/table/org_table/name/org_name, 0x0c, charset, length,
/// type, flags, decimals, 2 filler bytes.
fn column(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for s in ["def", "shop", "t", "t", name, name] {
        put_lenenc_bytes(&mut v, s.as_bytes());
    }
    v.push(0x0c);
    v.extend_from_slice(&45u16.to_le_bytes());
    v.extend_from_slice(&1020u32.to_le_bytes());
    v.push(0xfd); // VAR_STRING
    v.extend_from_slice(&0u16.to_le_bytes());
    v.push(0);
    v.extend_from_slice(&[0, 0]);
    v
}

fn text_row(values: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for s in values {
        put_lenenc_bytes(&mut v, s);
    }
    v
}

/// One text result set: count, columns, [EOF], rows, end packet with `status`.
fn result_set(caps: u32, cols: &[&str], rows: &[Vec<u8>], status: u16) -> Vec<Vec<u8>> {
    let mut out = vec![vec![cols.len() as u8]];
    out.extend(cols.iter().map(|c| column(c)));
    if caps & caps::CLIENT_DEPRECATE_EOF == 0 {
        out.push(eof_packet(0, status & !MORE_RESULTS_EXISTS));
    }
    out.extend(rows.iter().cloned());
    out.push(result_end_packet(caps, 0, status));
    out
}

/// Feed all packets; every step but the last must be More; returns the last step.
fn run(t: &mut ResponseTracker, packets: &[Vec<u8>]) -> Step {
    let (last, init) = packets.split_last().unwrap();
    for (i, p) in init.iter().enumerate() {
        assert_eq!(t.feed(p), Step::More, "packet {i}: {p:?}");
        assert!(!t.is_done());
    }
    t.feed(last)
}

#[test]
fn expect_mapping() {
    assert_eq!(expect_for(COM_QUERY), Expect::ResultSet);
    assert_eq!(expect_for(0x17), Expect::ResultSet);
    assert_eq!(expect_for(0x16), Expect::Prepare);
    assert_eq!(expect_for(0x04), Expect::FieldList);
    assert_eq!(expect_for(0x1c), Expect::Rows);
    assert_eq!(expect_for(0x09), Expect::Statistics);
    for c in [0x01, COM_STMT_CLOSE, 0x18] {
        assert_eq!(expect_for(c), Expect::Nothing);
    }
    for c in [COM_PING, 0x02, 0x1b, 0x1f, 0x1a, 0x11] {
        assert_eq!(expect_for(c), Expect::Simple);
    }
}

#[test]
fn simple_ok_err_eof() {
    let mut t = ResponseTracker::new(Expect::Simple, OLD);
    assert_eq!(
        t.feed(&ok_packet(0, 0, AUTOCOMMIT, 0, "")),
        Step::Done {
            status: Some(AUTOCOMMIT)
        }
    );
    assert!(t.is_done() && !t.is_malformed());
    assert_eq!(t.last_status(), Some(AUTOCOMMIT));

    let mut t = ResponseTracker::new(Expect::Simple, NEW);
    assert_eq!(
        t.feed(&err_packet(1045, "28000", "no")),
        Step::Done { status: None }
    );
    assert!(!t.is_malformed());

    // COM_SET_OPTION's EOF on old servers, and the 0xFE OK form under DEPRECATE_EOF.
    let mut t = ResponseTracker::new(Expect::Simple, OLD);
    assert_eq!(t.feed(&eof_packet(0, 3)), Step::Done { status: Some(3) });
    let mut t = ResponseTracker::new(Expect::Simple, NEW);
    assert_eq!(
        t.feed(&result_end_packet(NEW, 0, 0x0102)),
        Step::Done {
            status: Some(0x0102)
        }
    );
    let mut t = ResponseTracker::new(Expect::Simple, NEW);
    assert_eq!(t.feed(&eof_packet(0, 3)), Step::Done { status: Some(3) });
}

#[test]
fn result_head_ok_and_err() {
    let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
    assert_eq!(
        t.feed(&ok_packet(1, 5, IN_TRANS, 0, "")),
        Step::Done {
            status: Some(IN_TRANS)
        }
    );
    let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
    assert_eq!(
        t.feed(&err_packet(1064, "42000", "syntax")),
        Step::Done { status: None }
    );
    assert!(!t.is_malformed());
    assert_eq!(t.last_status(), None);
}

#[test]
fn single_result_set_both_eof_modes() {
    let rows = vec![
        text_row(&[b"1", b"alice"]),
        text_row(&[b"2", b""]),
        vec![0xFB, 1, b'x'],
    ];
    for caps in [OLD, NEW] {
        let packets = result_set(caps, &["id", "name"], &rows, AUTOCOMMIT);
        let mut t = ResponseTracker::new(Expect::ResultSet, caps);
        assert_eq!(
            run(&mut t, &packets),
            Step::Done {
                status: Some(AUTOCOMMIT)
            },
            "caps {caps:x}"
        );
        assert!(!t.is_malformed());
        assert_eq!(t.last_status(), Some(AUTOCOMMIT));
    }
    // Empty result set.
    let packets = result_set(OLD, &["id"], &[], IN_TRANS);
    let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
    assert_eq!(
        run(&mut t, &packets),
        Step::Done {
            status: Some(IN_TRANS)
        }
    );
}

#[test]
fn multi_results() {
    for caps in [OLD, NEW] {
        let mut packets = vec![ok_packet(1, 0, AUTOCOMMIT | MORE_RESULTS_EXISTS, 0, "")];
        packets.extend(result_set(
            caps,
            &["a"],
            &[text_row(&[b"1"])],
            AUTOCOMMIT | MORE_RESULTS_EXISTS,
        ));
        packets.extend(result_set(
            caps,
            &["b", "c"],
            &[],
            AUTOCOMMIT | MORE_RESULTS_EXISTS,
        ));
        // A CALL ends with a plain OK.
        packets.push(ok_packet(0, 0, IN_TRANS, 0, ""));
        let mut t = ResponseTracker::new(Expect::ResultSet, caps);
        assert_eq!(
            run(&mut t, &packets),
            Step::Done {
                status: Some(IN_TRANS)
            }
        );
        assert!(!t.is_malformed());
    }
}

#[test]
fn rows_starting_with_fe_are_not_terminators() {
    // Text row whose first value is a >= 16 MiB string: 0xFE lenenc prefix. Without
    // DEPRECATE_EOF any 0xFE packet of 9+ bytes is a row.
    let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
    for p in &result_set(OLD, &["blob"], &[], 0)[..3] {
        assert_eq!(t.feed(p), Step::More);
    }
    let mut row = vec![0xFE, 8, 0, 0, 0, 0, 0, 0, 0];
    row.extend_from_slice(b"12345678");
    assert_eq!(t.feed(&row), Step::More);
    assert_eq!(t.feed(&row[..9]), Step::More);
    assert_eq!(t.feed(&eof_packet(0, 2)), Step::Done { status: Some(2) });

    // With DEPRECATE_EOF only a payload of at least 0xFFFFFF bytes can be a row.
    let mut t = ResponseTracker::new(Expect::ResultSet, NEW);
    assert_eq!(t.feed(&[1]), Step::More);
    assert_eq!(t.feed(&column("blob")), Step::More);
    let mut big = vec![0xFE, 0xF7, 0xFF, 0xFF, 0, 0, 0, 0, 0];
    big.resize(MAX_PAYLOAD + 8, b'z');
    assert_eq!(t.feed(&big), Step::More);
    assert_eq!(
        t.feed(&result_end_packet(NEW, 0, 2)),
        Step::Done { status: Some(2) }
    );
}

#[test]
fn binary_rows_start_with_zero() {
    let mut t = ResponseTracker::new(Expect::ResultSet, NEW);
    assert_eq!(t.feed(&[1]), Step::More);
    assert_eq!(t.feed(&column("id")), Step::More);
    // Binary row: 0x00 header, null bitmap, LONGLONG — looks like an OK header but is a row.
    assert_eq!(t.feed(&[0, 0, 7, 0, 0, 0, 0, 0, 0, 0]), Step::More);
    assert_eq!(t.feed(&[0, 0, 0, 0, 0, 0, 0]), Step::More);
    assert_eq!(
        t.feed(&result_end_packet(NEW, 0, 2)),
        Step::Done { status: Some(2) }
    );
}

#[test]
fn cursor_ends_after_column_eof() {
    let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
    assert_eq!(t.feed(&[2]), Step::More);
    assert_eq!(t.feed(&column("a")), Step::More);
    assert_eq!(t.feed(&column("b")), Step::More);
    let st = AUTOCOMMIT | CURSOR_EXISTS;
    assert_eq!(t.feed(&eof_packet(0, st)), Step::Done { status: Some(st) });
    assert!(!t.is_malformed());

    // Then COM_STMT_FETCH returns rows until an EOF with LAST_ROW_SENT (or just CURSOR_EXISTS).
    let mut t = ResponseTracker::new(Expect::Rows, OLD);
    assert_eq!(t.feed(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), Step::More);
    assert_eq!(t.feed(&eof_packet(0, st)), Step::Done { status: Some(st) });
    let mut t = ResponseTracker::new(Expect::Rows, NEW);
    let end = AUTOCOMMIT | LAST_ROW_SENT;
    assert_eq!(
        t.feed(&result_end_packet(NEW, 0, end)),
        Step::Done { status: Some(end) }
    );
    let mut t = ResponseTracker::new(Expect::Rows, NEW);
    assert_eq!(
        t.feed(&err_packet(1421, "HY000", "no cursor")),
        Step::Done { status: None }
    );

    // DEPRECATE_EOF: the server ends the metadata with an OK (0xFE) carrying CURSOR_EXISTS.
    let mut t = ResponseTracker::new(Expect::ResultSet, NEW);
    assert_eq!(t.feed(&[1]), Step::More);
    assert_eq!(t.feed(&column("a")), Step::More);
    assert_eq!(
        t.feed(&result_end_packet(NEW, 0, st)),
        Step::Done { status: Some(st) }
    );
}

#[test]
fn error_in_the_middle_of_rows() {
    let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
    for p in &result_set(OLD, &["a"], &[text_row(&[b"1"])], 0)[..4] {
        assert_eq!(t.feed(p), Step::More);
    }
    assert_eq!(
        t.feed(&err_packet(
            1317,
            "70100",
            "Query execution was interrupted"
        )),
        Step::Done { status: None }
    );
    assert!(!t.is_malformed());
}

#[test]
fn prepare_with_params_and_columns() {
    let ok = PrepareOk {
        stmt_id: 4,
        columns: 2,
        params: 3,
        warnings: 0,
    };
    for caps in [OLD, NEW] {
        let mut packets = vec![prepare_ok(&ok)];
        packets.extend((0..3).map(|_| column("?")));
        if caps == OLD {
            packets.push(eof_packet(0, AUTOCOMMIT));
        }
        packets.push(column("a"));
        packets.push(column("b"));
        if caps == OLD {
            packets.push(eof_packet(0, AUTOCOMMIT));
        }
        let mut t = ResponseTracker::new(Expect::Prepare, caps);
        assert_eq!(run(&mut t, &packets), Step::Done { status: None });
        assert!(!t.is_malformed());
        assert_eq!(t.prepare_ok(), Some(ok));
    }
    // Only params; only columns; neither.
    for (params, columns, n) in [(2u16, 0u16, 4usize), (0, 1, 3), (0, 0, 1)] {
        let ok = PrepareOk {
            stmt_id: 1,
            columns,
            params,
            warnings: 0,
        };
        let mut packets = vec![prepare_ok(&ok)];
        for _ in 0..params {
            packets.push(column("?"));
        }
        if params > 0 {
            packets.push(eof_packet(0, 2));
        }
        for _ in 0..columns {
            packets.push(column("c"));
        }
        if columns > 0 {
            packets.push(eof_packet(0, 2));
        }
        assert_eq!(packets.len(), n);
        let mut t = ResponseTracker::new(Expect::Prepare, OLD);
        assert_eq!(run(&mut t, &packets), Step::Done { status: None });
        assert!(!t.is_malformed());
    }
    let mut t = ResponseTracker::new(Expect::Prepare, OLD);
    assert_eq!(
        t.feed(&err_packet(1146, "42S02", "no table")),
        Step::Done { status: None }
    );
    assert_eq!(t.prepare_ok(), None);
    assert!(!t.is_malformed());
}

#[test]
fn field_list() {
    let mut def = column("id");
    put_lenenc_bytes(&mut def, b"0"); // default value
    for caps in [OLD, NEW] {
        let packets = vec![def.clone(), column("name"), result_end_packet(caps, 0, 2)];
        let mut t = ResponseTracker::new(Expect::FieldList, caps);
        assert_eq!(run(&mut t, &packets), Step::Done { status: Some(2) });
    }
    let mut t = ResponseTracker::new(Expect::FieldList, OLD);
    assert_eq!(
        t.feed(&err_packet(1146, "42S02", "x")),
        Step::Done { status: None }
    );
}

#[test]
fn local_infile() {
    let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
    assert_eq!(t.feed(b"\xFB/tmp/data.csv"), Step::LocalInfile);
    assert!(!t.is_done());
    assert_eq!(
        t.feed(&ok_packet(3, 0, AUTOCOMMIT, 0, "Records: 3")),
        Step::Done {
            status: Some(AUTOCOMMIT)
        }
    );
    let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
    assert_eq!(t.feed(b"\xFBf"), Step::LocalInfile);
    assert_eq!(
        t.feed(&err_packet(1148, "42000", "not allowed")),
        Step::Done { status: None }
    );
    // Multi-statement: a result follows the LOAD DATA.
    let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
    assert_eq!(t.feed(b"\xFBf"), Step::LocalInfile);
    assert_eq!(
        t.feed(&ok_packet(3, 0, AUTOCOMMIT | MORE_RESULTS_EXISTS, 0, "")),
        Step::More
    );
    assert_eq!(
        t.feed(&ok_packet(0, 0, AUTOCOMMIT, 0, "")),
        Step::Done {
            status: Some(AUTOCOMMIT)
        }
    );
    // Anything but OK/ERR after the file is malformed.
    let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
    assert_eq!(t.feed(b"\xFBf"), Step::LocalInfile);
    assert_eq!(t.feed(&[1]), Step::Done { status: None });
    assert!(t.is_malformed());
}

#[test]
fn statistics_and_nothing() {
    let mut t = ResponseTracker::new(Expect::Statistics, OLD);
    assert_eq!(
        t.feed(b"Uptime: 10  Threads: 1  Questions: 3"),
        Step::Done { status: None }
    );
    assert!(!t.is_malformed());
    let t = ResponseTracker::new(Expect::Nothing, OLD);
    assert!(t.is_done());
    let mut t = ResponseTracker::new(Expect::Nothing, OLD);
    assert_eq!(
        t.feed(&ok_packet(0, 0, 2, 0, "")),
        Step::Done { status: None }
    );
    assert!(t.is_malformed());
}

#[test]
fn mariadb_progress_reports_are_skipped() {
    let mut progress = vec![0xFF, 0xFF, 0xFF, 1, 1, 2];
    progress.extend_from_slice(&[0x10, 0x27, 0]);
    put_lenenc_bytes(&mut progress, b"copy to tmp table");
    let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
    assert_eq!(t.feed(&progress), Step::More);
    assert_eq!(
        t.feed(&ok_packet(0, 0, 2, 0, "")),
        Step::Done { status: Some(2) }
    );
}

#[test]
fn malformed_answers() {
    let bad_cases: Vec<(Expect, u32, Vec<Vec<u8>>)> = vec![
        (Expect::Simple, OLD, vec![vec![]]),
        (Expect::Simple, OLD, vec![vec![0x05, 1, 2]]),
        (Expect::Simple, OLD, vec![vec![0x00, 1]]),
        (Expect::Simple, OLD, vec![vec![0xFE; 20]]),
        (Expect::ResultSet, OLD, vec![vec![]]),
        (
            Expect::ResultSet,
            OLD,
            vec![vec![0x00, 0xFB, 0, 0, 0, 0, 0]],
        ),
        // Column count with trailing bytes, zero, or absurdly large.
        (Expect::ResultSet, OLD, vec![vec![2, 0]]),
        (
            Expect::ResultSet,
            OLD,
            vec![vec![0xFE, 0, 0, 0, 0, 0, 0, 0, 0]],
        ),
        (
            Expect::ResultSet,
            OLD,
            vec![vec![0xFE, 0, 0, 0, 0, 1, 0, 0, 0]],
        ),
        // A column definition that is not one (an early EOF).
        (
            Expect::ResultSet,
            OLD,
            vec![vec![2], column("a"), eof_packet(0, 2)],
        ),
        // Missing EOF after the columns.
        (
            Expect::ResultSet,
            OLD,
            vec![vec![1], column("a"), text_row(&[b"1"])],
        ),
        // Empty row payload.
        (Expect::ResultSet, NEW, vec![vec![1], column("a"), vec![]]),
        // Short 0xFE terminator that is neither OK nor EOF under DEPRECATE_EOF.
        (
            Expect::ResultSet,
            NEW,
            vec![vec![1], column("a"), vec![0xFE, 1]],
        ),
        (Expect::Prepare, OLD, vec![vec![0x00, 1, 0]]),
        (
            Expect::Prepare,
            OLD,
            vec![vec![0x01, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
        ),
        (
            Expect::Prepare,
            OLD,
            vec![
                prepare_ok(&PrepareOk {
                    stmt_id: 1,
                    columns: 0,
                    params: 1,
                    warnings: 0,
                }),
                column("?"),
                column("?"),
            ],
        ),
        (Expect::FieldList, OLD, vec![vec![0x03, b'd']]),
    ];
    for (i, (expect, caps, packets)) in bad_cases.iter().enumerate() {
        let mut t = ResponseTracker::new(*expect, *caps);
        let step = run(&mut t, packets);
        assert_eq!(step, Step::Done { status: None }, "case {i}");
        assert!(t.is_malformed(), "case {i}");
        assert!(t.is_done());
        // Feeding after the end stays Done and malformed.
        assert_eq!(
            t.feed(&ok_packet(0, 0, 2, 0, "")),
            Step::Done { status: None }
        );
    }
    // Feeding after a clean end is flagged too.
    let mut t = ResponseTracker::new(Expect::Simple, OLD);
    t.feed(&ok_packet(0, 0, 2, 0, ""));
    assert_eq!(
        t.feed(&ok_packet(0, 0, 2, 0, "")),
        Step::Done { status: None }
    );
    assert!(t.is_malformed());
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let expects = [
        Expect::Simple,
        Expect::ResultSet,
        Expect::Prepare,
        Expect::FieldList,
        Expect::Rows,
        Expect::Statistics,
        Expect::Nothing,
    ];
    for round in 0..3000 {
        let expect = expects[round % expects.len()];
        let caps = if round % 2 == 0 { OLD } else { NEW };
        let mut t = ResponseTracker::new(expect, caps);
        for _ in 0..(next() % 12) {
            let len = (next() % 24) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(f) = p.first_mut() {
                // Bias towards interesting header bytes.
                *f = [0x00, 0x01, 0x03, 0xFB, 0xFE, 0xFF, *f][(next() % 7) as usize];
            }
            let _ = t.feed(&p);
            let _ = (t.is_done(), t.last_status(), t.prepare_ok());
        }
    }
    // Every truncation of a valid answer.
    let packets = result_set(OLD, &["a", "b"], &[text_row(&[b"x", b"y"])], 2);
    for cut in 0..packets.len() {
        for n in 0..packets[cut].len() {
            let mut t = ResponseTracker::new(Expect::ResultSet, OLD);
            for p in &packets[..cut] {
                t.feed(p);
            }
            t.feed(&packets[cut][..n]);
        }
    }
}
