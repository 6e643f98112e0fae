//! Cancel keys: the BackendKeyData the proxy hands each client, and where its query runs now.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::backend::stream::ServerAddr;

/// The server-side key of the backend currently running a client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKey {
    pub addr: ServerAddr,
    pub pid: i32,
    pub secret: i32,
}

/// What a cancel request for one client can act on; the session keeps it current.
#[derive(Debug, Default)]
pub struct CancelState {
    /// The backend running the client's request, once the request is on a server.
    pub key: Option<ServerKey>,
    /// The client has a request not yet answered (it may still be routed, waiting for a pool
    /// slot or a login: then `key` is `None` and a cancel waits for it).
    busy: bool,
    /// Which request: bumped each time the client starts one after being idle.
    request: u64,
}

impl CancelState {
    /// The client sent a request (no-op while one is already unanswered).
    pub fn start(&mut self) {
        if !self.busy {
            self.busy = true;
            self.request = self.request.wrapping_add(1);
        }
    }

    /// The client has nothing unanswered: a cancel now does nothing, as with PostgreSQL.
    pub fn idle(&mut self) {
        self.busy = false;
    }

    /// The request a cancel arriving now is for, if the client has one.
    pub fn busy_request(&self) -> Option<u64> {
        self.busy.then_some(self.request)
    }
}

/// Shared slot a session updates whenever it starts, sends or finishes a request.
pub type CancelSlot = Arc<Mutex<CancelState>>;

/// How often a cancel is sent again while its request is still unanswered: PostgreSQL ignores a
/// cancel that reaches the backend before it starts executing the request.
pub const RESEND_EVERY: std::time::Duration = std::time::Duration::from_millis(25);
/// At most this many cancel requests per client cancel (1 s of re-sends).
pub const MAX_SENDS: u32 = 40;
/// How long a cancel for a client that looks idle waits for its session to read a request the
/// client sent just before the cancel.
pub const IDLE_GRACE: std::time::Duration = std::time::Duration::from_millis(20);
/// How long a cancel waits for its request to reach a server (routing, pool, login...).
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a cancel for the client's request `request` should go now: `None` when the request is
/// answered (or another one started), `Some(None)` while it is not yet on a server.
pub fn target(slot: &CancelSlot, request: u64) -> Option<Option<ServerKey>> {
    let s = slot.lock();
    (s.busy_request() == Some(request)).then(|| s.key.clone())
}

/// Registry of (proxy pid, proxy secret) -> the client's current server key, and of which
/// client last sent a request on each server connection.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<(i32, i32), CancelSlot>>,
    /// (server index, server pid) -> (the pid the proxy gave that client, since when). A
    /// notification names its sender by server pid; its listeners know the sender by the pid
    /// the proxy gave it. Kept after the client leaves (a notifier often disconnects at once).
    senders: Mutex<HashMap<(usize, i32), (i32, Instant)>>,
}

/// Past this many server connections remembered, entries older than [`SENDER_MEMORY`] go.
const SENDERS_CAP: usize = 65_536;
const SENDER_MEMORY: Duration = Duration::from_secs(600);

impl CancelRegistry {
    /// Register a new client; returns its proxy-side key and the slot to update.
    pub fn register(&self) -> ((i32, i32), CancelSlot) {
        let slot: CancelSlot = Arc::new(Mutex::new(CancelState::default()));
        let mut map = self.map.lock();
        loop {
            let key = (rand::random::<i32>() & 0x7fff_ffff, rand::random::<i32>());
            if let std::collections::hash_map::Entry::Vacant(e) = map.entry(key) {
                e.insert(slot.clone());
                return (key, slot);
            }
        }
    }

    pub fn unregister(&self, key: (i32, i32)) {
        self.map.lock().remove(&key);
    }

    /// The client with proxy pid `client_pid` now sends its requests on server `server`'s
    /// connection with pid `server_pid` (called when a session's server connection changes).
    pub fn sent_on(&self, server: usize, server_pid: i32, client_pid: i32) {
        let now = Instant::now();
        let mut senders = self.senders.lock();
        if senders.len() >= SENDERS_CAP {
            senders.retain(|_, (_, since)| now.duration_since(*since) < SENDER_MEMORY);
            if senders.len() >= SENDERS_CAP {
                senders.clear();
            }
        }
        senders.insert((server, server_pid), (client_pid, now));
    }

    /// The proxy pid of the client that last sent a request on server `server`'s connection
    /// with pid `server_pid`, if any did.
    pub fn sender(&self, server: usize, server_pid: i32) -> Option<i32> {
        self.senders
            .lock()
            .get(&(server, server_pid))
            .map(|(pid, _)| *pid)
    }

    /// The slot of a client's (pid, secret), if that client exists.
    pub fn lookup(&self, pid: i32, secret: i32) -> Option<CancelSlot> {
        self.map.lock().get(&(pid, secret)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_known_by_their_client_pid() {
        let r = CancelRegistry::default();
        assert_eq!(r.sender(0, 4242), None);
        r.sent_on(0, 4242, 7);
        r.sent_on(1, 4242, 8);
        assert_eq!(r.sender(0, 4242), Some(7));
        assert_eq!(r.sender(1, 4242), Some(8));
        r.sent_on(0, 4242, 9);
        assert_eq!(r.sender(0, 4242), Some(9), "the connection's latest client");
    }

    #[test]
    fn register_lookup_unregister() {
        let r = CancelRegistry::default();
        let (key, slot) = r.register();
        let found = r.lookup(key.0, key.1).unwrap();
        assert!(Arc::ptr_eq(&found, &slot));
        assert_eq!(found.lock().busy_request(), None);
        let sk = ServerKey {
            addr: ServerAddr::Tcp("127.0.0.1:5432".parse().unwrap()),
            pid: 42,
            secret: 7,
        };
        slot.lock().start();
        let request = slot.lock().busy_request().unwrap();
        assert_eq!(target(&found, request), Some(None));
        slot.lock().key = Some(sk.clone());
        slot.lock().start();
        assert_eq!(target(&found, request), Some(Some(sk)));
        slot.lock().idle();
        assert_eq!(target(&found, request), None);
        slot.lock().start();
        assert_eq!(target(&found, request), None);
        assert!(r.lookup(key.0, key.1.wrapping_add(1)).is_none());
        r.unregister(key);
        assert!(r.lookup(key.0, key.1).is_none());
    }
}
