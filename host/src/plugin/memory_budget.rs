//! One instance's `memory_limit_bytes`, shared by what its memory is made of:
//! its linear memory and tables (grown by the guest, checked by the store's
//! limiter) and the HTTP response bodies the host holds for its open request
//! handles (`collector.http_*`). Both count against the same cap, so a plugin
//! cannot park memory in the host by keeping handles open.
//!
//! Bodies still being received are not counted here: they are bounded by the
//! endpoint's `max_response_bytes` × `max_in_flight`, which the operator sets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The cap and what counts against it now. One per instance; the store is used
/// by one thread at a time, the atomics only let two owners share it.
#[derive(Debug)]
pub struct MemoryBudget {
    limit_bytes: usize,
    wasm_bytes: AtomicUsize,
    held_bytes: AtomicUsize,
}

/// What would have taken the total past the cap: the total it would have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub total_bytes: usize,
    pub limit_bytes: usize,
}

impl MemoryBudget {
    pub fn new(limit_bytes: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit_bytes,
            wasm_bytes: AtomicUsize::new(0),
            held_bytes: AtomicUsize::new(0),
        })
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Bytes of the instance's memories and tables.
    pub fn wasm_bytes(&self) -> usize {
        self.wasm_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of response bodies the host holds for the instance.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes.load(Ordering::Relaxed)
    }

    fn check(&self, delta: usize) -> Result<(), OverBudget> {
        let total = self
            .wasm_bytes()
            .saturating_add(self.held_bytes())
            .saturating_add(delta);
        if total > self.limit_bytes {
            return Err(OverBudget {
                total_bytes: total,
                limit_bytes: self.limit_bytes,
            });
        }
        Ok(())
    }

    /// Memories or tables grow by `delta` bytes, if the total stays within the cap.
    ///
    /// # Errors
    /// [`OverBudget`]: nothing was added.
    pub fn grow_wasm(&self, delta: usize) -> Result<(), OverBudget> {
        Self::add_within(&self.wasm_bytes, delta, || self.check(delta))
    }

    /// Adds `delta` to `counter` if `check` (run on the value it adds to)
    /// passes: a compare-and-swap loop, so two holds racing on the tokio
    /// workers cannot both take the last room.
    fn add_within(
        counter: &AtomicUsize,
        delta: usize,
        check: impl Fn() -> Result<(), OverBudget>,
    ) -> Result<(), OverBudget> {
        let mut refused = None;
        let added = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| match check() {
            Ok(()) => Some(v.saturating_add(delta)),
            Err(over) => {
                refused = Some(over);
                None
            }
        });
        match (added, refused) {
            (Ok(_), _) => Ok(()),
            (Err(_), Some(over)) => Err(over),
            (Err(_), None) => unreachable!("fetch_update fails only when the closure refuses"),
        }
    }

    /// A growth allowed by [`MemoryBudget::grow_wasm`] did not happen after all.
    pub fn shrink_wasm(&self, delta: usize) {
        let _ = self
            .wasm_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(delta))
            });
    }

    /// The host keeps `bytes` of a response body for the instance, if the total
    /// stays within the cap.
    ///
    /// # Errors
    /// [`OverBudget`]: nothing was added.
    pub fn hold(&self, bytes: usize) -> Result<(), OverBudget> {
        Self::add_within(&self.held_bytes, bytes, || self.check(bytes))
    }

    /// A body kept by [`MemoryBudget::hold`] was let go.
    pub fn release(&self, bytes: usize) {
        let _ = self
            .held_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(bytes))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_held_bodies_share_one_cap() {
        let b = MemoryBudget::new(100);
        b.grow_wasm(60).expect("within");
        b.hold(30).expect("within");
        assert_eq!(
            b.hold(11),
            Err(OverBudget {
                total_bytes: 101,
                limit_bytes: 100
            })
        );
        assert!(b.grow_wasm(11).is_err(), "held bodies count against growth");
        b.release(30);
        b.grow_wasm(40).expect("room again once released");
        assert_eq!((b.wasm_bytes(), b.held_bytes()), (100, 0));
        b.shrink_wasm(40);
        assert_eq!(b.wasm_bytes(), 60);
    }
}
