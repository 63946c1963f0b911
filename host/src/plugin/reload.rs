//! Hot reload of plugin files: watch each dispatcher's `.wasm` (its directory, so
//! that atomic renames, delete-then-create and editors' bursts are all seen),
//! wait for the file to be quiet, then load the new version in the background:
//! compile, check the ABI, instantiate and `init` a trial instance. Only a version
//! that passed all of that is published; anything else leaves the old version
//! serving, is logged with the file and the reason, and counted. The next change
//! of the file is tried again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::{CallOutcome, Instance, Runtime};
use crate::config::PluginSource;
use crate::dispatch::Loaded;
use crate::telemetry::{Counter, Untrusted};

/// Reload counters.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub reloads: Counter,
    pub failures: Counter,
}

/// One watched plugin file.
struct Target {
    loaded: Loaded,
    path: PathBuf,
    /// Hash of the last content tried, so that a broken file is tried once, and
    /// again only when it changes.
    last_tried: std::sync::Mutex<String>,
}

/// Watches the plugin files of `plugins` until `shutdown` turns true.
///
/// # Errors
/// When the file watcher cannot be set up (reported; the daemon runs without reload).
pub fn spawn(
    runtime: Arc<Runtime>,
    plugins: &[Loaded],
    debounce: Duration,
    stats: Arc<ReloadStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, notify::Error> {
    let mut targets = Vec::new();
    for p in plugins {
        if let PluginSource::File(path) = &p.source {
            let last_tried = std::sync::Mutex::new(p.slot.hash());
            targets.push(Target {
                loaded: p.clone(),
                path: absolute(path),
                last_tried,
            });
        }
    }
    if targets.is_empty() {
        return Ok(None);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let _ = tx.send(res);
    })?;
    let mut dirs: Vec<&Path> = targets.iter().filter_map(|t| t.path.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        watcher.watch(d, RecursiveMode::NonRecursive)?;
        tracing::info!(dir = %d.display(), "Watching plugin files for changes");
    }
    Ok(Some(tokio::spawn(watch_loop(
        watcher, rx, targets, runtime, debounce, stats, shutdown,
    ))))
}

/// The path with its directory made absolute and resolved, as the watcher reports it.
fn absolute(path: &Path) -> PathBuf {
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) => (
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            },
            n,
        ),
        _ => return path.to_path_buf(),
    };
    std::fs::canonicalize(dir).map_or_else(|_| path.to_path_buf(), |d| d.join(name))
}

async fn watch_loop(
    _watcher: notify::RecommendedWatcher,
    mut rx: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    targets: Vec<Target>,
    runtime: Arc<Runtime>,
    debounce: Duration,
    stats: Arc<ReloadStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let targets: Vec<Arc<Target>> = targets.into_iter().map(Arc::new).collect();
    // Index of a target → when its file has been quiet long enough.
    let mut due: HashMap<usize, Instant> = HashMap::new();
    loop {
        let next = due.values().min().copied();
        let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.changed() => break,
            ev = rx.recv() => match ev {
                Some(Ok(ev)) => {
                    if matches!(ev.kind, EventKind::Access(_)) {
                        continue;
                    }
                    // A rename onto the file delivers it whole: load at once. Writes
                    // come in bursts: wait until the file is quiet.
                    let whole = matches!(ev.kind, EventKind::Modify(notify::event::ModifyKind::Name(_)));
                    let when = Instant::now() + if whole { Duration::ZERO } else { debounce };
                    for (i, t) in targets.iter().enumerate() {
                        if ev.paths.iter().any(|p| p == &t.path) {
                            due.insert(i, when);
                        }
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "Plugin file watcher error"),
                None => break,
            },
            _ = tokio::time::sleep_until(sleep_until.into()), if next.is_some() => {
                let now = Instant::now();
                let ready: Vec<usize> = due.iter().filter(|(_, t)| **t <= now).map(|(i, _)| *i).collect();
                for i in ready {
                    due.remove(&i);
                    let (t, rt, st) = (targets[i].clone(), runtime.clone(), stats.clone());
                    let _ = tokio::task::spawn_blocking(move || reload(&t, &rt, &st)).await;
                }
            }
        }
    }
}

/// Loads the file's current content as a new version, if it changed and works.
fn reload(t: &Target, runtime: &Runtime, stats: &ReloadStats) {
    let name = &t.loaded.dispatcher;
    let file = t.path.display();
    let started = Instant::now();
    let wasm = match std::fs::read(&t.path) {
        Ok(w) => w,
        Err(e) => {
            // Deleted (maybe to be created again): the old version keeps serving.
            tracing::warn!(dispatcher = %name, %file, "Plugin file unreadable, keeping the running version: {e}");
            return;
        }
    };
    let old = t.loaded.slot.hash();
    let new = super::short_hash(&wasm);
    if let Ok(mut last) = t.last_tried.lock() {
        if *last == new {
            tracing::debug!(dispatcher = %name, %file, "Plugin file touched but unchanged");
            return;
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
                CallOutcome::Failed(f) => {
                    return Err(super::PluginError::Init(format!(
                        "collector_restore {f} on the running state ({} bytes)",
                        state.len()
                    )));
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
            stats.reloads.inc();
            tracing::info!(
                dispatcher = %name, %file, %version, previous = %old,
                load_ms = started.elapsed().as_millis() as u64,
                "Plugin reloaded: the next batch goes to the new version"
            );
        }
        Err(e) => {
            stats.failures.inc();
            tracing::error!(
                dispatcher = %name, %file, kept = %old,
                "Plugin reload failed, the old version keeps serving: {}",
                Untrusted::capped(&e.to_string(), 1024)
            );
        }
    }
}
