//! Cancel keys: the BackendKeyData the proxy hands each client, and where its query runs now.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::backend::stream::ServerAddr;

/// The server-side key of the backend currently running a client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKey {
    pub addr: ServerAddr,
    pub pid: i32,
    pub secret: i32,
}

/// Shared slot a session updates whenever it sends a request to a backend.
pub type CancelSlot = Arc<Mutex<Option<ServerKey>>>;

/// Registry of (proxy pid, proxy secret) -> the client's current server key.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<(i32, i32), CancelSlot>>,
}

impl CancelRegistry {
    /// Register a new client; returns its proxy-side key and the slot to update.
    pub fn register(&self) -> ((i32, i32), CancelSlot) {
        let slot: CancelSlot = Arc::new(Mutex::new(None));
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

    /// The server key to cancel for a client's (pid, secret), if that client exists and is busy.
    pub fn lookup(&self, pid: i32, secret: i32) -> Option<ServerKey> {
        let slot = self.map.lock().get(&(pid, secret)).cloned()?;
        let key = slot.lock().clone();
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_lookup_unregister() {
        let r = CancelRegistry::default();
        let (key, slot) = r.register();
        assert_eq!(r.lookup(key.0, key.1), None);
        let sk = ServerKey {
            addr: ServerAddr::Tcp("127.0.0.1:5432".parse().unwrap()),
            pid: 42,
            secret: 7,
        };
        *slot.lock() = Some(sk.clone());
        assert_eq!(r.lookup(key.0, key.1), Some(sk));
        assert_eq!(r.lookup(key.0, key.1.wrapping_add(1)), None);
        r.unregister(key);
        assert_eq!(r.lookup(key.0, key.1), None);
    }
}
