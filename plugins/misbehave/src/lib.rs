//! A test fixture that misbehaves on purpose, for the daemon's sandboxing tests.
//!
//! Batches holding a sample whose `counter_name` equals `trigger_meter` make it
//! misbehave as `mode` says: `loop` (never returns), `trap`, `hog` (grows memory
//! without bound), `reject`, `hoard` (sends `hoard_requests` GETs to its
//! endpoint `sink` and keeps every response's handle open, never reading a
//! body; rejects with the first failure, if any). `fail_first = N` answers `retry` to its first N calls,
//! `reject_first = N` answers `reject` to the N calls after those.
//! Other batches are accepted.
//!
//! Besides: `log_lines = N` logs N lines per batch, each with a forged log line
//! after a newline (for the log escaping and rate-limit tests); `snapshot` makes
//! `collector_snapshot` return a state (`some`), trap (`trap`) or never return
//! (`loop`); `restore = "trap"` makes `collector_restore` trap.

use collector_sdk::{Batch, Config, Dispatcher, Outcome};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    mode: String,
    #[serde(default = "default_trigger")]
    trigger_meter: String,
    #[serde(default)]
    fail_first: u64,
    #[serde(default)]
    reject_first: u64,
    #[serde(default)]
    log_lines: u64,
    #[serde(default)]
    snapshot: String,
    #[serde(default)]
    restore: String,
    #[serde(default = "default_hoard_requests")]
    hoard_requests: usize,
}

fn default_hoard_requests() -> usize {
    16
}

fn default_trigger() -> String {
    "poison".into()
}

struct Misbehave {
    settings: Settings,
    calls: u64,
    hoard: Vec<Vec<u8>>,
    held: Vec<collector_sdk::http::Pending>,
}

impl Dispatcher for Misbehave {
    fn init(config: Config<'_>) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if !matches!(
            settings.mode.as_str(),
            "" | "loop" | "trap" | "hog" | "reject" | "hoard"
        ) {
            return Err(format!("unknown mode {:?}", settings.mode));
        }
        if !matches!(settings.snapshot.as_str(), "" | "some" | "trap" | "loop") {
            return Err(format!("unknown snapshot {:?}", settings.snapshot));
        }
        if !matches!(settings.restore.as_str(), "" | "trap") {
            return Err(format!("unknown restore {:?}", settings.restore));
        }
        Ok(Misbehave {
            settings,
            calls: 0,
            hoard: Vec::new(),
            held: Vec::new(),
        })
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        match self.settings.snapshot.as_str() {
            "some" => Some(self.calls.to_le_bytes().to_vec()),
            "trap" => panic!("snapshot fails"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = core::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => None,
        }
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        if self.settings.restore == "trap" {
            panic!("restore fails");
        }
        if let Ok(calls) = <[u8; 8]>::try_from(state) {
            self.calls = u64::from_le_bytes(calls);
        }
        Ok(())
    }

    fn dispatch(&mut self, batch: Batch<'_>) -> Outcome {
        self.calls += 1;
        for i in 0..self.settings.log_lines {
            collector_sdk::warn!(
                "flood-line {i}\n2026-12-01T00:00:00.000000Z  INFO collector: forged by a plugin"
            );
        }
        if self.calls <= self.settings.fail_first {
            return Outcome::Retry(format!(
                "failing call {} of the first {}",
                self.calls, self.settings.fail_first
            ));
        }
        if self.calls <= self.settings.fail_first + self.settings.reject_first {
            return Outcome::Reject(format!(
                "rejecting call {} of the first {}",
                self.calls - self.settings.fail_first,
                self.settings.reject_first
            ));
        }
        let triggered = batch
            .samples()
            .any(|s| s.is_ok_and(|s| s.counter_name == self.settings.trigger_meter));
        if !triggered {
            return Outcome::Ok;
        }
        match self.settings.mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = core::hint::black_box(n.wrapping_add(1));
                }
            }
            "trap" => panic!("poison sample"),
            "hog" => loop {
                let mut chunk = vec![0u8; 4 << 20];
                chunk[0] = 1;
                self.hoard.push(core::hint::black_box(chunk));
            },
            "reject" => Outcome::Reject("poison sample".into()),
            "hoard" => self.hoard_responses(),
            _ => Outcome::Ok,
        }
    }
}

impl Misbehave {
    /// Sends the requests, waits for all of them, keeps every handle.
    fn hoard_responses(&mut self) -> Outcome {
        use collector_sdk::http::{Request, wait_any};
        for _ in 0..self.settings.hoard_requests {
            match Request::get("sink", "").send() {
                Ok(p) => self.held.push(p),
                Err(e) => return Outcome::Reject(format!("send: {e}")),
            }
        }
        loop {
            let running: Vec<&collector_sdk::http::Pending> =
                self.held.iter().filter(|p| !p.is_done()).collect();
            if running.is_empty() {
                break;
            }
            if wait_any(&running, core::time::Duration::from_secs(5)).is_none() {
                return Outcome::Retry("responses still running".into());
            }
        }
        let answered = self.held.iter().filter(|p| p.peek().is_ok()).count();
        match self.held.iter().find_map(|p| p.peek().err()) {
            Some(e) => Outcome::Reject(format!(
                "{answered} of {} responses held; {e}",
                self.held.len()
            )),
            None => Outcome::Ok,
        }
    }
}

collector_sdk::export_dispatcher!(Misbehave);
