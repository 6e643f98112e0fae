//! Prepared statements as the client sees them: proxy-assigned ids, the SQL to re-prepare on other
//! servers, the last parameter types, and buffered long data; and what each server connection
//! holds, keyed by statement text so it outlives the session that prepared it. Pure bookkeeping.

use foldhash::HashMap;
use std::hash::{Hash, Hasher};

use bytes::Bytes;

use crate::classify::Classification;

#[derive(Debug, Clone)]
pub struct Stmt {
    pub sql: Bytes,
    /// [`stmt_key`] of the SQL (and the database it was prepared in): how servers find it.
    pub key: u64,
    pub class: Classification,
    pub params: u16,
    pub columns: u16,
    /// Parameter types from the last EXECUTE that bound them (2 bytes per parameter).
    pub types: Option<Vec<u8>>,
    /// COM_STMT_SEND_LONG_DATA payloads waiting for the next EXECUTE.
    pub long_data: Vec<Bytes>,
}

/// Client statement ids -> statements.
#[derive(Debug, Default)]
pub struct StmtRegistry {
    next_id: u32,
    map: HashMap<u32, Stmt>,
}

impl StmtRegistry {
    /// Register a statement; returns the id the client will use.
    pub fn add(&mut self, stmt: Stmt) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        while self.map.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1).max(1);
        }
        self.map.insert(self.next_id, stmt);
        self.next_id
    }
    pub fn get(&self, id: u32) -> Option<&Stmt> {
        self.map.get(&id)
    }
    pub fn get_mut(&mut self, id: u32) -> Option<&mut Stmt> {
        self.map.get_mut(&id)
    }
    pub fn remove(&mut self, id: u32) -> Option<Stmt> {
        self.map.remove(&id)
    }
    pub fn clear(&mut self) {
        self.map.clear();
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Whether another statement than `id` has this key.
    pub fn shares_key(&self, id: u32, key: u64) -> bool {
        self.map.iter().any(|(i, s)| *i != id && s.key == key)
    }
}

/// The key a server connection files a statement under: its text and the default database it
/// was prepared in (unqualified table names resolve there).
pub fn stmt_key(database: Option<&str>, sql: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    database.hash(&mut h);
    sql.hash(&mut h);
    h.finish()
}

/// One statement prepared on a server connection.
#[derive(Debug, Clone)]
struct ServerStmt {
    id: u32,
    /// Parameter types the server last got for it (it keeps them for EXECUTEs that send none).
    types: Option<Vec<u8>>,
}

/// What one server connection holds: statement key -> server statement id and last bound
/// parameter types. Survives moving between sessions (transaction pooling): any session that
/// prepared the same text finds it here.
#[derive(Debug, Default)]
pub struct ServerStmts {
    by_key: HashMap<u64, ServerStmt>,
    /// Server statements replaced by a newer prepare of the same text, still to be closed on the
    /// server (kept while an open cursor of the session uses one).
    stale: Vec<u32>,
}

impl ServerStmts {
    pub fn server_id(&self, key: u64) -> Option<u32> {
        self.by_key.get(&key).map(|s| s.id)
    }
    /// File a freshly prepared statement. A statement it replaces goes to the stale list.
    pub fn insert(&mut self, key: u64, server: u32) {
        let old = self.by_key.insert(
            key,
            ServerStmt {
                id: server,
                types: None,
            },
        );
        if let Some(old) = old.filter(|o| o.id != server) {
            self.stale.push(old.id);
        }
    }
    /// Whether the server statement's last bound parameter types are `types`.
    pub fn has_types(&self, key: u64, types: &[u8]) -> bool {
        self.by_key
            .get(&key)
            .is_some_and(|s| s.types.as_deref() == Some(types))
    }
    pub fn set_types(&mut self, key: u64, types: Option<&[u8]>) {
        if let Some(e) = self.by_key.get_mut(&key) {
            e.types = types.map(<[u8]>::to_vec);
        }
    }
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        self.by_key.remove(&key).map(|s| s.id)
    }
    /// Forget everything (the server dropped its statements, e.g. after COM_RESET_CONNECTION).
    pub fn clear(&mut self) {
        self.by_key.clear();
        self.stale.clear();
    }
    /// Server statements open on the connection (filed and stale).
    pub fn len(&self) -> usize {
        self.by_key.len() + self.stale.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Take the stale statements for closing, except those `keep` says are still in use.
    pub fn take_stale(&mut self, keep: impl Fn(u32) -> bool) -> Vec<u32> {
        let (kept, gone) = std::mem::take(&mut self.stale)
            .into_iter()
            .partition(|&id| keep(id));
        self.stale = kept;
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Intent, Reason};

    fn stmt() -> Stmt {
        Stmt {
            sql: Bytes::from_static(b"SELECT ?"),
            key: stmt_key(Some("app"), b"SELECT ?"),
            class: Classification {
                intent: Intent::Read,
                reason: Reason::Read,
                hint: None,
            },
            params: 1,
            columns: 1,
            types: None,
            long_data: Vec::new(),
        }
    }

    #[test]
    fn ids_are_unique_and_nonzero() {
        let mut r = StmtRegistry::default();
        let a = r.add(stmt());
        let b = r.add(stmt());
        assert!(a != 0 && b != 0 && a != b);
        assert!(r.get(a).is_some());
        r.remove(a);
        assert!(r.get(a).is_none());
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn server_mapping_and_types() {
        let k = stmt_key(Some("app"), b"SELECT ?");
        assert_ne!(k, stmt_key(Some("other"), b"SELECT ?"));
        assert_ne!(k, stmt_key(Some("app"), b"SELECT ?, ?"));
        let mut s = ServerStmts::default();
        s.insert(k, 77);
        assert_eq!(s.server_id(k), Some(77));
        assert!(!s.has_types(k, &[3, 0]));
        s.set_types(k, Some(&[3, 0]));
        assert!(s.has_types(k, &[3, 0]));
        assert!(!s.has_types(k, &[8, 0]));
        // A second prepare of the same text replaces the first, which waits to be closed.
        s.insert(k, 78);
        assert_eq!(s.server_id(k), Some(78));
        assert_eq!(s.len(), 2);
        assert!(s.take_stale(|id| id == 77).is_empty());
        assert_eq!(s.take_stale(|_| false), vec![77]);
        assert_eq!(s.remove(k), Some(78));
        assert_eq!(s.server_id(k), None);
        assert!(s.is_empty());
    }

    #[test]
    fn registry_knows_shared_keys() {
        let mut r = StmtRegistry::default();
        let a = r.add(stmt());
        assert!(!r.shares_key(a, stmt().key));
        let b = r.add(stmt());
        assert!(r.shares_key(a, stmt().key));
        r.remove(b);
        assert!(!r.shares_key(a, stmt().key));
    }
}
