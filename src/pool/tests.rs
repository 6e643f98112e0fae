//! Pool tests: bounds, fairness, handing over to waiters, deadlines, reaping.

use super::*;
use prometheus::HistogramOpts;

fn gauges() -> PoolGauges {
    PoolGauges {
        idle: IntGauge::new("i", "i").unwrap(),
        in_use: IntGauge::new("u", "u").unwrap(),
        waiting: IntGauge::new("w", "w").unwrap(),
        size: IntGauge::new("s", "s").unwrap(),
        checkout_seconds: Histogram::with_opts(HistogramOpts::new("h", "h")).unwrap(),
        timeouts: IntCounter::new("t", "t").unwrap(),
    }
}

fn test_cfg(size: usize, checkout_ms: u64) -> PoolConfig {
    PoolConfig {
        size,
        checkout_timeout: Duration::from_millis(checkout_ms),
        ..PoolConfig::default()
    }
}

fn pool(size: usize, checkout_ms: u64) -> Arc<Pool<u32>> {
    Pool::new(test_cfg(size, checkout_ms), gauges(), "u")
}

fn lease_of(c: Checkout<u32>) -> (Option<u32>, Lease<u32>) {
    match c {
        Checkout::Idle(c, l) => (Some(c), l),
        Checkout::Open(l) => (None, l),
    }
}

#[tokio::test]
async fn never_more_than_size_and_idle_reused_lifo() {
    let p = pool(2, 50);
    let (c1, l1) = lease_of(p.checkout().await.unwrap());
    let (c2, l2) = lease_of(p.checkout().await.unwrap());
    assert_eq!((c1, c2), (None, None));
    assert_eq!(p.total(), 2);
    assert!(p.checkout().await.is_err(), "third checkout times out");
    assert_eq!(p.gauges.timeouts.get(), 1);
    p.checkin(1, l1).unwrap();
    p.checkin(2, l2).unwrap();
    assert_eq!(p.idle(), 2);
    let (c, l) = lease_of(p.checkout().await.unwrap());
    assert_eq!(c, Some(2), "last in, first out");
    drop(l); // closed
    assert_eq!(p.total(), 1);
    assert_eq!(p.gauges.idle.get(), 1);
}

