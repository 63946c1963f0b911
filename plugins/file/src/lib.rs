//! The `file` dispatcher: one JSON line per sample, with Ceilometer's field names,
//! appended to a file inside a granted directory. Rotates by size like
//! Ceilometer's `dispatcher_file` (`max_bytes`, `backup_count`).

use std::fs::{File, OpenOptions};
use std::io::Write;

use collector_sdk::{Batch, Config, Dispatcher, Outcome};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Path as the plugin sees it, inside a directory granted by the daemon's config.
    #[serde(default = "default_path")]
    path: String,
    /// Rotate when a line would take the file to this size or beyond (0 = never).
    #[serde(default)]
    max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.N`). 0 never rotates, as in Python's
    /// `RotatingFileHandler`, which Ceilometer's file dispatcher used.
    #[serde(default)]
    backup_count: u32,
}

fn default_path() -> String {
    "/data/samples.jsonl".to_owned()
}

struct FileDispatcher {
    settings: Settings,
    file: File,
    size: u64,
    /// Lines of the current batch not yet written.
    pending: Vec<u8>,
}

fn open(path: &str) -> Result<(File, u64), String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot open {path}: {e} (is its directory granted in the dispatcher's `dirs`?)"
            )
        })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}

impl FileDispatcher {
    fn write_pending(&mut self) -> Result<(), String> {
        self.file
            .write_all(&self.pending)
            .map_err(|e| format!("cannot write {}: {e}", self.settings.path))?;
        self.pending.clear();
        Ok(())
    }

    /// `RotatingFileHandler.doRollover`: path.N-1 → path.N, …, path → path.1.
    fn rotate(&mut self) -> Result<(), String> {
        self.write_pending()?;
        let p = &self.settings.path;
        for i in (1..self.settings.backup_count).rev() {
            let (from, to) = (format!("{p}.{i}"), format!("{p}.{}", i + 1));
            if std::fs::metadata(&from).is_ok() {
                let _ = std::fs::remove_file(&to);
                std::fs::rename(&from, &to).map_err(|e| format!("cannot rotate {from}: {e}"))?;
            }
        }
        let first = format!("{p}.1");
        let _ = std::fs::remove_file(&first);
        std::fs::rename(p, &first).map_err(|e| format!("cannot rotate {p}: {e}"))?;
        let (file, size) = open(p)?;
        self.file = file;
        self.size = size;
        Ok(())
    }
}

impl Dispatcher for FileDispatcher {
    fn init(config: Config<'_>) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        let (file, size) = open(&settings.path)?;
        collector_sdk::info!("writing samples to {}", settings.path);
        Ok(FileDispatcher {
            settings,
            file,
            size,
            pending: Vec::with_capacity(1 << 16),
        })
    }

    fn dispatch(&mut self, batch: Batch<'_>) -> Outcome {
        let rotating = self.settings.max_bytes > 0 && self.settings.backup_count > 0;
        for sample in batch.samples() {
            let sample = match sample {
                Ok(s) => s,
                Err(e) => return Outcome::Reject(e.to_string()),
            };
            let start = self.pending.len();
            collector_sdk::json::write_sample(&mut self.pending, &sample);
            self.pending.push(b'\n');
            let line = (self.pending.len() - start) as u64;
            if rotating
                && self.size + line >= self.settings.max_bytes
                && self.size + start as u64 > 0
            {
                let tail = self.pending.split_off(start);
                if let Err(e) = self.rotate() {
                    return Outcome::Retry(e);
                }
                self.pending = tail;
            }
            self.size += line;
        }
        match self.write_pending() {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Retry(e),
        }
    }
}

collector_sdk::export_dispatcher!(FileDispatcher);
