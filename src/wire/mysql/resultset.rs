//! Result sets the proxy answers itself (text protocol): one BIGINT column, one row.

use bytes::BufMut;

use super::packet::{caps, put_lenenc_bytes, put_lenenc_int};
use super::status::{eof_packet, result_end_packet};

const MYSQL_TYPE_LONGLONG: u8 = 0x08;
const BINARY_CHARSET: u16 = 63;
const NOT_NULL_FLAG: u16 = 1;
const UNSIGNED_FLAG: u16 = 32;
const BINARY_FLAG: u16 = 128;

/// The payloads of a one-row, one-column result set named `column` holding `value`: column
/// count, column definition, EOF (unless CLIENT_DEPRECATE_EOF), the row, and the end packet.
pub fn single_unsigned(capabilities: u32, column: &str, value: u64, status: u16) -> Vec<Vec<u8>> {
    // Display width of a BIGINT UNSIGNED: 20.
    single_longlong(
        capabilities,
        column,
        &value.to_string(),
        20,
        UNSIGNED_FLAG,
        status,
    )
}

/// [`single_unsigned`] for a signed BIGINT (e.g. `ROW_COUNT()`, which may be -1).
pub fn single_signed(capabilities: u32, column: &str, value: i64, status: u16) -> Vec<Vec<u8>> {
    // Display width of a BIGINT: 21 (with the sign).
    single_longlong(capabilities, column, &value.to_string(), 21, 0, status)
}

fn single_longlong(
    capabilities: u32,
    column: &str,
    text: &str,
    width: u32,
    sign_flag: u16,
    status: u16,
) -> Vec<Vec<u8>> {
    let mut count = Vec::new();
    put_lenenc_int(&mut count, 1);
    let mut def = Vec::new();
    put_lenenc_bytes(&mut def, b"def");
    for _ in 0..3 {
        put_lenenc_bytes(&mut def, b""); // schema, table, org_table
    }
    put_lenenc_bytes(&mut def, column.as_bytes());
    put_lenenc_bytes(&mut def, b""); // org_name
    put_lenenc_int(&mut def, 0x0c);
    def.put_u16_le(BINARY_CHARSET);
    def.put_u32_le(width);
    def.put_u8(MYSQL_TYPE_LONGLONG);
    def.put_u16_le(NOT_NULL_FLAG | sign_flag | BINARY_FLAG);
    def.put_u8(0); // decimals
    def.put_u16_le(0); // filler
    let mut row = Vec::new();
    put_lenenc_bytes(&mut row, text.as_bytes());
    let mut out = vec![count, def];
    if capabilities & caps::CLIENT_DEPRECATE_EOF == 0 {
        out.push(eof_packet(0, status));
    }
    out.push(row);
    out.push(result_end_packet(capabilities, 0, status));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::mysql::response::{Expect, ResponseTracker, Step};

    fn complete(capabilities: u32) {
        let packets = single_unsigned(capabilities, "LAST_INSERT_ID()", 42, 2);
        let mut t = ResponseTracker::new(Expect::ResultSet, capabilities);
        let last = packets.len() - 1;
        for (i, p) in packets.iter().enumerate() {
            let step = t.feed(p);
            if i < last {
                assert_eq!(step, Step::More, "packet {i} ended the answer early");
            } else {
                assert_eq!(step, Step::Done { status: Some(2) });
            }
        }
        assert!(!t.is_malformed());
    }

    #[test]
    fn is_a_complete_result_set_with_and_without_eof() {
        complete(caps::CLIENT_PROTOCOL_41);
        complete(caps::CLIENT_PROTOCOL_41 | caps::CLIENT_DEPRECATE_EOF);
    }
}
