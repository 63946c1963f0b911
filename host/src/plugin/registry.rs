//! The version of each dispatcher's plugin that serves now. A reload publishes
//! a new version; each dispatcher thread notices it between two batches, moves
//! the plugin's state over (when it offers snapshot/restore) and drops the old
//! instance. The batch in flight always finishes on the version it started on.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::PluginModule;

/// A dispatcher's current plugin version.
pub struct PluginSlot {
    generation: AtomicU64,
    current: RwLock<PluginModule>,
}

impl PluginSlot {
    pub fn new(module: PluginModule) -> Self {
        PluginSlot {
            generation: AtomicU64::new(0),
            current: RwLock::new(module),
        }
    }

    /// Bumped by every [`publish`](Self::publish): cheap to poll before each batch.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The version serving now, with its generation.
    pub fn current(&self) -> (u64, PluginModule) {
        let guard = match self.current.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        (self.generation(), guard.clone())
    }

    /// Makes `module` the version for every batch from now on.
    pub fn publish(&self, module: PluginModule) {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = module;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Hash of the version serving now.
    pub fn hash(&self) -> String {
        self.current().1.hash
    }
}
