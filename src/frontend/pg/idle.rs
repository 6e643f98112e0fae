//! `idle_session_timeout` as the client sees it: a session idle (outside a transaction, nothing
//! in flight) for longer than its timeout is ended by the proxy with the server's FATAL 57P05,
//! as the server would end it. The proxy cannot leave it to the servers: a session's server
//! connections idle on their own clocks (a replica's while the client works on the primary),
//! and a pooled one killed for idleness would just be replaced.
//!
//! Known from the session's own `SET` / `RESET` texts and its startup packet; a timeout from
//! `ALTER ROLE/DATABASE ... SET` or postgresql.conf is not seen (the servers' kills of idle
//! server connections are then absorbed by the proxy, as before).

use std::time::{Duration, Instant};

use crate::classify::pg_setting::{duration_ms, setting_change, startup_setting, SettingChange};

use super::*;

const SETTING: &str = "idle_session_timeout";

/// The session's idle timeout (fields of [`Relay`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct IdleLimit {
    /// From the startup packet (what `RESET` goes back to).
    startup: Option<Duration>,
    /// The session's own `SET` (`None`: the startup value applies; `Some(None)`: off, or a value
    /// not read).
    set: Option<Option<Duration>>,
    /// Since when the session is idle, while it is.
    since: Option<Instant>,
}

fn parse(value: &str) -> Option<Duration> {
    duration_ms(value, 1.0)
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

impl IdleLimit {
    /// From the startup packet; `None` (no allocation) when it sets no timeout, as for most
    /// sessions (the session task stays small).
    pub(super) fn new(params: &[(String, String)]) -> Option<Box<Self>> {
        let startup = startup_setting(params, SETTING).and_then(|v| parse(&v))?;
        Some(Box::new(IdleLimit {
            startup: Some(startup),
            ..IdleLimit::default()
        }))
    }

    /// A session-setting text the server accepted outside a transaction.
    pub(super) fn apply(me: &mut Option<Box<Self>>, text: &str) {
        let set = match setting_change(text, SETTING) {
            Some(SettingChange::Set(v)) => Some(parse(&v)),
            Some(SettingChange::Reset) => None,
            Some(SettingChange::Unreadable) => Some(None),
            None => return,
        };
        if me.is_none() && set.is_none() {
            return;
        }
        me.get_or_insert_with(Box::default).set = set;
    }

    /// When an idle session times out (`None`: not idle, or no timeout): the clock starts when
    /// the session becomes idle.
    pub(super) fn deadline(&mut self, idle: bool) -> Option<Instant> {
        if !idle {
            self.since = None;
            return None;
        }
        let limit = self.set.unwrap_or(self.startup)?;
        Some(*self.since.get_or_insert_with(Instant::now) + limit)
    }

    /// The client sent something: the idle clock starts again.
    pub(super) fn active(&mut self) {
        self.since = None;
    }
}

/// The server's own words when it ends an idle session.
pub(super) fn timed_out() -> ClientError {
    ClientError::fatal(
        "57P05",
        "terminating connection due to idle-session timeout",
        ErrorKind::Timeout,
    )
}
