//! What sessions may assume about a cluster's replication positions without asking a server:
//! the primary's latest position with the instant its reading started, and the highest position
//! each replica is known to have replayed (from monitor probes and sessions' own checks).
//!
//! Read-your-writes uses it to choose a server with no extra round trip: after a write, a read
//! may go to a replica only once some reading of the primary that started after the write was
//! answered (so it covers the write's commit) is known to be replayed by that replica; until
//! then the read goes to the primary. PostgreSQL positions are WAL LSNs
//! (`pg_current_wal_insert_lsn()` on the primary, which covers a commit still in WAL buffers
//! under `synchronous_commit = off`; `pg_last_wal_replay_lsn()` on a replica), MariaDB
//! positions GTID lists (`@@gtid_binlog_pos` / `@@gtid_slave_pos`).

use std::time::Instant;

use parking_lot::Mutex;

use crate::config::MAX_SERVER_SLOTS;
pub mod gtid;
pub mod lsn;

use gtid::{parse_gtid_list, Gtid};

/// A replication position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pos {
    /// PostgreSQL WAL LSN.
    Lsn(u64),
    /// MariaDB GTID list (the last GTID per domain; several server ids per domain allowed).
    Gtid(Vec<Gtid>),
}

impl Pos {
    /// A MariaDB position from its text (`domain-server-seq,...`); `None` if malformed.
    pub fn gtid(text: &str) -> Option<Pos> {
        parse_gtid_list(text).map(Pos::Gtid)
    }

    /// Whether a server that replayed `self` has replayed everything up to `target` (of the same
    /// kind; positions of different kinds never cover each other).
    pub fn covers(&self, target: &Pos) -> bool {
        match (self, target) {
            (Pos::Lsn(have), Pos::Lsn(want)) => lsn_covers(*have, *want),
            (Pos::Gtid(have), Pos::Gtid(want)) => want
                .iter()
                .all(|w| domain_seq(have, w.domain).is_some_and(|s| s >= w.seq)),
            _ => false,
        }
    }

    /// `self` raised to everything `other` has too (per domain for GTIDs).
    fn merge(&mut self, other: Pos) {
        match (self, other) {
            (Pos::Lsn(a), Pos::Lsn(b)) => *a = (*a).max(b),
            (Pos::Gtid(a), Pos::Gtid(b)) => {
                for g in b {
                    match a.iter_mut().find(|x| x.domain == g.domain) {
                        Some(x) if x.seq >= g.seq => {}
                        Some(x) => *x = g,
                        None => a.push(g),
                    }
                }
            }
            (me, other) => *me = other,
        }
    }
}

/// A GTID list as MariaDB writes it (`domain-server-seq,...`).
pub fn gtid_text(list: &[Gtid]) -> String {
    let mut out = String::new();
    for (i, g) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{}-{}-{}", g.domain, g.server, g.seq));
    }
    out
}

fn domain_seq(list: &[Gtid], domain: u32) -> Option<u64> {
    list.iter()
        .filter(|g| g.domain == domain)
        .map(|g| g.seq)
        .max()
}

/// Whether a replica whose replay position is `replayed` has every record that ended at or
/// before `target`, a primary's `pg_current_wal_insert_lsn()`.
///
/// At a page boundary the insert position points past the next page's header (24 bytes, 40 at
/// a segment's start) while a replica that replayed everything reports the boundary itself, and
/// would never look caught up on an idle primary. No commit record fits in those bytes (a
/// commit record is longer than 24 bytes, and at a 16 MiB boundary, a page boundary for any page
/// size, the header leaves at most 16), so such a target counts as reached.
pub fn lsn_covers(replayed: u64, target: u64) -> bool {
    const PAGE: u64 = 8192;
    const SEGMENT: u64 = 16 << 20;
    replayed >= target
        || (replayed.is_multiple_of(PAGE) && target - replayed == 24)
        || (replayed.is_multiple_of(SEGMENT) && target - replayed == 40)
}

#[derive(Debug, Default)]
struct Inner {
    /// The latest reading of the primary's position and when its query was sent.
    primary: Option<(Instant, Pos)>,
    /// Per server slot: the highest position the server is known to have replayed.
    replayed: Vec<Option<Pos>>,
}

