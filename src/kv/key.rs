//! The store's key type: short keys live inside the map's own nodes.
//!
//! A `BTreeMap<Vec<u8>, _>` compares a probe with a key through the key's
//! heap pointer: at 1M keys nearly every comparison of a search is a cache
//! miss, and the store's searches were the daemons' largest CPU cost
//! (docs/BENCHMARKS.md, "Snapshots"). A key of up to `KEY_INLINE_MAX`
//! bytes is held in place, so a search reads only the nodes it visits.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

/// Keys up to this size are held inline (the type stays 24 bytes, the
/// size of a `Vec`); longer ones (up to `KEY_SIZE_MAX`) on the heap.
pub const KEY_INLINE_MAX: usize = 22;

#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; KEY_INLINE_MAX],
    },
    Heap(Box<[u8]>),
}

const _: () = assert!(KEY_INLINE_MAX <= u8::MAX as usize);
const _: () = assert!(std::mem::size_of::<Key>() <= 24);

impl Key {
    pub fn new(key: &[u8]) -> Key {
        if key.len() > KEY_INLINE_MAX {
            return Key(Repr::Heap(key.into()));
        }
        let mut bytes = [0; KEY_INLINE_MAX];
        bytes[..key.len()].copy_from_slice(key);
        let len = u8::try_from(key.len()).expect("bounded by KEY_INLINE_MAX");
        Key(Repr::Inline { len, bytes })
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(bytes) => bytes,
        }
    }
}

/// Ordered, compared and hashed as its bytes, so that `get(&[u8])` and
/// `range::<[u8], _>` find the keys `Borrow` promises.
impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}", self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Inline and heap keys order exactly as their bytes, across the
    /// boundary and with zero bytes (an inline key's padding is zeros).
    #[test]
    fn keys_order_as_their_bytes_on_both_sides_of_the_inline_bound() {
        let raw: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![7; KEY_INLINE_MAX],
            vec![7; KEY_INLINE_MAX + 1],
            [vec![7; KEY_INLINE_MAX], vec![0]].concat(),
            vec![255; 3],
            vec![255; 300],
        ];
        for a in &raw {
            for b in &raw {
                assert_eq!(Key::new(a).cmp(&Key::new(b)), a.cmp(b), "{a:?} {b:?}");
                assert_eq!(Key::new(a) == Key::new(b), a == b);
            }
            assert_eq!(Key::new(a).as_bytes(), a.as_slice());
        }
        let map: BTreeMap<Key, usize> = raw.iter().map(|k| (Key::new(k), k.len())).collect();
        for k in &raw {
            assert_eq!(map.get(k.as_slice()), Some(&k.len()));
        }
        assert_eq!(map.get([9u8].as_slice()), None);
    }
}
