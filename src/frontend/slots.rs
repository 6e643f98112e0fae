//! Per-server slots of one session (its backend connections and pools), indexed by server slot
//! and growing when a reload adds servers while the session runs.

use std::ops::{Deref, DerefMut, Index, IndexMut};
use std::sync::Arc;

use crate::pool::Pool;

/// `Option<T>` per server slot. Reading past the end gives `None`; writing past the end grows
/// the slots first, so a server a reload appended is usable by sessions already running.
#[derive(Debug)]
pub struct Slots<T> {
    v: Vec<Option<T>>,
    none: Option<T>,
}

impl<T> Slots<T> {
    pub fn new(n: usize) -> Self {
        Slots {
            v: (0..n).map(|_| None).collect(),
            none: None,
        }
    }
}

impl<C: Send + 'static> Slots<Arc<Pool<C>>> {
    /// Whether the session's pool for server `i` can serve a checkout at once (routing's hint,
    /// see `router::decide_ready`); for a pool the session has not used yet, `unknown` asks the
    /// cluster's pool map (other sessions may keep it busy).
    pub fn ready(&self, i: usize, unknown: impl FnOnce() -> bool) -> bool {
        match &self[i] {
            Some(p) => p.ready(),
            None => unknown(),
        }
    }
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots::new(0)
    }
}

impl<T> Index<usize> for Slots<T> {
    type Output = Option<T>;
    fn index(&self, i: usize) -> &Option<T> {
        self.v.get(i).unwrap_or(&self.none)
    }
}

impl<T> IndexMut<usize> for Slots<T> {
    fn index_mut(&mut self, i: usize) -> &mut Option<T> {
        if i >= self.v.len() {
            self.v.resize_with(i + 1, || None);
        }
        &mut self.v[i]
    }
}

impl<T> Deref for Slots<T> {
    type Target = [Option<T>];
    fn deref(&self) -> &[Option<T>] {
        &self.v
    }
}

impl<T> DerefMut for Slots<T> {
    fn deref_mut(&mut self) -> &mut [Option<T>] {
        &mut self.v
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn reads_past_the_end_are_none_and_writes_grow() {
        let mut s: Slots<u8> = Slots::new(1);
        assert!(s[5].is_none());
        s[3] = Some(7);
        assert_eq!(s.len(), 4);
        assert_eq!(s[3], Some(7));
        assert_eq!(s.iter().flatten().count(), 1);
    }
}
