//! A cache whose values are made at most once at a time per key.
//!
//! Two threads that miss the cache for the same key together would both make the
//! value (for a pipeline: both compile it, seconds each on lavapipe). Here the
//! second waits for the first and takes its value. A failed make leaves the key
//! empty, so the next caller tries again and sees the error for itself.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, TryLockError};

use crate::error::Result;

/// One key's value, locked while it is being made.
type Slot<V> = Arc<Mutex<Option<V>>>;

pub(crate) struct OnceMap<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
}

impl<K, V> Default for OnceMap<K, V> {
    fn default() -> Self {
        OnceMap {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> OnceMap<K, V> {
    fn slot(&self, key: &K) -> Slot<V> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.get(key) {
            return s.clone();
        }
        slots.entry(key.clone()).or_default().clone()
    }

    /// The value of `key` if it is made; `None` if it is not, or is being made
    /// right now (never waits).
    pub fn get(&self, key: &K) -> Option<V> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)?
            .clone();
        match slot.try_lock() {
            Ok(v) => v.clone(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().clone(),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The value of `key`, made by `make` if no thread has made it; waits while
    /// another thread is making it.
    pub fn get_or_make(&self, key: &K, make: impl FnOnce() -> Result<V>) -> Result<V> {
        let slot = self.slot(key);
        let mut value = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = value.as_ref() {
            return Ok(v.clone());
        }
        let v = make()?;
        *value = Some(v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn threads_asking_together_make_the_value_once() {
        let map: OnceMap<u32, u32> = OnceMap::default();
        let made = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let v = map
                        .get_or_make(&7, || {
                            made.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(50));
                            Ok(49)
                        })
                        .unwrap();
                    assert_eq!(v, 49);
                });
            }
        });
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert_eq!(map.get(&7), Some(49));
        assert_eq!(map.get(&8), None);
    }

    #[test]
    fn a_failed_make_leaves_the_key_empty_for_the_next_caller() {
        let map: OnceMap<u32, u32> = OnceMap::default();
        let err = map.get_or_make(&1, || Err(crate::Error::invalid("no")));
        assert!(err.is_err());
        assert_eq!(map.get(&1), None);
        assert_eq!(map.get_or_make(&1, || Ok(2)).unwrap(), 2);
        assert_eq!(map.get_or_make(&1, || Ok(3)).unwrap(), 2);
    }

    #[test]
    fn a_value_being_made_is_not_served_and_not_waited_for() {
        let map: OnceMap<u32, u32> = OnceMap::default();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let shared = &map;
        std::thread::scope(|s| {
            s.spawn(move || {
                shared
                    .get_or_make(&5, || {
                        started_tx.send(()).unwrap();
                        finish_rx.recv().unwrap();
                        Ok(6)
                    })
                    .unwrap()
            });
            started_rx.recv().unwrap();
            assert_eq!(map.get(&5), None);
            finish_tx.send(()).unwrap();
        });
        assert_eq!(map.get(&5), Some(6));
    }
}
