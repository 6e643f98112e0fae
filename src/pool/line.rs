//! Waiting in line: one checkout holds one [`Ticket`] with a place in the line of every pool it
//! may take a connection from; the first pool to serve the ticket fills it, the others find it
//! closed and pass over it. One allocation and one deadline per wait, however many lines.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use parking_lot::Mutex;

use super::{Checked, Checkout, CheckoutTimeout, Pool};

/// What a pool hands the first ticket in its line.
pub(super) enum Grant<C: Send + 'static> {
    /// A pooled connection and when it was opened.
    Conn(C, Instant),
    /// Room to open a new connection.
    Open,
}

enum Served<C: Send + 'static> {
    /// Still in line; whom to wake when served.
    Waiting(Option<Waker>),
    /// Served by the pool of this line (an index into the checkout's pools).
    Granted(usize, Grant<C>),
    /// The grant was taken, or the checkout gave up.
    Closed,
}

/// One checkout's wait, shared by its places in several lines.
pub(super) struct Ticket<C: Send + 'static> {
    state: Mutex<Served<C>>,
}

/// A ticket's place in the line of one pool (its `line` index in the checkout's pools).
pub(super) struct Place<C: Send + 'static> {
    ticket: Arc<Ticket<C>>,
    line: usize,
}

impl<C: Send + 'static> Place<C> {
    /// Serve the ticket; the grant comes back when the ticket no longer waits (served by another
    /// line, or given up).
    pub(super) fn serve(self, grant: Grant<C>) -> Result<(), Grant<C>> {
        let mut st = self.ticket.state.lock();
        let Served::Waiting(waker) = &mut *st else {
            return Err(grant);
        };
        let waker = waker.take();
        *st = Served::Granted(self.line, grant);
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Whether the ticket still waits (else this place is dead and only takes room).
    pub(super) fn is_waiting(&self) -> bool {
        matches!(*self.ticket.state.lock(), Served::Waiting(_))
    }
}

impl<C: Send + 'static> Ticket<C> {
    fn new() -> Arc<Self> {
        Arc::new(Ticket {
            state: Mutex::new(Served::Waiting(None)),
        })
    }

    fn poll_grant(&self, cx: &mut Context<'_>) -> Poll<(usize, Grant<C>)> {
        let mut st = self.state.lock();
        match &mut *st {
            Served::Waiting(w) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Served::Granted(..) => match std::mem::replace(&mut *st, Served::Closed) {
                Served::Granted(line, grant) => Poll::Ready((line, grant)),
                _ => Poll::Pending,
            },
            Served::Closed => Poll::Pending,
        }
    }

    /// Stop waiting; a grant that was already made is returned.
    fn close(&self) -> Option<(usize, Grant<C>)> {
        match std::mem::replace(&mut *self.state.lock(), Served::Closed) {
            Served::Granted(line, grant) => Some((line, grant)),
            _ => None,
        }
    }
}

/// The places a checkout holds in the lines of `pools[..joined]`. Dropped (the checkout is
/// done, timed out or was dropped itself), it gives up every place except the line that
/// `served` it, and hands a grant nobody took back to the pool that made it, so no slot is lost.
struct InLine<'a, C: Send + 'static> {
    pools: &'a [Arc<Pool<C>>],
    ticket: Option<Arc<Ticket<C>>>,
    joined: usize,
    served: Option<usize>,
}

impl<C: Send + 'static> InLine<'_, C> {
    /// A place in the line of pool `line` (the ticket is made on the first).
    fn place(&mut self, line: usize) -> Place<C> {
        let ticket = self.ticket.get_or_insert_with(Ticket::new).clone();
        Place { ticket, line }
    }
}

impl<C: Send + 'static> Drop for InLine<'_, C> {
    fn drop(&mut self) {
        if let Some((line, grant)) = self.ticket.as_ref().and_then(|t| t.close()) {
            // Served, but not taken: the slot goes back (to the next in that line).
            self.pools[line].hand_back(grant);
            self.served = Some(line);
        }
        for (i, pool) in self.pools[..self.joined].iter().enumerate() {
            if Some(i) != self.served {
                pool.leave_line();
            }
        }
    }
}

/// Take a connection (or room for one) from the first of `pools` that has one; else wait in
/// the lines of all of them, under the first pool's `checkout_timeout`, and take the first
/// served: its index in `pools`, and what it came to.
pub async fn checkout_first<C: Send + 'static>(pools: &[Arc<Pool<C>>]) -> (usize, Checked<C>) {
    let mut line = InLine {
        pools,
        ticket: None,
        joined: 0,
        served: None,
    };
    for (i, pool) in pools.iter().enumerate() {
        if let Some(got) = pool.take_or_join(|| line.place(i)) {
            return (i, Ok(got));
        }
        line.joined = i + 1;
    }
    // Waiting is the rarer path and its future (a timer among others) is large: boxed, so the
    // sessions' tasks, which await a checkout, stay small.
    Box::pin(wait(line)).await
}

/// Wait with the places `line` holds until one is served or the first pool's deadline passes.
async fn wait<C: Send + 'static>(mut line: InLine<'_, C>) -> (usize, Checked<C>) {
    let pools = line.pools;
    let Some(ticket) = line.ticket.as_deref() else {
        // No pools: nothing can serve.
        return (0, Err(CheckoutTimeout(Default::default(), 0)));
    };
    let (limit, size) = pools[0].wait_limits();
    // Only a wait reads the clock: the wait histogram counts only waits.
    let started = Instant::now();
    let waited =
        tokio::time::timeout(limit, std::future::poll_fn(|cx| ticket.poll_grant(cx))).await;
    // Timed out: a grant that raced with the deadline is still taken.
    let Some((i, grant)) = waited.ok().or_else(|| ticket.close()) else {
        drop(line);
        pools[0].timed_out();
        return (0, Err(CheckoutTimeout(limit, size)));
    };
    line.served = Some(i);
    drop(line);
    let pool = &pools[i];
    pool.waited(started.elapsed());
    let got = match grant {
        Grant::Conn(c, born) => Checkout::Idle(c, pool.lease(born)),
        Grant::Open => Checkout::Open(pool.lease(Instant::now())),
    };
    (i, Ok(got))
}
