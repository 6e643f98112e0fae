//! Prepared statements as the client sees them: proxy-assigned ids, the SQL to re-prepare on other
//! servers, the last parameter types, and buffered long data. Pure bookkeeping.

use std::collections::HashMap;

use bytes::Bytes;

use crate::classify::Classification;

#[derive(Debug, Clone)]
pub struct Stmt {
    pub sql: Bytes,
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
}

/// What one server holds of the client's statements: client id -> server id, and whether the
/// server has seen the statement's parameter types.
#[derive(Debug, Default)]
pub struct ServerStmts {
    ids: HashMap<u32, (u32, bool)>,
}

impl ServerStmts {
    pub fn server_id(&self, client: u32) -> Option<u32> {
        self.ids.get(&client).map(|(s, _)| *s)
    }
    pub fn insert(&mut self, client: u32, server: u32) {
        self.ids.insert(client, (server, false));
    }
    pub fn has_types(&self, client: u32) -> bool {
        self.ids.get(&client).is_some_and(|(_, t)| *t)
    }
    pub fn set_types(&mut self, client: u32) {
        if let Some(e) = self.ids.get_mut(&client) {
            e.1 = true;
        }
    }
    pub fn remove(&mut self, client: u32) -> Option<u32> {
        self.ids.remove(&client).map(|(s, _)| s)
    }
    pub fn clear(&mut self) {
        self.ids.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Intent, Reason};

    fn stmt() -> Stmt {
        Stmt {
            sql: Bytes::from_static(b"SELECT ?"),
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
        let mut s = ServerStmts::default();
        s.insert(1, 77);
        assert_eq!(s.server_id(1), Some(77));
        assert!(!s.has_types(1));
        s.set_types(1);
        assert!(s.has_types(1));
        assert_eq!(s.remove(1), Some(77));
        assert_eq!(s.server_id(1), None);
    }
}
