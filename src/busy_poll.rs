//! Busy polling at low load (`--busy-poll`): after a client request the single-threaded runtime
//! keeps polling its sockets for a while instead of sleeping in the kernel, so the server's answer
//! and the client's next request are read without a wake-up; under load it sleeps as usual.
//!
//! Where the proxy waits in `epoll_wait` between a request and its answer, going to sleep and
//! being woken again is most of what it adds to a query's latency at one client (on a virtual
//! machine, a halted vCPU and an inter-processor interrupt each time). Polling trades that for
//! CPU: while it polls, the proxy keeps one core busy. So it polls only for `window` after the
//! last client request, and only while at most one session waits for a server ([`LOW_LOAD`]):
//! with more, the proxy is seldom idle for long, and a core it polled on would be taken from the
//! servers and clients it may share the host with.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Sessions waiting for a server's answer, over every cluster, above which the proxy does not
/// poll: one client's work at a time.
pub const LOW_LOAD: i64 = 1;

/// The longest polling window accepted.
pub const MAX_WINDOW: Duration = Duration::from_millis(10);

/// How long the poller sleeps before looking again when the load was over [`LOW_LOAD`]; it
/// polls again only when the load never went over it meanwhile.
const LOADED_RECHECK: Duration = Duration::from_millis(10);

/// What the poller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Poll the sockets once more.
    Poll,
    /// Sleep until the next client request.
    Sleep,
    /// Too busy to poll: look again after [`LOADED_RECHECK`].
    Loaded,
}

/// The poller's decision, `quiet` after the last client request; `crowded`: more than
/// [`LOW_LOAD`] sessions waited for a server since the poller last looked.
pub fn next(quiet: Duration, window: Duration, crowded: bool) -> Next {
    if crowded {
        Next::Loaded
    } else if quiet < window {
        Next::Poll
    } else {
        Next::Sleep
    }
}

/// Checks a `--busy-poll` window: at most [`MAX_WINDOW`]; zero turns polling off.
pub fn check_window(window: Duration) -> Result<Option<Duration>, String> {
    if window > MAX_WINDOW {
        return Err(format!(
            "--busy-poll {window:?} is longer than the most allowed, {MAX_WINDOW:?}"
        ));
    }
    Ok((!window.is_zero()).then_some(window))
}

/// The process's poller: sessions [`BusyPoll::kick`] it on each client request.
#[derive(Debug)]
pub struct BusyPoll {
    window: Duration,
    /// Client requests seen (only changes matter).
    requests: AtomicU64,
    /// Sessions waiting for a server's answer (see [`Busy`]).
    waiting: AtomicI64,
    /// `waiting` went over [`LOW_LOAD`] since the poller last looked.
    crowded: AtomicBool,
    /// The poller sleeps until kicked.
    asleep: AtomicBool,
    wake: Notify,
}

/// A session waiting for a server's answer, counted until dropped.
#[derive(Debug)]
pub struct Busy(Arc<BusyPoll>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BusyPoll {
    pub fn new(window: Duration) -> Arc<Self> {
        Arc::new(BusyPoll {
            window,
            requests: AtomicU64::new(0),
            waiting: AtomicI64::new(0),
            crowded: AtomicBool::new(false),
            asleep: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    /// How long polling goes on after a client request.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// A client request came: polling goes on for the window from now (and starts if it slept).
    pub fn kick(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.asleep.load(Ordering::SeqCst) && self.asleep.swap(false, Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    /// Count a session as waiting for a server until the guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= LOW_LOAD {
            self.crowded.store(true, Ordering::Relaxed);
        }
        Busy(self.clone())
    }

    /// Whether more than [`LOW_LOAD`] sessions waited for a server since the last call.
    fn crowded(&self) -> bool {
        self.crowded.swap(false, Ordering::Relaxed)
            || self.waiting.load(Ordering::Relaxed) > LOW_LOAD
    }

    /// Whether the poller sleeps (until the next request).
    pub fn is_asleep(&self) -> bool {
        self.asleep.load(Ordering::SeqCst)
    }

    /// The poller, forever: polls by yielding to the runtime, which then looks at its sockets
    /// without blocking (tokio polls its driver with a zero timeout when the only runnable task
    /// yielded).
    pub async fn run(&self) {
        let mut seen = self.requests.load(Ordering::SeqCst);
        loop {
            self.asleep.store(true, Ordering::SeqCst);
            if self.requests.load(Ordering::SeqCst) == seen {
                // A kick between the two lines above leaves a permit: no request is missed.
                self.wake.notified().await;
            }
            self.asleep.store(false, Ordering::SeqCst);
            let mut last = Instant::now();
            loop {
                tokio::task::yield_now().await;
                let now = self.requests.load(Ordering::SeqCst);
                if now != seen {
                    seen = now;
                    last = Instant::now();
                }
                match next(last.elapsed(), self.window, self.crowded()) {
                    Next::Poll => {}
                    Next::Sleep => break,
                    Next::Loaded => tokio::time::sleep(LOADED_RECHECK).await,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_micros(200);

    #[test]
    fn polls_within_the_window_at_low_load_only() {
        assert_eq!(next(Duration::ZERO, W, false), Next::Poll);
        assert_eq!(next(Duration::from_micros(199), W, false), Next::Poll);
        assert_eq!(next(W, W, false), Next::Sleep);
        assert_eq!(next(Duration::ZERO, W, true), Next::Loaded);
        assert_eq!(next(Duration::from_secs(1), W, true), Next::Loaded);
    }

    #[test]
    fn crowded_remembers_a_peak_until_looked_at() {
        let bp = BusyPoll::new(W);
        let one = bp.busy();
        assert!(!bp.crowded(), "one session waiting is low load");
        let two = bp.busy();
        drop(two);
        assert!(bp.crowded(), "two waited at once, though one is gone now");
        assert!(!bp.crowded(), "looked at: forgotten");
        drop(one);
        assert_eq!(bp.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_window_is_bounded_and_zero_is_off() {
        assert_eq!(check_window(Duration::ZERO), Ok(None));
        assert_eq!(check_window(W), Ok(Some(W)));
        assert_eq!(check_window(MAX_WINDOW), Ok(Some(MAX_WINDOW)));
        let e = check_window(MAX_WINDOW + Duration::from_micros(1)).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..2_000 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the poller never got there");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sleeps_when_quiet_wakes_on_a_request_and_lets_other_tasks_run() {
        let bp = BusyPoll::new(Duration::from_millis(2));
        let poller = {
            let bp = bp.clone();
            tokio::spawn(async move { bp.run().await })
        };
        until(|| bp.is_asleep()).await;
        bp.kick();
        assert!(!bp.is_asleep());
        // While it polls, other tasks (and timers) still run on the one thread.
        let mut ticks = 0;
        while !bp.is_asleep() {
            tokio::time::sleep(Duration::from_micros(100)).await;
            ticks += 1;
        }
        assert!(ticks > 0);
        // Kicked while loaded: it does not poll, and sleeps again once the load is gone.
        let busy: Vec<Busy> = (0..=LOW_LOAD).map(|_| bp.busy()).collect();
        assert_eq!(bp.waiting.load(Ordering::SeqCst), LOW_LOAD + 1);
        bp.kick();
        tokio::task::yield_now().await;
        drop(busy);
        assert_eq!(bp.waiting.load(Ordering::SeqCst), 0);
        until(|| bp.is_asleep()).await;
        poller.abort();
    }
}
