//! PostgreSQL WAL positions (LSNs) as text and as byte positions.

/// Parses a PostgreSQL LSN written as `X/Y` (two hex numbers) into a byte position.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
        return None;
    }
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_parses_hex_halves() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("0/3000148"), Some(0x300_0148));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
        assert_eq!(parse_lsn("a/b"), Some((0xa << 32) | 0xb));
    }

    #[test]
    fn lsn_rejects_garbage() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "12",
            "g/0",
            "0/1/2",
            "100000000/0",
            "-1/0",
            "0/ 1",
        ] {
            assert_eq!(parse_lsn(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lsn_order_matches_wal_order() {
        let a = parse_lsn("0/FFFFFFFF").unwrap();
        let b = parse_lsn("1/0").unwrap();
        assert_eq!(b - a, 1);
    }
}