#[tokio::test]
async fn waiters_are_served_in_order_by_checkins_and_closes() {
    let p = pool(1, 2000);
    let (_, held) = lease_of(p.checkout().await.unwrap());
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..3u32 {
        let (p, order) = (p.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let got = p.checkout().await.unwrap();
            order.lock().push(i);
            let (c, l) = lease_of(got);
            tokio::time::sleep(Duration::from_millis(5)).await;
            p.checkin(c.unwrap_or(100 + i), l).unwrap();
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(p.gauges.waiting.get(), 3);
    // Closing the held connection lets the first waiter open one; the rest get it handed over.
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock(), vec![0, 1, 2]);
    assert_eq!(p.total(), 1);
    assert_eq!(p.idle(), 1);
}

#[tokio::test]
async fn reap_closes_idle_connections_past_their_limits() {
    let p = Pool::new(
        PoolConfig {
            size: 3,
            idle_timeout: Some(Duration::from_millis(20)),
            ..PoolConfig::default()
        },
        gauges(),
        "u",
    );
    let (_, l) = lease_of(p.checkout().await.unwrap());
    p.checkin(7, l).unwrap();
    assert!(p.reap(Instant::now()).is_empty());
    let later = Instant::now() + Duration::from_millis(30);
    assert_eq!(p.reap(later), vec![7]);
    assert_eq!(p.total(), 0);
}

#[tokio::test]
async fn old_connections_are_not_pooled_again() {
    let p = Pool::new(
        PoolConfig {
            size: 1,
            max_lifetime: Some(Duration::from_millis(10)),
            ..PoolConfig::default()
        },
        gauges(),
        "u",
    );
    let (_, l) = lease_of(p.checkout().await.unwrap());
    tokio::time::sleep(Duration::from_millis(15)).await;
    assert_eq!(p.checkin(9, l), Err(9));
    assert_eq!(p.total(), 0);
}

#[tokio::test]
async fn a_grown_pool_serves_waiters_and_a_shrunk_one_closes_the_surplus() {
    let p = pool(1, 2000);
    let (_, first) = lease_of(p.checkout().await.unwrap());
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { p.checkout().await.ok().map(lease_of) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut bigger = p.stats();
    assert_eq!(bigger.waiting, 1);
    let mut cfg = test_cfg(3, 2000);
    assert!(p.reconfigure(cfg.clone()).is_empty());
    let (_, second) = waiter.await.unwrap().expect("room from the larger size");
    bigger = p.stats();
    assert_eq!((bigger.size, bigger.in_use), (3, 2));
    // Shrink to 1 with two connections out: both come back, only one stays.
    cfg.size = 1;
    assert!(p.reconfigure(cfg).is_empty());
    assert!(p.checkin(7, first).is_err(), "over the new size: closed");
    assert_eq!(p.total(), 1);
    drop(second);
    assert_eq!(p.total(), 0);
}

#[tokio::test]
async fn a_retired_pool_pools_nothing_more() {
    let p = pool(2, 100);
    let (_, a) = lease_of(p.checkout().await.unwrap());
    let (_, b) = lease_of(p.checkout().await.unwrap());
    assert!(p.checkin(1, a).is_ok());
    assert_eq!(p.retire(), vec![1]);
    assert_eq!(p.checkin(2, b), Err(2));
    assert_eq!(p.total(), 0);
}

#[tokio::test]
async fn warm_keeps_min_idle_and_reap_spares_it() {
    let mut cfg = test_cfg(4, 100);
    cfg.min_idle = 2;
    cfg.idle_timeout = Some(Duration::from_secs(1));
    cfg.max_lifetime = Some(Duration::from_secs(3600));
    let p: Arc<Pool<u32>> = Pool::new(cfg, gauges(), "u");
    let opened = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = opened.clone();
    p.set_opener(Warmer {
        open: Arc::new(move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move { Some(n) })
        }),
        close: Arc::new(|_| {}),
    });
    p.warm();
    p.warm();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        (p.idle(), p.total()),
        (2, 2),
        "two warm connections, no more"
    );
    // A third idle one (a client's) goes after idle_timeout; the two warm ones stay.
    let (a, la) = lease_of(p.checkout().await.unwrap());
    let (b, lb) = lease_of(p.checkout().await.unwrap());
    let (_, lc) = lease_of(p.checkout().await.unwrap());
    for (c, l) in [(a.unwrap(), la), (b.unwrap(), lb), (9, lc)] {
        p.checkin(c, l).unwrap();
    }
    let later = Instant::now() + Duration::from_secs(5);
    assert_eq!(p.reap(later).len(), 1);
    assert_eq!(p.idle(), 2);
    // Past max_lifetime even warm ones go (and warm() opens new ones).
    assert_eq!(p.reap(Instant::now() + Duration::from_secs(7200)).len(), 2);
    p.warm();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(p.idle(), 2);
    assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_checkout_dropped_while_in_line_loses_no_slot() {
    use std::future::Future;
    use std::task::{Context, Poll};
    let p = pool(1, 5000);
    let (_, held) = lease_of(p.checkout().await.unwrap());
    // Two checkouts wait in line; both are dropped, one after being handed the connection.
    let mut first = Box::pin(p.checkout());
    let mut second = Box::pin(p.checkout());
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(matches!(first.as_mut().poll(&mut cx), Poll::Pending));
    assert!(matches!(second.as_mut().poll(&mut cx), Poll::Pending));
    assert_eq!(p.gauges.waiting.get(), 2);
    p.checkin(7, held).unwrap();
    drop(first); // it had been granted connection 7: passed on to `second`
    assert_eq!(
        p.gauges.waiting.get(),
        0,
        "the granted waiter left the line"
    );
    drop(second); // granted 7 in turn: back to idle
    assert_eq!(p.gauges.waiting.get(), 0);
    assert_eq!((p.total(), p.idle()), (1, 1));
    let (c, l) = lease_of(p.checkout().await.unwrap());
    assert_eq!(c, Some(7), "the connection stayed pooled");
    drop(l);
    // An empty line and a dropped waiter that was never granted: the gauge goes back to 0.
    let (_, held) = lease_of(p.checkout().await.unwrap());
    let mut third = Box::pin(p.checkout());
    assert!(matches!(third.as_mut().poll(&mut cx), Poll::Pending));
    assert_eq!(p.gauges.waiting.get(), 1);
    drop(third);
    assert_eq!(p.gauges.waiting.get(), 0);
    drop(held);
    assert_eq!(p.total(), 0);
}

#[tokio::test]
async fn ready_says_whether_a_checkout_would_be_served_at_once() {
    let p = pool(1, 2000);
    assert!(p.ready(), "empty pool with room");
    let (_, l) = lease_of(p.checkout().await.unwrap());
    assert!(!p.ready(), "full, nothing idle");
    p.checkin(7, l).unwrap();
    assert!(p.ready(), "one idle");
    let (c, l) = lease_of(p.checkout().await.unwrap());
    assert_eq!(c, Some(7));
    let p2 = p.clone();
    let waiter = tokio::spawn(async move { lease_of(p2.checkout().await.unwrap()) });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!p.ready(), "someone in line");
    p.checkin(7, l).unwrap();
    assert!(!p.ready(), "the checkin went to the one in line");
    let (c, l) = waiter.await.unwrap();
    assert_eq!(c, Some(7));
    drop(l);
    assert!(p.ready(), "closed: room again");
}

