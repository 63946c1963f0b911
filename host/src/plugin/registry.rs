//! The version of each dispatcher's plugin that serves now. A reload publishes
//! a new version; each dispatcher thread is woken, finishes the batch in hand on
//! the version it started on, moves the plugin's state over (when it offers
//! snapshot/restore) and drops the old instance.
//!
//! What a reload published and what serves can differ: a thread whose new
//! instance fails to start (its `collector_restore` traps, say) keeps the old
//! one. So each thread reports the version it serves, and `/status` shows those.

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use super::PluginModule;

/// A dispatcher's current plugin version, and what its threads serve.
pub struct PluginSlot {
    generation: watch::Sender<u64>,
    current: RwLock<PluginModule>,
    /// The version each dispatcher thread (instance) serves, by index.
    serving: Mutex<Vec<String>>,
    /// The last state snapshot any thread took, for a reload's trial `restore`.
    latest_state: Mutex<Option<Arc<Vec<u8>>>>,
}

impl PluginSlot {
    pub fn new(module: PluginModule, instances: usize) -> Self {
        let serving = vec![module.hash.clone(); instances];
        PluginSlot {
            generation: watch::Sender::new(0),
            current: RwLock::new(module),
            serving: Mutex::new(serving),
            latest_state: Mutex::new(None),
        }
    }

    /// Bumped by every [`publish`](Self::publish): cheap to poll before each batch.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Completes at every publish (for the dispatcher threads waiting for a batch).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The published version, with its generation.
    pub fn current(&self) -> (u64, PluginModule) {
        let guard = match self.current.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        (self.generation(), guard.clone())
    }

    /// Makes `module` the version for every batch from now on, and wakes the threads.
    pub fn publish(&self, module: PluginModule) {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = module;
        drop(guard);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Hash of the version published last (what a reload tried to install).
    pub fn hash(&self) -> String {
        self.current().1.hash
    }

    /// Records the version thread `index` serves.
    pub fn set_serving(&self, index: usize, hash: &str) {
        let mut s = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = s.get_mut(index) {
            hash.clone_into(slot);
        }
    }

    /// The version each thread serves, by thread index.
    pub fn serving(&self) -> Vec<String> {
        self.serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The version serving, as `/status` shows it: one hash when every thread
    /// agrees, else each thread's (`a, b, a`).
    pub fn serving_summary(&self) -> String {
        let s = self.serving();
        match s.first() {
            Some(first) if s.iter().all(|h| h == first) => first.clone(),
            _ => s.join(", "),
        }
    }

    pub fn set_latest_state(&self, state: Arc<Vec<u8>>) {
        *self.latest_state.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }

    pub fn latest_state(&self) -> Option<Arc<Vec<u8>>> {
        self.latest_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
