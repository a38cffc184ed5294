//! The per-connection map, bounded in how many keys it holds.

use std::collections::BTreeMap;

/// How many keys one connection may store; with lines bounded too, this bounds its memory.
pub(crate) const MAX_KEYS: usize = 1024;

/// The store is at [`MAX_KEYS`] and the key is new.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// Keys and values as raw bytes, sorted by key so `KEYS` is ordered.
#[derive(Debug, Default)]
pub(crate) struct Store {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Store {
    /// Sets `key` to `value`, unless that would add a key past [`MAX_KEYS`].
    pub(crate) fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), Full> {
        if let Some(existing) = self.entries.get_mut(key) {
            *existing = value.to_vec();
            return Ok(());
        }
        if self.entries.len() >= MAX_KEYS {
            return Err(Full);
        }
        self.entries.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// Removes `key`, saying whether it was there.
    pub(crate) fn delete(&mut self, key: &[u8]) -> bool {
        self.entries.remove(key).is_some()
    }

    /// All keys, sorted.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.keys().map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full store still accepts updates to existing keys, and room frees up on delete.
    #[test]
    fn bounds_the_number_of_keys() {
        let mut store = Store::default();
        for i in 0..MAX_KEYS {
            store.set(i.to_string().as_bytes(), b"v").unwrap();
        }
        assert_eq!(store.set(b"one more", b"v"), Err(Full));
        assert_eq!(store.set(b"0", b"updated"), Ok(()));
        assert!(store.delete(b"1"));
        assert_eq!(store.set(b"one more", b"v"), Ok(()));
    }
}
