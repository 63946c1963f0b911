//! Hot reload of plugin files: when the daemon's file watcher ([`crate::watch`])
//! says a dispatcher's `.wasm` changed and is whole, load the new version in
//! the background: compile, check the ABI, instantiate, `init` and `restore`
//! the running state in a trial instance. Only a version that passed all of that
//! is published; anything else leaves the old version serving, is logged with
//! the file and the reason, and counted. The next change of the file is tried
//! again.
//!
//! When is a file whole? A rename onto it (the way to deploy: write elsewhere,
//! then `mv`) delivers it whole at once. A file written in place is taken only
//! once its writer has closed it (inotify's close-after-write) and it has stayed
//! quiet for `debounce_ms`, and only if two reads a moment apart agree: a copy
//! that pauses half-way, even on a valid wasm prefix, is never loaded. (A writer
//! that keeps the file open past 10 × `debounce_ms`, at least 30 s, is not
//! waited for any longer.) We chose the writer's close over a hash or length
//! in the config because it needs nothing from the operator and covers `cp`,
//! `scp`, `rsync --inplace` and editors alike.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{CallOutcome, Instance, Loaded, Runtime};
use crate::config::PluginSource;
use crate::telemetry::events::{PluginReloadFailed, PluginReloaded};
use crate::telemetry::{DaemonMetrics, Telemetry, Untrusted};
use crate::watch::{FileWatch, Group};

/// One watched plugin file.
struct Target {
    loaded: Loaded,
    path: PathBuf,
    /// Hash of the last content tried, so that a broken file is tried once, and
    /// again only when it changes.
    last_tried: std::sync::Mutex<String>,
}

/// Watches the plugin files of `plugins` (through the daemon's `files` watcher,
/// instead of the plugin files it watched before) until `shutdown` turns true.
/// `None` when no plugin comes from a file.
pub fn spawn(
    runtime: Arc<Runtime>,
    plugins: &[Loaded],
    files: &FileWatch,
    debounce: Duration,
    telemetry: Arc<Telemetry>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let targets: Vec<Arc<Target>> = plugins
        .iter()
        .filter_map(|p| match &p.source {
            PluginSource::File(path) => Some(Arc::new(Target {
                loaded: p.clone(),
                path: path.clone(),
                last_tried: std::sync::Mutex::new(p.slot.hash()),
            })),
            PluginSource::Builtin(_) => None,
        })
        .collect();
    let mut settled = files.watch(
        Group::Plugins,
        targets.iter().map(|t| t.path.clone()).collect(),
        debounce,
    );
    if targets.is_empty() {
        return None;
    }
    let files = files.clone();
    Some(tokio::spawn(async move {
        loop {
            let i = tokio::select! {
                _ = shutdown.changed() => break,
                i = settled.recv() => match i {
                    Some(i) => i,
                    None => break,
                },
            };
            let Some(t) = targets.get(i).map(Arc::clone) else {
                continue;
            };
            let (rt, tm) = (runtime.clone(), telemetry.clone());
            let settle = debounce.min(Duration::from_millis(100));
            let outcome =
                tokio::task::spawn_blocking(move || reload(&t, &rt, &tm.daemon, settle)).await;
            if matches!(outcome, Ok(Reload::Changing)) {
                files.look_again(Group::Plugins, i);
            }
        }
    }))
}

/// What a look at a changed file came to.
enum Reload {
    /// Loaded, refused, or unchanged: nothing more to do until it changes again.
    Done,
    /// Its content moved while it was read: look again after the debounce.
    Changing,
}

/// Loads the file's current content as a new version, if it changed and works.
/// The file is read twice, `settle` apart: content that moves in between is still
/// being written, and is looked at again later.
fn reload(t: &Target, runtime: &Runtime, metrics: &DaemonMetrics, settle: Duration) -> Reload {
    let name = &t.loaded.dispatcher;
    let file = t.path.display();
    let started = Instant::now();
    let read = || std::fs::read(&t.path);
    let wasm = match read() {
        Ok(w) => w,
        Err(e) => {
            // Deleted (maybe to be created again): the old version keeps serving.
            tracing::warn!(dispatcher = %name, %file, "Plugin file unreadable, keeping the running version: {e}");
            return Reload::Done;
        }
    };
    std::thread::sleep(settle);
    if read().ok().as_ref() != Some(&wasm) {
        tracing::debug!(dispatcher = %name, %file, "Plugin file changed while it was read; waiting");
        return Reload::Changing;
    }
    let old = t.loaded.slot.hash();
    let new = super::short_hash(&wasm);
    if let Ok(mut last) = t.last_tried.lock() {
        if *last == new {
            tracing::debug!(dispatcher = %name, %file, "Plugin file touched but unchanged");
            return Reload::Done;
        }
        *last = new;
    }
    let trial = runtime.compile(name, &wasm).and_then(|module| {
        let inst = Instance::new(&module, &t.loaded.settings)?;
        Ok((module, inst))
    });
    // The new version must also take the running state: a `collector_restore` that
    // traps on it would leave every thread on the old version.
    let trial = trial.and_then(|(module, mut inst)| {
        if let Some(state) = t.loaded.slot.latest_state() {
            match inst.restore(&state, t.loaded.settings.timeout) {
                CallOutcome::Failed(source) => {
                    return Err(super::PluginError::Restore {
                        bytes: state.len(),
                        source,
                    });
                }
                CallOutcome::Retry(m) | CallOutcome::Reject(m) => tracing::warn!(
                    dispatcher = %name, %file,
                    "The new version refuses the running state and will start without it: {}",
                    Untrusted(&m)
                ),
                CallOutcome::Ok => {}
            }
        }
        Ok((module, inst))
    });
    match trial {
        Ok((module, trial_instance)) => {
            drop(trial_instance);
            let version = module.hash.clone();
            t.loaded.slot.publish(module);
            PluginReloaded {
                dispatcher: name,
                file: &file,
                version: &version,
                previous: &old,
                load: started.elapsed(),
            }
            .emit(metrics);
        }
        Err(e) => PluginReloadFailed {
            dispatcher: name,
            file: &file,
            kept: &old,
            error: &e,
        }
        .emit(metrics),
    }
    Reload::Done
}
