//! The write gate of one cluster: sessions pass it while they have work on the primary; a
//! switchover closes it, which waits for that work to finish and holds new work until it reopens.
//!
//! A fair async read/write lock: a session holds a read guard from its first statement on the
//! primary until the server reports no open transaction; a switchover takes the write guard. Once a
//! switchover waits, new sessions queue behind it (that is the hold), and it gets the gate only when
//! every open transaction on the primary has ended.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// Held by a session while it has work on the primary.
pub type Pass = OwnedRwLockReadGuard<()>;
/// Held by a switchover while writes are held.
pub type Closed = OwnedRwLockWriteGuard<()>;

#[derive(Debug, Clone, Default)]
pub struct WriteGate {
    lock: Arc<RwLock<()>>,
}

impl WriteGate {
    /// Pass the gate, waiting up to `hold` while a switchover holds it. `Ok((pass, waited))`.
    pub async fn enter(&self, hold: Duration) -> Result<(Pass, bool), Duration> {
        if let Ok(p) = self.lock.clone().try_read_owned() {
            return Ok((p, false));
        }
        match tokio::time::timeout(hold, self.lock.clone().read_owned()).await {
            Ok(p) => Ok((p, true)),
            Err(_) => Err(hold),
        }
    }

    /// Close the gate: wait (up to `timeout`) until no session has work on the primary; sessions
    /// arriving meanwhile wait. `Err` = still busy after `timeout` (the gate stays open).
    pub async fn close(&self, timeout: Duration) -> Result<Closed, Duration> {
        tokio::time::timeout(timeout, self.lock.clone().write_owned())
            .await
            .map_err(|_| timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn close_waits_for_passes_and_holds_newcomers() {
        let gate = WriteGate::default();
        let (pass, waited) = gate.enter(Duration::from_millis(10)).await.expect("open");
        assert!(!waited);
        // Busy: closing times out and leaves the gate open.
        assert!(gate.close(Duration::from_millis(20)).await.is_err());
        assert!(gate.enter(Duration::from_millis(10)).await.is_ok());
        let g2 = gate.clone();
        let closer = tokio::spawn(async move { g2.close(Duration::from_secs(5)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A switchover waits: newcomers are held (and time out after their hold).
        assert!(gate.enter(Duration::from_millis(20)).await.is_err());
        drop(pass);
        assert!(closer.await.expect("join"));
        // Reopened after the closer dropped its guard.
        let (_p, _) = gate
            .enter(Duration::from_millis(10))
            .await
            .expect("reopened");
    }

    #[tokio::test]
    async fn a_held_session_passes_when_the_gate_reopens() {
        let gate = WriteGate::default();
        let closed = gate
            .close(Duration::from_millis(10))
            .await
            .expect("idle gate closes");
        let g2 = gate.clone();
        let waiter =
            tokio::spawn(async move { g2.enter(Duration::from_secs(5)).await.map(|(_, w)| w) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(closed);
        assert_eq!(waiter.await.expect("join"), Ok(true));
    }
}
