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

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A batch's bytes: a `Vec<u8>` that goes back to the free list when dropped.
#[derive(Debug, Default)]
pub struct BatchBytes(Vec<u8>);

impl BatchBytes {
    /// An empty buffer with room for at least `capacity` bytes: a recycled one
    /// when the free list has one.
    pub fn with_capacity(capacity: usize) -> BatchBytes {
        let recycled = FREE.lock().ok().and_then(|mut free| free.pop());
        match recycled {
            Some(mut v) => {
                v.clear();
                v.reserve(capacity);
                BatchBytes(v)
            }
            None => BatchBytes(Vec::with_capacity(capacity)),
        }
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
        let v = std::mem::take(&mut self.0);
        if v.capacity() == 0 || v.capacity() > MAX_KEPT_BYTES {
            return;
        }
        if let Ok(mut free) = FREE.lock()
            && free.len() < MAX_FREE
        {
            free.push(v);
        }
    }
}

/// Buffers on the free list now (for tests).
pub fn free_buffers() -> usize {
    FREE.lock().map_or(0, |f| f.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_handed_out_again_and_the_list_is_bounded() {
        // One test touches the global list, so that no other test races it.
        let b = BatchBytes::with_capacity(1 << 20);
        let ptr = b.as_ptr();
        drop(b);
        let again = BatchBytes::with_capacity(1000);
        assert_eq!(again.as_ptr(), ptr, "the freed buffer is reused");
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
        drop(again);

        let many: Vec<BatchBytes> = (0..MAX_FREE + 5)
            .map(|_| BatchBytes::from(vec![1u8; 64]))
            .collect();
        drop(many);
        assert!(free_buffers() <= MAX_FREE);

        let held: Vec<BatchBytes> = (0..free_buffers())
            .map(|_| BatchBytes::with_capacity(1))
            .collect();
        assert_eq!(free_buffers(), 0);
        drop(BatchBytes::from(Vec::with_capacity(MAX_KEPT_BYTES + 1)));
        assert_eq!(free_buffers(), 0, "an oversized buffer is not kept");
        drop(BatchBytes::from(Vec::with_capacity(10)));
        assert_eq!(free_buffers(), 1, "a buffer within bounds is kept");
        drop(held);

        let v = BatchBytes::from(vec![7u8; 3]).into_vec();
        assert_eq!(v, [7, 7, 7], "into_vec keeps the bytes");
    }
}
