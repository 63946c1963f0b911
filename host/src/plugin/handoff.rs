//! The instance one dispatcher thread serves with, and the state that goes from
//! one instance to the next (ABI §5.7–5.8): a snapshot after every accepted
//! batch; a new instance, after a failure or when a reload published a new
//! version, restores the last one. A snapshot that fails drops the instance, as
//! a trap would, and is counted; after [`SNAPSHOT_GIVE_UP`] failures in a row the
//! version's snapshots stop, so a looping `collector_snapshot` cannot cost every
//! batch a full timeout. A new version that cannot start on this thread leaves
//! it on the old one (and `/status` shows which version each thread serves).

use std::sync::Arc;

use super::{
    CallOutcome, Failure, Instance, InstanceSettings, PluginError, PluginModule, PluginSlot,
};
use crate::telemetry::DispatcherStats;
use crate::telemetry::events::{RestoreFailed, RestoreFallback, SnapshotFailed};

/// Failed snapshots in a row after which a version's snapshots are no longer taken.
pub const SNAPSHOT_GIVE_UP: u32 = 3;

/// One thread's plugin: its version, instance and saved state.
pub struct Serving {
    /// Where reloads publish new versions.
    slot: Arc<PluginSlot>,
    /// This thread's index among the dispatcher's instances.
    index: usize,
    /// The slot generation this thread serves.
    generation: u64,
    module: PluginModule,
    settings: InstanceSettings,
    /// None after a failure: the next call makes a new one.
    instance: Option<Instance>,
    /// The plugin's last snapshot (plugins that export `collector_snapshot`).
    state: Option<Arc<Vec<u8>>>,
    /// Snapshots of the serving version that failed in a row.
    snapshot_failures: u32,
    stats: Arc<DispatcherStats>,
}

/// Why a new instance could not take over.
enum StartFailure {
    Init(PluginError),
    /// Its `collector_restore` trapped or timed out on the saved state.
    Restore(Failure),
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartFailure::Init(e) => write!(f, "{e}"),
            StartFailure::Restore(e) => write!(f, "collector_restore {e}"),
        }
    }
}

impl Serving {
    /// Thread `index` of a dispatcher, serving `instance` of the slot's current version.
    pub fn new(
        slot: Arc<PluginSlot>,
        index: usize,
        instance: Instance,
        settings: InstanceSettings,
        stats: Arc<DispatcherStats>,
    ) -> Serving {
        let (generation, module) = slot.current();
        slot.set_serving(index, &module.hash);
        Serving {
            slot,
            index,
            generation,
            module,
            settings,
            instance: Some(instance),
            state: None,
            snapshot_failures: 0,
            stats,
        }
    }

    /// The deadline of one call.
    pub fn timeout(&self) -> std::time::Duration {
        self.settings.timeout
    }

    /// A receiver that changes when a reload publishes a new version.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.slot.subscribe()
    }

    /// Drops the instance (it trapped, timed out or panicked): the next call gets a
    /// new one, from the last snapshot.
    pub fn discard(&mut self) {
        self.instance = None;
    }

    /// Moves to the version a reload published, if there is one: the serving
    /// instance's state is snapshotted, a new instance restores it, and the old one
    /// is dropped. If the new version cannot start here, this thread keeps the old.
    pub fn switch_version(&mut self) {
        if self.slot.generation() == self.generation {
            return;
        }
        let (generation, module) = self.slot.current();
        self.generation = generation;
        self.take_snapshot();
        match self.fresh_instance(&module) {
            Ok(inst) => {
                tracing::info!(
                    dispatcher = %self.stats.name, thread = self.index, version = %module.hash,
                    previous = %self.module.hash, "Dispatcher thread now serves the new plugin version"
                );
                self.instance = Some(inst);
                self.module = module;
                self.snapshot_failures = 0;
                self.slot.set_serving(self.index, &self.module.hash);
            }
            Err(StartFailure::Restore(f)) => RestoreFailed {
                version: &module.hash,
                error: &format_args!("collector_restore {f}"),
                fallback: RestoreFallback::KeptOldVersion,
            }
            .emit(&self.stats),
            Err(e @ StartFailure::Init(_)) => tracing::error!(
                dispatcher = %self.stats.name, thread = self.index, version = %module.hash,
                kept = %self.module.hash,
                "New plugin version failed to start on this thread; it keeps serving the old one: {}",
                crate::telemetry::Untrusted(&e.to_string())
            ),
        }
    }

    /// A new instance of `module`, given the last state snapshot if there is one.
    fn fresh_instance(&self, module: &PluginModule) -> Result<Instance, StartFailure> {
        let mut inst = Instance::new(module, &self.settings).map_err(StartFailure::Init)?;
        if let Some(state) = &self.state {
            match inst.restore(state, self.settings.timeout) {
                CallOutcome::Ok => {}
                CallOutcome::Failed(f) => return Err(StartFailure::Restore(f)),
                CallOutcome::Retry(m) | CallOutcome::Reject(m) => RestoreFailed {
                    version: &module.hash,
                    error: &format_args!("the plugin refused it: {m}"),
                    fallback: RestoreFallback::StartedWithoutState,
                }
                .emit(&self.stats),
            }
        }
        Ok(inst)
    }

    /// The instance to call, made anew if the last one failed. A state its own
    /// version cannot restore is given up rather than the dispatcher.
    ///
    /// # Errors
    /// Why no instance could be made.
    pub fn instance(&mut self) -> Result<&mut Instance, String> {
        if self.instance.is_none() {
            let inst = match self.fresh_instance(&self.module) {
                Ok(i) => i,
                Err(StartFailure::Restore(f)) => {
                    RestoreFailed {
                        version: &self.module.hash,
                        error: &format_args!("collector_restore {f}"),
                        fallback: RestoreFallback::StartedWithoutState,
                    }
                    .emit(&self.stats);
                    self.state = None;
                    Instance::new(&self.module, &self.settings)
                        .map_err(|e| format!("cannot re-create the plugin instance: {e}"))?
                }
                Err(StartFailure::Init(e)) => {
                    return Err(format!("cannot re-create the plugin instance: {e}"));
                }
            };
            self.instance = Some(inst);
        }
        self.instance
            .as_mut()
            .ok_or_else(|| "no plugin instance".to_owned())
    }

    /// After an accepted batch: keeps the state current, so that a new instance
    /// (after a failure or a reload) resumes from it. A snapshot that fails is
    /// treated like a trap (ABI §5.7): the instance is dropped and the next one
    /// restores the previous state.
    pub fn take_snapshot(&mut self) {
        if self.snapshot_failures >= SNAPSHOT_GIVE_UP {
            return;
        }
        let timeout = self.settings.timeout;
        let Some(inst) = self.instance.as_mut() else {
            return;
        };
        match inst.snapshot(timeout) {
            Ok(Some(state)) => {
                let state = Arc::new(state);
                self.slot.set_latest_state(state.clone());
                self.state = Some(state);
                self.snapshot_failures = 0;
            }
            Ok(None) => self.snapshot_failures = 0,
            Err(f) => {
                self.instance = None;
                self.snapshot_failures += 1;
                SnapshotFailed {
                    version: &self.module.hash,
                    error: &f,
                    in_a_row: self.snapshot_failures,
                    gave_up: self.snapshot_failures >= SNAPSHOT_GIVE_UP,
                }
                .emit(&self.stats);
            }
        }
    }
}
