//! The drain signal (SIGTERM) as sessions wait for it: each idle session polls its own flag and
//! waker, so the wait it re-enters on every request costs an atomic load and a waker check
//! instead of a lock (a `CancellationToken` future takes its mutex at every poll).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use parking_lot::Mutex;

/// One cluster's drain: fired once, wakes every session waiting for it.
#[derive(Default)]
pub struct Drain {
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    fired: bool,
    /// Sessions' slots; dead ones are pruned when the list has doubled since the last prune.
    slots: Vec<Weak<Slot>>,
    pruned_at: usize,
}

#[derive(Default)]
struct Slot {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl std::fmt::Debug for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Drain(fired: {})", self.inner.lock().fired)
    }
}

impl Drain {
    /// A session's wait: ready once [`fire`](Self::fire) has been called (at once if it was).
    pub fn wait(&self) -> DrainWait {
        let slot = Arc::new(Slot::default());
        let mut reg = self.inner.lock();
        if reg.fired {
            slot.fired.store(true, Ordering::Release);
        } else {
            if reg.slots.len() >= 2 * reg.pruned_at.max(64) {
                reg.slots.retain(|s| s.strong_count() > 0);
                reg.pruned_at = reg.slots.len();
            }
            reg.slots.push(Arc::downgrade(&slot));
        }
        DrainWait { slot }
    }

    /// The drain began: every waiting session (and every later one) becomes ready.
    pub fn fire(&self) {
        let slots = {
            let mut reg = self.inner.lock();
            reg.fired = true;
            std::mem::take(&mut reg.slots)
        };
        for slot in slots.iter().filter_map(Weak::upgrade) {
            slot.fired.store(true, Ordering::Release);
            slot.waker.wake();
        }
    }
}

/// One session's wait for the drain; poll it as often as needed.
pub struct DrainWait {
    slot: Arc<Slot>,
}

impl Future for DrainWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.slot.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.slot.waker.register(cx.waker());
        // Fired between the check and the registration: the wake may have found no waker.
        if self.slot.fired.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_until_fired_and_later_waits_are_ready_at_once() {
        let drain = Arc::new(Drain::default());
        let mut w = drain.wait();
        let pending = tokio::time::timeout(Duration::from_millis(20), &mut w).await;
        assert!(pending.is_err(), "not fired yet");
        let waiter = tokio::spawn(w);
        tokio::task::yield_now().await;
        drain.fire();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by fire")
            .expect("task");
        tokio::time::timeout(Duration::from_millis(100), drain.wait())
            .await
            .expect("a wait made after the drain is ready at once");
    }

    #[tokio::test]
    async fn ended_sessions_are_pruned() {
        let drain = Drain::default();
        for _ in 0..1000 {
            drop(drain.wait());
        }
        let kept = drain.wait();
        assert!(drain.inner.lock().slots.len() <= 130, "dead slots pruned");
        drain.fire();
        tokio::time::timeout(Duration::from_millis(100), kept)
            .await
            .expect("a live waiter is still fired");
    }
}
