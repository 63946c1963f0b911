//! Batch buffers, recycled: a sealed batch's bytes go back to a small free list
//! when the last dispatcher is done with them, and the next batch is written
//! into one of them.
//!
//! Why: a batch of 1,000 realistic samples is about 800 KB. Freed, the allocator
//! hands that memory back to the kernel (mimalloc purges it after 10 ms), and the
//! next batch faults it in again: on this machine a profile of the UDP daemon
//! showed a quarter of its CPU in the kernel zeroing fresh (transparent huge)
//! pages under `mi_page_free_list_extend`. A buffer that is never freed is never
//! zeroed again.
//!
//! The free list is bounded ([`MAX_FREE`] buffers, none larger than
//! [`MAX_KEPT_BYTES`]), so it holds at most what a few batches in flight hold
//! anyway; a buffer beyond that is freed as before.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Buffers kept on the free list, at most.
pub const MAX_FREE: usize = 16;
/// A buffer with more capacity than this is freed, not kept.
pub const MAX_KEPT_BYTES: usize = 16 << 20;

static FREE: FreeList = FreeList::new();

/// A bounded list of spare buffers. One global instance serves every batch;
/// the type exists apart so that tests can check the rules on a private list
/// that no other test touches.
struct FreeList(Mutex<Vec<Vec<u8>>>);

impl FreeList {
    const fn new() -> FreeList {
        FreeList(Mutex::new(Vec::new()))
    }

    /// A spare buffer, emptied, with room for at least `capacity` bytes.
    fn take(&self, capacity: usize) -> Option<Vec<u8>> {
        let mut v = self.0.lock().ok()?.pop()?;
        v.clear();
        v.reserve(capacity);
        Some(v)
    }

    /// Keeps `v` for later, unless it is empty, oversized or the list is full.
    fn give(&self, v: Vec<u8>) {
        if v.capacity() == 0 || v.capacity() > MAX_KEPT_BYTES {
            return;
        }
        if let Ok(mut free) = self.0.lock()
            && free.len() < MAX_FREE
        {
            free.push(v);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().map_or(0, |f| f.len())
    }
}

/// A batch's bytes: a `Vec<u8>` that goes back to the free list when dropped.
#[derive(Debug, Default)]
pub struct BatchBytes(Vec<u8>);

impl BatchBytes {
    /// An empty buffer with room for at least `capacity` bytes: a recycled one
    /// when the free list has one.
    pub fn with_capacity(capacity: usize) -> BatchBytes {
        BatchBytes(
            FREE.take(capacity)
                .unwrap_or_else(|| Vec::with_capacity(capacity)),
        )
    }

    /// The bytes, taken out of the pool's care (freed normally when dropped).
    pub fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

impl From<Vec<u8>> for BatchBytes {
    fn from(v: Vec<u8>) -> BatchBytes {
        BatchBytes(v)
    }
}

impl Deref for BatchBytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for BatchBytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for BatchBytes {
    fn drop(&mut self) {
        FREE.give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The rules are checked on a private list: the global one is shared with
    // every other test in this binary that builds a batch.
    #[test]
    fn a_given_buffer_is_handed_out_again_and_the_list_is_bounded() {
        let list = FreeList::new();
        let mut b = Vec::with_capacity(1 << 20);
        b.extend_from_slice(b"old bytes");
        let ptr = b.as_ptr();
        list.give(b);
        let again = list.take(1000).expect("the given buffer is kept");
        assert_eq!(again.as_ptr(), ptr, "the given buffer is reused");
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
        assert!(list.take(1).is_none(), "the list is empty again");

        for _ in 0..MAX_FREE + 5 {
            list.give(vec![1u8; 64]);
        }
        assert_eq!(list.len(), MAX_FREE, "the list stops at MAX_FREE");

        let list = FreeList::new();
        list.give(Vec::with_capacity(MAX_KEPT_BYTES + 1));
        assert_eq!(list.len(), 0, "an oversized buffer is not kept");
        list.give(Vec::new());
        assert_eq!(list.len(), 0, "an unallocated buffer is not kept");
        list.give(Vec::with_capacity(10));
        assert_eq!(list.len(), 1, "a buffer within bounds is kept");
    }

    #[test]
    fn into_vec_keeps_the_bytes() {
        let v = BatchBytes::from(vec![7u8; 3]).into_vec();
        assert_eq!(v, [7, 7, 7]);
    }
}
