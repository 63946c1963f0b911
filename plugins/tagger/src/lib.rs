//! The `tagger` dispatcher, for hot-reload tests and benchmarks: writes one line
//! per sample with the plugin's version tag, the sample's `message_id` and a
//! running count that survives reloads through snapshot/restore:
//! `{"version":"tagger-version:000000000","message_id":"…","n":42}`.
//!
//! The version tag is a constant in the module's data: tests make distinct
//! versions by patching its digits in the `.wasm` file.

use std::fs::{File, OpenOptions};
use std::io::Write;

use collector_sdk::{Batch, Config, Dispatcher, Outcome};
use serde::Deserialize;

/// Patched in the `.wasm` file to make versions (same length, digits only).
#[used]
static VERSION: [u8; 24] = *b"tagger-version:000000000";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_path")]
    path: String,
}

fn default_path() -> String {
    "/data/tagged.jsonl".into()
}

struct Tagger {
    file: File,
    version: String,
    count: u64,
    line: Vec<u8>,
}

impl Dispatcher for Tagger {
    fn init(config: Config<'_>) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.path)
            .map_err(|e| format!("cannot open {}: {e}", s.path))?;
        // Read the tag through an opaque pointer so that it comes from the data segment.
        let bytes: &[u8; 24] = core::hint::black_box(&VERSION);
        let version = String::from_utf8_lossy(bytes).into_owned();
        Ok(Tagger {
            file,
            version,
            count: 0,
            line: Vec::new(),
        })
    }

    fn dispatch(&mut self, batch: Batch<'_>) -> Outcome {
        self.line.clear();
        let mut count = self.count;
        for s in batch.samples() {
            let s = match s {
                Ok(s) => s,
                Err(e) => return Outcome::Reject(e.to_string()),
            };
            count += 1;
            self.line.extend_from_slice(b"{\"version\":");
            collector_sdk::json::write_str(&mut self.line, &self.version);
            self.line.extend_from_slice(b",\"message_id\":");
            collector_sdk::json::write_str(&mut self.line, s.message_id);
            self.line
                .extend_from_slice(format!(",\"n\":{count}}}\n").as_bytes());
        }
        match self.file.write_all(&self.line) {
            Ok(()) => {
                self.count = count;
                Outcome::Ok
            }
            Err(e) => Outcome::Retry(format!("write failed: {e}")),
        }
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(self.count.to_le_bytes().to_vec())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = state
            .try_into()
            .map_err(|_| format!("state is {} bytes, not 8", state.len()))?;
        self.count = u64::from_le_bytes(bytes);
        Ok(())
    }
}

collector_sdk::export_dispatcher!(Tagger);