#[test]
fn a_fresh_login_replaces_the_report_and_an_older_connection_only_fills_a_gap() {
    let p = pool(1, 2000);
    assert!(p.login_report().is_none(), "nothing logged in yet");
    let report =
        |v: &str| -> LoginReport { Arc::from([("server_version".to_string(), v.to_string())]) };
    p.note_login(false, || report("15.1"));
    assert_eq!(
        p.login_report().unwrap()[0].1,
        "15.1",
        "a warm connection fills the gap"
    );
    p.note_login(false, || report("14.0"));
    assert_eq!(
        p.login_report().unwrap()[0].1,
        "15.1",
        "an older one does not replace it"
    );
    p.note_login(true, || report("15.4"));
    assert_eq!(p.login_report().unwrap()[0].1, "15.4", "a new login does");
}

/// Polls `f` once with a waker that does nothing.
fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(f).poll(&mut cx)
}

/// A pool of one connection, leased out (the lease returned with it).
async fn full_pool(checkout_ms: u64) -> (Arc<Pool<u32>>, Lease<u32>) {
    let p = pool(1, checkout_ms);
    let (_, l) = lease_of(p.checkout().await.unwrap());
    (p, l)
}

#[tokio::test]
async fn a_wait_in_two_lines_is_served_by_either_and_leaves_the_other() {
    let ((a, la), (b, lb)) = (full_pool(5000).await, full_pool(5000).await);
    let both = [a.clone(), b.clone()];
    let mut wait = Box::pin(checkout_first(&both));
    assert!(poll_once(&mut wait).is_pending());
    assert_eq!((a.gauges.waiting.get(), b.gauges.waiting.get()), (1, 1));
    assert!(!a.ready() && !b.ready());
    b.checkin(8, lb).unwrap();
    let std::task::Poll::Ready((i, got)) = poll_once(&mut wait) else {
        panic!("served by b's line");
    };
    let (c, l) = lease_of(got.unwrap());
    assert_eq!((i, c), (1, Some(8)));
    drop(wait);
    assert_eq!((a.gauges.waiting.get(), b.gauges.waiting.get()), (0, 0));
    // a's dead place takes nothing: its next connection goes idle.
    a.checkin(7, la).unwrap();
    assert_eq!((a.idle(), a.total()), (1, 1));
    assert!(a.ready());
    b.checkin(8, l).unwrap();
    assert_eq!(b.idle(), 1);
}

#[tokio::test]
async fn a_wait_in_two_lines_dropped_after_its_grant_gives_the_connection_back() {
    let ((a, la), (b, lb)) = (full_pool(5000).await, full_pool(5000).await);
    let both = [a.clone(), b.clone()];
    let mut wait = Box::pin(checkout_first(&both));
    assert!(poll_once(&mut wait).is_pending());
    a.checkin(7, la).unwrap();
    drop(wait); // granted 7 by a, never taken
    assert_eq!((a.gauges.waiting.get(), b.gauges.waiting.get()), (0, 0));
    assert_eq!((a.idle(), a.total()), (1, 1), "7 went back to a");
    drop(lb);
    assert_eq!(b.total(), 0);
}

#[tokio::test]
async fn a_wait_in_two_lines_times_out_once_on_the_first_pool() {
    let ((a, _la), (b, _lb)) = (full_pool(30).await, full_pool(30).await);
    let (i, got) = checkout_first(&[a.clone(), b.clone()]).await;
    assert_eq!(i, 0);
    assert!(matches!(got, Err(CheckoutTimeout(_, 1))));
    assert_eq!((a.gauges.timeouts.get(), b.gauges.timeouts.get()), (1, 0));
    assert_eq!((a.gauges.waiting.get(), b.gauges.waiting.get()), (0, 0));
}

#[tokio::test]
async fn dead_places_in_a_line_that_serves_nobody_are_swept() {
    let ((a, _la), (b, mut lb)) = (full_pool(5000).await, full_pool(5000).await);
    let both = [a.clone(), b.clone()];
    // a's connection never comes back; b serves one wait after another.
    for _ in 0..1000 {
        let mut wait = Box::pin(checkout_first(&both));
        assert!(poll_once(&mut wait).is_pending());
        b.checkin(8, lb).unwrap();
        let std::task::Poll::Ready((1, got)) = poll_once(&mut wait) else {
            panic!("served by b's line");
        };
        lb = lease_of(got.unwrap()).1;
    }
    let st = a.state.lock();
    assert_eq!(st.waiting, 0);
    assert!(
        st.waiters.len() <= 8,
        "{} dead places kept",
        st.waiters.len()
    );
}