/// One cluster's known positions, shared by its monitor and its sessions.
#[derive(Debug, Default)]
pub struct Positions {
    inner: Mutex<Inner>,
}

impl Positions {
    /// The primary was at `pos` when a reading sent at `at` ran.
    pub fn primary_seen(&self, at: Instant, pos: Pos) {
        let mut g = self.inner.lock();
        if g.primary.as_ref().is_none_or(|(t, _)| *t <= at) {
            g.primary = Some((at, pos));
        }
    }

    /// Server `server` has replayed at least `pos`.
    pub fn replica_seen(&self, server: usize, pos: Pos) {
        if server >= MAX_SERVER_SLOTS {
            return;
        }
        let mut g = self.inner.lock();
        if g.replayed.len() <= server {
            g.replayed.resize(server + 1, None);
        }
        match &mut g.replayed[server] {
            Some(have) => have.merge(pos),
            slot => *slot = Some(pos),
        }
    }

    /// Forget what is known of server `server` (a reload replaced or removed it).
    pub fn forget(&self, server: usize) {
        let mut g = self.inner.lock();
        if let Some(slot) = g.replayed.get_mut(server) {
            *slot = None;
        }
    }

    /// The primary's position as read by a query sent at or after `since`: it covers every
    /// commit answered before `since`.
    pub fn primary_since(&self, since: Instant) -> Option<Pos> {
        let g = self.inner.lock();
        g.primary
            .as_ref()
            .filter(|(t, _)| *t >= since)
            .map(|(_, p)| p.clone())
    }

    /// Whether server `server` is known to have replayed `target`.
    pub fn replayed(&self, server: usize, target: &Pos) -> bool {
        let g = self.inner.lock();
        g.replayed
            .get(server)
            .and_then(Option::as_ref)
            .is_some_and(|have| have.covers(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_replica_at_a_page_boundary_has_reached_the_insert_position_past_the_header() {
        let page = 5 * 8192;
        assert!(lsn_covers(page, page + 24));
        assert!(!lsn_covers(page + 8, page + 32));
        assert!(!lsn_covers(page - 8, page + 24));
        assert!(!lsn_covers(page, page + 40), "not a segment boundary");
        let seg = 3 * (16 << 20);
        assert!(lsn_covers(seg, seg + 40));
        assert!(lsn_covers(100, 100));
        assert!(!lsn_covers(100, 108));
    }

    #[test]
    fn gtid_positions_compare_per_domain() {
        let p = |t| Pos::gtid(t).unwrap();
        assert!(p("0-1-7,1-2-3").covers(&p("0-1-7")));
        assert!(
            p("0-2-9").covers(&p("0-1-8")),
            "a new server id continues the domain"
        );
        assert!(!p("0-1-6").covers(&p("0-1-7")));
        assert!(
            !p("0-1-9").covers(&p("1-1-1")),
            "a domain the replica lacks"
        );
        assert!(p("").covers(&p("")));
        assert!(!Pos::Lsn(10).covers(&p("")));
    }

    #[test]
    fn readings_of_the_primary_count_only_from_their_start() {
        let k = Positions::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        k.primary_seen(t0, Pos::Lsn(100));
        assert_eq!(k.primary_since(t0), Some(Pos::Lsn(100)));
        assert_eq!(k.primary_since(t1), None);
        k.primary_seen(t1, Pos::Lsn(200));
        // An older reading landing late does not replace a newer one.
        k.primary_seen(t0, Pos::Lsn(150));
        assert_eq!(k.primary_since(t1), Some(Pos::Lsn(200)));
    }

    #[test]
    fn replay_knowledge_only_grows_until_forgotten() {
        let k = Positions::default();
        k.replica_seen(2, Pos::Lsn(300));
        k.replica_seen(2, Pos::Lsn(200));
        assert!(k.replayed(2, &Pos::Lsn(300)));
        assert!(!k.replayed(1, &Pos::Lsn(1)));
        k.forget(2);
        assert!(!k.replayed(2, &Pos::Lsn(1)));
        k.replica_seen(0, Pos::gtid("0-1-5").unwrap());
        k.replica_seen(0, Pos::gtid("0-1-4,1-1-2").unwrap());
        assert!(k.replayed(0, &Pos::gtid("0-1-5,1-1-2").unwrap()));
    }
}
