//! The daemon's one file watcher (one inotify instance, through `notify`): the
//! config file and every plugin file are watched through it. Each user watches
//! a group of files and hears, by index, when one of them is *whole* after a
//! change; what it then does (reload the config, try a new plugin version) is
//! its own business.
//!
//! Each file's directory is watched, so that atomic renames, delete-then-create
//! and editors' bursts are all seen; and the directory of what a symbolic link
//! points to, so that a change of the target is seen too (and, when the link is
//! pointed elsewhere, the new target's).
//!
//! When is a file whole? A rename onto it (the way to deploy: write elsewhere,
//! then `mv`) delivers it whole at once. A file written in place is taken only
//! once its writer has closed it (inotify's close-after-write) and it has stayed
//! quiet for the group's debounce. (A writer that keeps the file open past 10 ×
//! the debounce, at least 30 s, is not waited for any longer.) A user that reads
//! the file and finds it still moving asks to [`FileWatch::look_again`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Whose files: each group has its own list, replaced as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    Config,
    Plugins,
}

/// A handle on the watcher; it runs until every handle is dropped.
#[derive(Clone)]
pub struct FileWatch {
    commands: mpsc::UnboundedSender<Command>,
}

enum Command {
    Watch {
        group: Group,
        files: Vec<PathBuf>,
        debounce: Duration,
        settled: mpsc::UnboundedSender<usize>,
    },
    LookAgain {
        group: Group,
        index: usize,
    },
}

impl FileWatch {
    /// Starts the watcher on the daemon's runtime.
    ///
    /// # Errors
    /// When inotify cannot be set up (the daemon then runs without file watching).
    pub fn start() -> Result<FileWatch, notify::Error> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let _ = events_tx.send(res);
        })?;
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(
            Task {
                watcher,
                watched: Vec::new(),
                groups: HashMap::new(),
                pending: HashMap::new(),
            }
            .run(events, rx),
        );
        Ok(FileWatch { commands })
    }

    /// Watches `files` for `group`, instead of what the group watched before;
    /// the receiver hears the index of each file that changed and is whole.
    pub fn watch(
        &self,
        group: Group,
        files: Vec<PathBuf>,
        debounce: Duration,
    ) -> mpsc::UnboundedReceiver<usize> {
        let (settled, rx) = mpsc::unbounded_channel();
        let _ = self.commands.send(Command::Watch {
            group,
            files,
            debounce,
            settled,
        });
        rx
    }

    /// File `index` of `group` moved while it was read: look again after the
    /// debounce.
    pub fn look_again(&self, group: Group, index: usize) {
        let _ = self.commands.send(Command::LookAgain { group, index });
    }
}

/// One watched file.
struct File {
    /// As configured, its directory made absolute.
    path: PathBuf,
    /// What it resolves to through symbolic links (the same path when none).
    resolved: PathBuf,
}

impl File {
    fn new(path: &Path) -> File {
        let path = absolute(path);
        let resolved = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        File { path, resolved }
    }

    fn is(&self, p: &Path) -> bool {
        p == self.path || p == self.resolved
    }
}

