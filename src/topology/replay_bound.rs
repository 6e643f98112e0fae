//! Caps a PostgreSQL replica's reported time lag by when the monitor last saw everything the
//! replica had received already replayed.
//!
//! A replica reports its time lag as `now()` minus the commit time of the last transaction it
//! replayed whenever it has received WAL it has not replayed yet. When that pending WAL holds no
//! commit (a checkpoint or running-transactions record on an idle primary) and the last commit is
//! old, the figure is the age of that commit, not a delay: a replica one record behind after a
//! quiet minute reads as a minute late. [`ReplayBound`] remembers the receive position seen at
//! each probe. Once the replica has replayed up to a probe's receive position, everything still
//! pending arrived after that probe began, so the replica is at most "time since that probe" late.
//! The lag reported is the smaller of the two.

use std::collections::VecDeque;
use std::time::Instant;

/// How many past probes are kept while a replica stays behind; past that, the oldest but one is
/// dropped, which only loosens the bound (an earlier probe gives a larger figure).
const MAX_SEEN: usize = 4096;

/// Receive positions of past probes of one replica, oldest first.
#[derive(Debug, Default)]
pub struct ReplayBound {
    /// (when the probe began, the receive position it saw); positions never decrease.
    seen: VecDeque<(Instant, u64)>,
    last_replay: Option<u64>,
}

impl ReplayBound {
    /// Records a probe begun at `began` that saw `receive` and `replay`, and returns the lag in
    /// seconds to report at `now`: `reported` (PostgreSQL's figure) capped by the time since the
    /// latest earlier probe whose received WAL is all replayed. Without a receive position (no
    /// WAL receiver) nothing bounds the lag and the history starts again.
    pub fn lag(
        &mut self,
        began: Instant,
        now: Instant,
        receive: Option<u64>,
        replay: Option<u64>,
        reported: Option<f64>,
    ) -> Option<f64> {
        let (Some(receive), Some(replay)) = (receive, replay) else {
            self.clear();
            return reported;
        };
        if self.last_replay.is_some_and(|last| replay < last) {
            // Positions went back: a rebuilt replica. Nothing seen before says anything now.
            self.clear();
        }
        self.last_replay = Some(replay);
        while self.seen.get(1).is_some_and(|&(_, r)| r <= replay) {
            self.seen.pop_front();
        }
        let bound = self
            .seen
            .front()
            .filter(|&&(_, r)| r <= replay)
            .map(|&(t, _)| now.saturating_duration_since(t).as_secs_f64());
        self.remember(began, receive);
        match (reported, bound) {
            (Some(r), Some(b)) => Some(r.min(b)),
            (r, b) => r.or(b),
        }
    }

    fn remember(&mut self, began: Instant, receive: u64) {
        match self.seen.back_mut() {
            // A later probe at the same position bounds more tightly.
            Some(last) if last.1 == receive => last.0 = began,
            Some(last) if last.1 > receive => {
                self.seen.clear();
                self.seen.push_back((began, receive));
            }
            _ => self.seen.push_back((began, receive)),
        }
        if self.seen.len() > MAX_SEEN {
            self.seen.remove(1);
        }
    }

    fn clear(&mut self) {
        self.seen.clear();
        self.last_replay = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn a_record_without_commit_after_a_quiet_minute_is_not_a_minute_of_lag() {
        let t0 = Instant::now();
        let mut b = ReplayBound::default();
        // Caught up at 100 for a minute: PostgreSQL says 0.
        for s in 0..60 {
            assert_eq!(
                b.lag(at(t0, s), at(t0, s), Some(100), Some(100), Some(0.0)),
                Some(0.0)
            );
        }
        // One record arrives and is not replayed yet; the last commit is 60 s old.
        let lag = b.lag(at(t0, 60), at(t0, 60), Some(120), Some(100), Some(60.0));
        assert_eq!(lag, Some(1.0), "at most since the last caught-up probe");
    }

    #[test]
    fn a_replica_that_stops_replaying_grows_its_lag() {
        let t0 = Instant::now();
        let mut b = ReplayBound::default();
        b.lag(at(t0, 0), at(t0, 0), Some(100), Some(100), Some(0.0));
        // Replay paused at 100 while writes keep arriving; commits were replayed until 0 s.
        for s in 1..=30 {
            let lag = b.lag(
                at(t0, s),
                at(t0, s),
                Some(100 + s * 10),
                Some(100),
                Some(s as f64),
            );
            assert_eq!(lag, Some(s as f64), "second {s}");
        }
        // Replay catches up to what the probe at 20 s saw: at most 10 s late now.
        let lag = b.lag(at(t0, 30), at(t0, 30), Some(400), Some(300), Some(25.0));
        assert_eq!(lag, Some(10.0));
    }

    #[test]
    fn without_history_or_a_receiver_the_servers_figure_stands() {
        let t0 = Instant::now();
        let mut b = ReplayBound::default();
        assert_eq!(b.lag(t0, t0, Some(120), Some(100), Some(60.0)), Some(60.0));
        assert_eq!(
            b.lag(at(t0, 1), at(t0, 1), None, Some(200), Some(7.0)),
            Some(7.0)
        );
        // The history restarted: the probe without a receiver bounds nothing.
        assert_eq!(
            b.lag(at(t0, 2), at(t0, 2), Some(300), Some(250), Some(9.0)),
            Some(9.0)
        );
    }

    #[test]
    fn an_unknown_server_figure_takes_the_bound() {
        let t0 = Instant::now();
        let mut b = ReplayBound::default();
        b.lag(t0, t0, Some(100), Some(100), Some(0.0));
        assert_eq!(
            b.lag(at(t0, 3), at(t0, 3), Some(150), Some(100), None),
            Some(3.0)
        );
    }

    #[test]
    fn positions_going_back_forget_the_history() {
        let t0 = Instant::now();
        let mut b = ReplayBound::default();
        b.lag(t0, t0, Some(1_000), Some(1_000), Some(0.0));
        // Rebuilt replica: far lower positions; the old probe says nothing about them.
        assert_eq!(
            b.lag(at(t0, 5), at(t0, 5), Some(50), Some(10), Some(40.0)),
            Some(40.0)
        );
        assert_eq!(
            b.lag(at(t0, 6), at(t0, 6), Some(60), Some(50), Some(40.0)),
            Some(1.0)
        );
    }

    #[test]
    fn the_history_stays_bounded_and_only_loosens() {
        let t0 = Instant::now();
        let mut b = ReplayBound::default();
        b.lag(t0, t0, Some(0), Some(0), Some(0.0));
        let n = MAX_SEEN as u64 + 100;
        for s in 1..=n {
            b.lag(at(t0, s), at(t0, s), Some(s), Some(0), Some(s as f64));
        }
        assert!(b.seen.len() <= MAX_SEEN);
        // Replay reached the position of the probe at n - 1: bounded by that probe.
        let lag = b.lag(
            at(t0, n + 1),
            at(t0, n + 1),
            Some(n + 1),
            Some(n - 1),
            Some(1e9),
        );
        assert_eq!(lag, Some(2.0));
    }
}
