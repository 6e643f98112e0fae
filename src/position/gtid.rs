//! MariaDB GTID position lists (`domain-server-seq,...`) and how many transactions a replica is behind.
//!
//! A MariaDB position such as `@@gtid_binlog_pos` or `@@gtid_slave_pos` lists the last GTID per
//! replication domain (the binlog position may list several server ids per domain). Sequence
//! numbers only grow within a domain, so a replica is behind the primary, per domain, by the
//! primary's highest sequence number minus the replica's highest one in that domain (0 if the
//! replica is ahead; the whole primary sequence if the replica has nothing in that domain).
//! Domains the primary does not have (e.g. other sources of a multi-source replica) are ignored.

/// One GTID: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// Parses one `domain-server-seq` (surrounding whitespace allowed).
pub fn parse_gtid(text: &str) -> Option<Gtid> {
    let mut parts = text.trim().split('-');
    let domain = parse_num(parts.next()?)?;
    let server = parse_num(parts.next()?)?;
    let seq = parse_num(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    Some(Gtid {
        domain: u32::try_from(domain).ok()?,
        server: u32::try_from(server).ok()?,
        seq,
    })
}

/// Plain decimal digits only (no sign, no spaces inside).
fn parse_num(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses a comma-separated GTID list; an empty (or all-blank) list is `Some(vec![])`. Any
/// malformed entry makes the whole list `None`: a half-read position would undercount.
pub fn parse_gtid_list(text: &str) -> Option<Vec<Gtid>> {
    // Entries are trimmed one by one, so lists wrapped over lines parse too.
    let text = text.trim();
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',').map(parse_gtid).collect()
}

/// The highest sequence number of `domain` in `list`, if the domain appears.
fn domain_seq(list: &[Gtid], domain: u32) -> Option<u64> {
    list.iter()
        .filter(|g| g.domain == domain)
        .map(|g| g.seq)
        .max()
}

/// Transactions the replica is behind: summed over the primary's domains, the primary's highest
/// sequence number minus the replica's in the same domain (saturating at 0 per domain, and at
/// `u64::MAX` overall). `None` when either list is malformed.
pub fn gtid_behind(primary: &str, replica: &str) -> Option<u64> {
    let primary = parse_gtid_list(primary)?;
    let replica = parse_gtid_list(replica)?;
    let mut domains: Vec<u32> = primary.iter().map(|g| g.domain).collect();
    domains.sort_unstable();
    domains.dedup();
    let total = domains.into_iter().fold(0u64, |acc, d| {
        let p = domain_seq(&primary, d).unwrap_or(0);
        let r = domain_seq(&replica, d).unwrap_or(0);
        acc.saturating_add(p.saturating_sub(r))
    });
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_lists() {
        assert_eq!(
            parse_gtid(" 0-1-42 "),
            Some(Gtid {
                domain: 0,
                server: 1,
                seq: 42
            })
        );
        assert_eq!(parse_gtid_list(""), Some(vec![]));
        assert_eq!(parse_gtid_list("  \n "), Some(vec![]));
        let l = parse_gtid_list("0-1-10,\n1-2-5").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].domain, 1);
        assert_eq!(l[1].seq, 5);
    }

    #[test]
    fn malformed_is_none() {
        for bad in [
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "0--2",
            "0-1-",
            "-0-1-2",
            "0-1-+2",
            "0-1-2,",
            "0-1-2,,1-1-1",
            "0 -1-2",
            "4294967296-1-2",
            "0-1-18446744073709551616",
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5",
        ] {
            assert_eq!(parse_gtid_list(bad), None, "{bad:?}");
            assert_eq!(gtid_behind(bad, "0-1-1"), None, "{bad:?}");
            assert_eq!(gtid_behind("0-1-1", bad), None, "{bad:?}");
        }
    }

    #[test]
    fn single_domain_difference() {
        assert_eq!(gtid_behind("0-1-100", "0-1-100"), Some(0));
        assert_eq!(gtid_behind("0-1-100", "0-1-93"), Some(7));
        // A replica ahead (primary probed a moment earlier) is not negative.
        assert_eq!(gtid_behind("0-1-100", "0-1-101"), Some(0));
        // Nothing written yet anywhere.
        assert_eq!(gtid_behind("", ""), Some(0));
    }

    #[test]
    fn multi_domain_sums_per_domain() {
        assert_eq!(gtid_behind("0-1-100,1-1-50", "0-1-90,1-1-45"), Some(15));
        // Order does not matter; an ahead domain does not offset a behind one.
        assert_eq!(gtid_behind("1-1-50,0-1-100", "0-1-110,1-1-40"), Some(10));
    }

    #[test]
    fn missing_domain_counts_the_whole_domain() {
        assert_eq!(gtid_behind("0-1-100,2-1-30", "0-1-100"), Some(30));
        assert_eq!(gtid_behind("0-1-100", ""), Some(100));
        // Domains only the replica has (other sources) are ignored.
        assert_eq!(gtid_behind("0-1-100", "0-1-100,5-9-1000"), Some(0));
    }

    #[test]
    fn several_servers_in_a_domain_use_the_highest_seq() {
        // After a switchover the binlog lists the old and the new primary in domain 0.
        assert_eq!(gtid_behind("0-1-100,0-2-120", "0-2-115"), Some(5));
        assert_eq!(gtid_behind("0-1-100,0-2-120", "0-1-100"), Some(20));
    }

    #[test]
    fn saturates() {
        let big = format!("0-1-{},1-1-{}", u64::MAX, u64::MAX);
        assert_eq!(gtid_behind(&big, ""), Some(u64::MAX));
    }
}