struct GroupFiles {
    files: Vec<File>,
    debounce: Duration,
    settled: mpsc::UnboundedSender<usize>,
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

/// How long a file may stay open for writing before it is taken anyway.
fn max_open_wait(debounce: Duration) -> Duration {
    (debounce * 10).max(Duration::from_secs(30))
}

struct Task {
    watcher: notify::RecommendedWatcher,
    /// Directories watched (never unwatched: a directory costs one inotify watch).
    watched: Vec<PathBuf>,
    groups: HashMap<Group, GroupFiles>,
    pending: HashMap<(Group, usize), Pending>,
}

impl Task {
    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        loop {
            let next = self.pending.values().map(|p| p.due).min();
            let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                c = commands.recv() => match c {
                    Some(c) => self.command(c),
                    None => break,
                },
                ev = events.recv() => match ev {
                    Some(Ok(ev)) => self.event(&ev),
                    Some(Err(e)) => tracing::warn!(error = %e, "File watcher error"),
                    None => break,
                },
                _ = tokio::time::sleep_until(sleep_until), if next.is_some() => self.due(),
            }
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Watch {
                group,
                files,
                debounce,
                settled,
            } => {
                self.pending.retain(|(g, _), _| *g != group);
                let files: Vec<File> = files.iter().map(|p| File::new(p)).collect();
                for f in &files {
                    for p in [f.path.clone(), f.resolved.clone()] {
                        self.watch_dir_of(&p, group);
                    }
                }
                self.groups.insert(
                    group,
                    GroupFiles {
                        files,
                        debounce,
                        settled,
                    },
                );
            }
            Command::LookAgain { group, index } => {
                if let Some(g) = self.groups.get(&group) {
                    let now = Instant::now();
                    self.pending.insert(
                        (group, index),
                        Pending {
                            due: now + g.debounce,
                            writing: false,
                            since: now,
                        },
                    );
                }
            }
        }
    }

    fn event(&mut self, ev: &notify::Event) {
        // A symbolic link is created whole (`ln -sf`): nothing will close it.
        let kind = match ev.kind {
            EventKind::Create(_)
                if ev
                    .paths
                    .iter()
                    .any(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink())) =>
            {
                EventKind::Modify(notify::event::ModifyKind::Name(
                    notify::event::RenameMode::To,
                ))
            }
            k => k,
        };
        for (group, g) in &self.groups {
            for (i, f) in g.files.iter().enumerate() {
                if ev.paths.iter().any(|p| f.is(p))
                    && let Some(p) =
                        after_event(&kind, self.pending.get(&(*group, i)).copied(), g.debounce)
                {
                    self.pending.insert((*group, i), p);
                }
            }
        }
    }

    /// Tells the users about the files that are due, or waits longer for those
    /// still being written.
    fn due(&mut self) {
        let now = Instant::now();
        let ready: Vec<(Group, usize)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in ready {
            let Some(p) = self.pending.remove(&key) else {
                continue;
            };
            let Some(g) = self.groups.get_mut(&key.0) else {
                continue;
            };
            let Some(f) = g.files.get_mut(key.1) else {
                continue;
            };
            if p.writing && now.duration_since(p.since) < max_open_wait(g.debounce) {
                // Still open for writing: a half-written file is never taken.
                tracing::debug!(file = %f.path.display(), "File still being written; waiting for the writer to close it");
                self.pending.insert(
                    key,
                    Pending {
                        due: now + g.debounce,
                        ..p
                    },
                );
                continue;
            }
            let _ = g.settled.send(key.1);
            // A symbolic link may point elsewhere now: watch the new target too.
            let resolved = std::fs::canonicalize(&f.path).unwrap_or_else(|_| f.path.clone());
            if resolved != f.resolved {
                f.resolved = resolved.clone();
                self.watch_dir_of(&resolved, key.0);
            }
        }
    }

    /// Watches the directory of `file`, once.
    fn watch_dir_of(&mut self, file: &Path, group: Group) {
        let Some(dir) = file.parent() else {
            return;
        };
        if self.watched.iter().any(|w| w == dir) {
            return;
        }
        match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                tracing::info!(dir = %dir.display(), ?group, "Watching files for changes");
                self.watched.push(dir.to_path_buf());
            }
            Err(e) => tracing::error!(
                dir = %dir.display(), ?group, error = %e,
                "Cannot watch a directory: changes of its files are not seen (SIGHUP still reloads the config)"
            ),
        }
    }
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
        // A rename onto the file (or a link swapped) delivers it whole: at once.
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

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RenameMode};

    const D: Duration = Duration::from_millis(100);

    #[test]
    fn a_file_being_written_waits_for_its_close() {
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        let p = after_event(&write, None, D).expect("pending");
        assert!(p.writing);
        let p2 = after_event(&write, Some(p), D).expect("pending");
        assert_eq!(p2.since, p.since, "the writes began with the first");
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let p3 = after_event(&closed, Some(p2), D).expect("pending");
        assert!(!p3.writing, "closed: whole once quiet");
    }

    #[test]
    fn a_rename_onto_the_file_is_taken_at_once() {
        let created = EventKind::Create(CreateKind::File);
        let p = after_event(&created, None, D).expect("pending");
        assert!(p.writing);
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let p = after_event(&renamed, Some(p), D).expect("pending");
        assert!(!p.writing && p.due <= Instant::now());
    }

    #[test]
    fn reads_change_nothing() {
        let read = EventKind::Access(AccessKind::Read);
        assert!(after_event(&read, None, D).is_none());
    }
}
