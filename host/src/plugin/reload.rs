//! Hot reload of plugin files: watch each dispatcher's `.wasm` (its directory, so
//! that atomic renames, delete-then-create and editors' bursts are all seen; and
//! the directory of what a symbolic link points to, so that a change of the
//! target is seen too), wait until the file is whole, then load the new version
//! in the background: compile, check the ABI, instantiate, `init` and `restore`
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
    /// The path as configured (its directory made absolute).
    path: PathBuf,
    /// What it resolves to through symbolic links (the same path when it is none):
    /// a change of the target file must be seen too.
    resolved: std::sync::Mutex<PathBuf>,
    /// Hash of the last content tried, so that a broken file is tried once, and
    /// again only when it changes.
    last_tried: std::sync::Mutex<String>,
}

impl Target {
    fn resolved(&self) -> PathBuf {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn is(&self, path: &Path) -> bool {
        path == self.path || path == self.resolved()
    }
}

/// Where a changed file stands.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// When to look at it again.
    due: Instant,
    /// Written to, and not closed since: a writer is still at it.
    writing: bool,
    /// When the writes began.
    since: Instant,
}

/// How long a file may stay open for writing before it is loaded anyway.
fn max_open_wait(debounce: Duration) -> Duration {
    (debounce * 10).max(Duration::from_secs(30))
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
            let path = absolute(path);
            let resolved = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            targets.push(Target {
                loaded: p.clone(),
                path,
                resolved: std::sync::Mutex::new(resolved),
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
    let mut watched = Vec::new();
    for t in &targets {
        for file in [t.path.clone(), t.resolved()] {
            watch_dir_of(&mut watcher, &mut watched, &file)?;
        }
    }
    Ok(Some(tokio::spawn(watch_loop(
        watcher, watched, rx, targets, runtime, debounce, stats, shutdown,
    ))))
}

/// Watches the directory of `file`, once.
fn watch_dir_of(
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut Vec<PathBuf>,
    file: &Path,
) -> Result<(), notify::Error> {
    let Some(dir) = file.parent() else {
        return Ok(());
    };
    if watched.iter().any(|w| w == dir) {
        return Ok(());
    }
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    tracing::info!(dir = %dir.display(), "Watching plugin files for changes");
    watched.push(dir.to_path_buf());
    Ok(())
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

/// When a file changed by `kind` should be looked at, given where it stood.
fn after_event(kind: &EventKind, before: Option<Pending>, debounce: Duration) -> Option<Pending> {
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    let now = Instant::now();
    let writing = before.is_some_and(|p| p.writing);
    let since = before.filter(|p| p.writing).map_or(now, |p| p.since);
    match kind {
        // The writer closed it: once quiet for the debounce, it is whole.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Pending {
            due: now + debounce,
            writing: false,
            since,
        }),
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => before,
        // A rename onto the file (or a link swapped) delivers it whole: load at once.
        EventKind::Modify(ModifyKind::Name(_)) => Some(Pending {
            due: now,
            writing: false,
            since: now,
        }),
        // Written to: wait for the close, and for quiet.
        EventKind::Create(_) | EventKind::Modify(_) => Some(Pending {
            due: now + debounce,
            writing: true,
            since,
        }),
        // Removed (maybe to come back, or the target of a swapped link): look again.
        _ => Some(Pending {
            due: now + debounce,
            writing,
            since,
        }),
    }
}

#[allow(clippy::too_many_arguments, reason = "the loop owns all of these")]
async fn watch_loop(
    mut watcher: notify::RecommendedWatcher,
    mut watched: Vec<PathBuf>,
    mut rx: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    targets: Vec<Target>,
    runtime: Arc<Runtime>,
    debounce: Duration,
    stats: Arc<ReloadStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let targets: Vec<Arc<Target>> = targets.into_iter().map(Arc::new).collect();
    let mut pending: HashMap<usize, Pending> = HashMap::new();
    loop {
        let next = pending.values().map(|p| p.due).min();
        let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.changed() => break,
            ev = rx.recv() => match ev {
                Some(Ok(ev)) => {
                    // A symbolic link is created whole (`ln -sf`): nothing will close it.
                    let kind = match ev.kind {
                        EventKind::Create(_)
                            if ev.paths.iter().any(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink())) =>
                        {
                            EventKind::Modify(notify::event::ModifyKind::Name(notify::event::RenameMode::To))
                        }
                        k => k,
                    };
                    for (i, t) in targets.iter().enumerate() {
                        if ev.paths.iter().any(|p| t.is(p))
                            && let Some(p) = after_event(&kind, pending.get(&i).copied(), debounce)
                        {
                            pending.insert(i, p);
                        }
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "Plugin file watcher error"),
                None => break,
            },
            _ = tokio::time::sleep_until(sleep_until.into()), if next.is_some() => {
                let now = Instant::now();
                let ready: Vec<usize> = pending.iter().filter(|(_, p)| p.due <= now).map(|(i, _)| *i).collect();
                for i in ready {
                    let Some(p) = pending.remove(&i) else { continue };
                    let t = targets[i].clone();
                    if p.writing && now.duration_since(p.since) < max_open_wait(debounce) {
                        // Still open for writing: a half-written file is never loaded.
                        tracing::debug!(dispatcher = %t.loaded.dispatcher, file = %t.path.display(),
                            "Plugin file still being written; waiting for the writer to close it");
                        pending.insert(i, Pending { due: now + debounce, ..p });
                        continue;
                    }
                    let (rt, st) = (runtime.clone(), stats.clone());
                    let settle = debounce.min(Duration::from_millis(100));
                    let t2 = t.clone();
                    let outcome = tokio::task::spawn_blocking(move || reload(&t2, &rt, &st, settle)).await;
                    if matches!(outcome, Ok(Reload::Changing)) {
                        pending.insert(i, Pending { due: Instant::now() + debounce, writing: false, since: now });
                    }
                    // A symbolic link may point elsewhere now: watch the new target too.
                    let resolved = std::fs::canonicalize(&t.path).unwrap_or_else(|_| t.path.clone());
                    if resolved != t.resolved() {
                        if let Err(e) = watch_dir_of(&mut watcher, &mut watched, &resolved) {
                            tracing::warn!(error = %e, file = %resolved.display(), "Cannot watch a plugin's link target");
                        }
                        *t.resolved.lock().unwrap_or_else(|p| p.into_inner()) = resolved;
                    }
                }
            }
        }
    }
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
fn reload(t: &Target, runtime: &Runtime, stats: &ReloadStats, settle: Duration) -> Reload {
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
    Reload::Done
}
