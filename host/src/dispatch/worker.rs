//! One dispatcher thread: takes batches off its dispatcher's queue and runs each
//! through its plugin instance to a final outcome.
//!
//! - `retry` answers are retried with backoff; a trap, timeout or memory refusal
//!   drops the instance, and the next batch gets a fresh one (from the last state
//!   snapshot).
//! - A batch the plugin rejects is offered again in halves, to this
//!   dispatcher alone, until the samples at fault are isolated: the others are
//!   taken, and only the failed ones are reported to the source (whose AMQP
//!   messages holding them are the only ones to pay for it).
//! - State handoff (ABI §5.7–5.8): a snapshot after every accepted batch; one
//!   that fails drops the instance, as a trap would, and is counted; after
//!   [`SNAPSHOT_GIVE_UP`] failures in a row the version's snapshots stop, so a
//!   looping `collector_snapshot` cannot cost every batch a full timeout.
//! - A panic anywhere in the thread's work is caught: the batch fails, the
//!   instance is dropped, the panic is counted and logged, the dispatcher shows
//!   unhealthy in `/readyz` until it completes a batch again, and the daemon
//!   exits non-zero at the end ([`crate::telemetry::panics`]).

use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::report::{Outcome, Tracker, whole};
use crate::batch::Sealed;
use crate::plugin::{
    CallOutcome, Failure, Instance, InstanceSettings, PluginError, PluginModule, PluginSlot,
};
use crate::telemetry::{DispatcherStats, RateLimit, Untrusted};

/// Failed snapshots in a row after which a version's snapshots are no longer taken.
pub const SNAPSHOT_GIVE_UP: u32 = 3;

/// One batch for one dispatcher.
pub struct Job {
    pub bytes: Arc<Vec<u8>>,
    /// Where each sample starts in `bytes` (see [`Sealed::part`]).
    pub starts: Arc<Vec<usize>>,
    pub samples: u64,
    pub tracker: Arc<Tracker>,
}

/// The queue every thread of a dispatcher takes its batches from.
pub type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>;

/// How a dispatcher treats batches that do not go through at once.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub max_retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Calls a rejected batch may take to isolate the samples at fault (0: none,
    /// the whole batch fails).
    pub isolation_max_calls: u32,
}

/// Why a batch (or a part of one) did not go through.
enum Failed {
    Rejected(String),
    Broken(Failure),
    OutOfRetries(String),
    NoInstance(String),
}

impl Failed {
    /// A rejection says "not this batch": worth trying its halves. A trap, timeout
    /// or memory refusal is not (ABI §8.4: the batch fails, it is not retried; each
    /// try would cost a new instance, or the whole deadline), nor are retries that
    /// ran out (the plugin asked for time, not for fewer samples).
    fn splittable(&self) -> bool {
        matches!(self, Failed::Rejected(_))
    }

    fn reason(&self) -> String {
        match self {
            Failed::Rejected(m) => format!("plugin rejected the batch: {m}"),
            Failed::Broken(f) => format!("plugin {f}"),
            Failed::OutOfRetries(m) | Failed::NoInstance(m) => m.clone(),
        }
    }
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

/// One dispatcher thread and its plugin instance.
pub struct Worker {
    pub name: Arc<str>,
    /// This thread's index among the dispatcher's instances.
    pub index: usize,
    /// Where reloads publish new versions, and the generation this thread serves.
    pub slot: Arc<PluginSlot>,
    pub generation: u64,
    pub module: PluginModule,
    pub settings: InstanceSettings,
    pub instance: Option<Instance>,
    /// The plugin's last snapshot (plugins that export `collector_snapshot`).
    pub state: Option<Arc<Vec<u8>>>,
    pub policy: Policy,
    pub stats: Arc<DispatcherStats>,
    pub warn: RateLimit,
    /// Snapshots of the serving version that failed in a row.
    pub snapshot_failures: u32,
    /// A fault injected for the panic-guard test (debug builds only).
    pub inject_panic: bool,
}

/// What a waiting thread woke up for.
enum Next {
    Job(Job),
    /// A reload published a new version.
    Switch,
    /// The dispatcher was retired and its queue is empty.
    Closed,
}

impl Worker {
    /// Serves batches until the queue closes. Blocking file I/O of WASI plugins runs
    /// on the daemon's runtime (`rt` is entered), never on a runtime wasmtime-wasi
    /// would build lazily inside this thread, where running out of descriptors would
    /// make it panic for the rest of the process.
    pub fn run(mut self, queue: &Queue, rt: &tokio::runtime::Handle) {
        let _runtime = rt.enter();
        let mut wake = self.slot.subscribe();
        self.slot.set_serving(self.index, &self.module.hash);
        loop {
            let next = rt.block_on(async {
                tokio::select! {
                    biased;
                    changed = wake.changed() => match changed {
                        Ok(()) => Next::Switch,
                        Err(_) => Next::Closed,
                    },
                    job = async { queue.lock().await.recv().await } => match job {
                        Some(j) => Next::Job(j),
                        None => Next::Closed,
                    },
                }
            });
            match next {
                Next::Closed => break,
                Next::Switch => {
                    if let Err(why) = self.guarded(|w| w.switch_version()) {
                        tracing::error!(dispatcher = %self.name, "While switching versions: {why}");
                    }
                }
                Next::Job(job) => {
                    self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                    if super::abandoned() {
                        self.count_failed(job.samples);
                        job.tracker
                            .fail_all(&self.name, "shutdown: the grace period was over");
                        continue;
                    }
                    let outcome = match self.guarded(|w| {
                        w.switch_version();
                        w.handle(&job)
                    }) {
                        Ok(outcome) => {
                            self.stats.healthy.store(true, Ordering::Relaxed);
                            outcome
                        }
                        Err(why) => {
                            self.count_failed(job.samples);
                            Err((why, whole(job.samples)))
                        }
                    };
                    job.tracker.report(&self.name, outcome);
                }
            }
        }
        tracing::debug!(dispatcher = %self.name, "Dispatcher thread stopped");
    }

    /// A batch that failed before [`Worker::handle`] could count it.
    fn count_failed(&self, samples: u64) {
        self.stats.batches_failed.inc();
        self.stats.samples_failed.add(samples);
    }

    /// Runs `f`, catching a panic: then the instance is dropped (the next batch gets
    /// a fresh one: the thread is restarted), and the panic counted and logged.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Result<T, String> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(v) => Ok(v),
            Err(payload) => {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                self.instance = None;
                // Unhealthy first: whoever sees the count sees the state too.
                self.stats.healthy.store(false, Ordering::Relaxed);
                self.stats.worker_panics.inc();
                crate::telemetry::count_panic();
                let why = format!("dispatcher worker panicked: {}", Untrusted(&what));
                if let Ok(mut last) = self.stats.last_error.lock() {
                    *last = Some(why.clone());
                }
                tracing::error!(
                    dispatcher = %self.name, thread = self.index, panics = self.stats.worker_panics.get(),
                    "{why}; the batch failed, the worker starts again with a new instance"
                );
                Err(why)
            }
        }
    }

    /// One batch to its final outcome, counted.
    fn handle(&mut self, job: &Job) -> Outcome {
        if std::mem::take(&mut self.inject_panic) {
            panic!("fault injected by COLLECTOR_FAULT_PANIC_DISPATCHER");
        }
        let started = Instant::now();
        let outcome = match self.serve(&job.bytes) {
            Ok(()) => Ok(()),
            Err(f)
                if f.splittable()
                    && job.samples > 1
                    && job.starts.len() as u64 == job.samples
                    && self.policy.isolation_max_calls > 0 =>
            {
                self.isolate(job, &f)
            }
            Err(f) => Err((f.reason(), whole(job.samples))),
        };
        self.stats.latency.observe(started.elapsed().as_secs_f64());
        match &outcome {
            Ok(()) => {
                self.stats.batches_ok.inc();
                self.stats.samples_ok.add(job.samples);
            }
            Err((reason, failed)) => {
                let failed_samples: u64 = failed.iter().map(|r| r.end - r.start).sum();
                self.stats.batches_failed.inc();
                self.stats.samples_failed.add(failed_samples);
                self.stats.samples_ok.add(job.samples - failed_samples);
                if let Ok(mut last) = self.stats.last_error.lock() {
                    *last = Some(Untrusted(reason).to_string());
                }
                if let Some(suppressed) = self.warn.allow() {
                    tracing::error!(
                        dispatcher = %self.name, samples = job.samples, failed = failed_samples, suppressed,
                        "Batch failed for this dispatcher: {}", Untrusted(reason)
                    );
                }
            }
        }
        outcome
    }

    /// The batch was refused as a whole: offers its halves, recursively, until the
    /// samples at fault are alone (or `isolation_max_calls` is spent; what is left
    /// untried then fails). Other dispatchers are not involved.
    fn isolate(&mut self, job: &Job, first: &Failed) -> Outcome {
        self.stats.batches_split.inc();
        let n = job.samples as usize;
        let mut reason = first.reason();
        let mut failed: Vec<Range<u64>> = Vec::new();
        let mut todo = vec![(n / 2, n), (0, n / 2)];
        let mut calls = 0;
        while let Some((a, b)) = todo.pop() {
            if a >= b {
                continue;
            }
            if calls >= self.policy.isolation_max_calls || super::abandoned() {
                push_range(&mut failed, a..b);
                continue;
            }
            calls += 1;
            let part = Sealed::part(&job.bytes, &job.starts, a..b);
            match self.serve(&part) {
                Ok(()) => {}
                Err(f) if f.splittable() && b - a > 1 => {
                    let mid = a + (b - a) / 2;
                    todo.push((mid, b));
                    todo.push((a, mid));
                }
                Err(f) => {
                    reason = f.reason();
                    push_range(&mut failed, a..b);
                }
            }
        }
        let failed_samples: u64 = failed.iter().map(|r| r.end - r.start).sum();
        tracing::debug!(
            dispatcher = %self.name, samples = n, failed = failed_samples, calls,
            "Rejected batch tried in parts"
        );
        if failed.is_empty() {
            return Ok(());
        }
        Err((
            format!("{reason} ({failed_samples} of {n} samples; the others were taken)"),
            failed,
        ))
    }

    /// Moves to the version a reload published: the serving instance's state is
    /// snapshotted, a new instance restores it, and the old one is dropped. If the
    /// new version cannot start here, this thread keeps the old one (and says so
    /// in `/status`).
    fn switch_version(&mut self) {
        if self.slot.generation() == self.generation {
            return;
        }
        let (generation, module) = self.slot.current();
        self.generation = generation;
        self.take_snapshot();
        match self.fresh_instance(&module) {
            Ok(inst) => {
                tracing::info!(
                    dispatcher = %self.name, thread = self.index, version = %module.hash,
                    previous = %self.module.hash, "Dispatcher thread now serves the new plugin version"
                );
                self.instance = Some(inst);
                self.module = module;
                self.snapshot_failures = 0;
                self.slot.set_serving(self.index, &self.module.hash);
            }
            Err(e) => {
                if matches!(e, StartFailure::Restore(_)) {
                    self.stats.restore_failures.inc();
                }
                tracing::error!(
                    dispatcher = %self.name, thread = self.index, version = %module.hash, kept = %self.module.hash,
                    "New plugin version failed to start on this thread; it keeps serving the old one: {}",
                    Untrusted(&e.to_string())
                );
            }
        }
    }

    /// A new instance of `module`, given the last state snapshot if there is one.
    fn fresh_instance(&self, module: &PluginModule) -> Result<Instance, StartFailure> {
        let mut inst = Instance::new(module, &self.settings).map_err(StartFailure::Init)?;
        if let Some(state) = &self.state {
            match inst.restore(state, self.settings.timeout) {
                CallOutcome::Ok => {}
                CallOutcome::Failed(f) => return Err(StartFailure::Restore(f)),
                CallOutcome::Retry(m) | CallOutcome::Reject(m) => {
                    self.stats.restore_failures.inc();
                    tracing::warn!(
                        dispatcher = %self.name, version = %module.hash,
                        "Plugin refused its saved state and starts without it: {}", Untrusted(&m)
                    );
                }
            }
        }
        Ok(inst)
    }

    /// The instance this thread serves with, made anew if the last one failed. A
    /// state its own version cannot restore is given up rather than the dispatcher.
    fn ensure_instance(&mut self) -> Result<&mut Instance, Failed> {
        if self.instance.is_none() {
            let inst = match self.fresh_instance(&self.module) {
                Ok(i) => i,
                Err(StartFailure::Restore(f)) => {
                    self.stats.restore_failures.inc();
                    tracing::error!(
                        dispatcher = %self.name, version = %self.module.hash,
                        "collector_restore {f} on the saved state: the plugin starts without it"
                    );
                    self.state = None;
                    Instance::new(&self.module, &self.settings).map_err(|e| {
                        Failed::NoInstance(format!("cannot re-create the plugin instance: {e}"))
                    })?
                }
                Err(StartFailure::Init(e)) => {
                    return Err(Failed::NoInstance(format!(
                        "cannot re-create the plugin instance: {e}"
                    )));
                }
            };
            self.instance = Some(inst);
        }
        self.instance
            .as_mut()
            .ok_or_else(|| Failed::NoInstance("no plugin instance".into()))
    }

    /// Runs one batch (or part) to a final outcome: ok, rejected, broken, or out of retries.
    fn serve(&mut self, bytes: &[u8]) -> Result<(), Failed> {
        let mut backoff = self.policy.backoff_initial;
        let mut retries = 0;
        loop {
            let timeout = self.settings.timeout;
            let inst = self.ensure_instance()?;
            match inst.dispatch(bytes, timeout) {
                CallOutcome::Ok => {
                    self.take_snapshot();
                    return Ok(());
                }
                CallOutcome::Reject(m) => return Err(Failed::Rejected(m)),
                CallOutcome::Retry(m) if retries >= self.policy.max_retries => {
                    return Err(Failed::OutOfRetries(format!(
                        "plugin still asks to retry after {retries} retries: {m}"
                    )));
                }
                CallOutcome::Retry(m) if super::abandoned() => {
                    return Err(Failed::OutOfRetries(format!(
                        "plugin asks to retry, but the shutdown grace period is over: {m}"
                    )));
                }
                CallOutcome::Retry(m) => {
                    retries += 1;
                    self.stats.retries.inc();
                    tracing::debug!(dispatcher = %self.name, retries, "Plugin asked to retry: {}", Untrusted(&m));
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(self.policy.backoff_max);
                }
                CallOutcome::Failed(f) => {
                    // The instance may be in any state: start afresh for the next call.
                    self.instance = None;
                    match &f {
                        Failure::Timeout(_) => self.stats.timeouts.inc(),
                        Failure::Memory(_) => self.stats.memory_refusals.inc(),
                        Failure::Trap(_) => self.stats.traps.inc(),
                    }
                    return Err(Failed::Broken(f));
                }
            }
        }
    }

    /// Keeps the state current, so that a new instance (after a failure or a reload)
    /// resumes from it. A snapshot that fails is treated like a trap (ABI §5.7): the
    /// instance is dropped and the next one restores the previous state.
    fn take_snapshot(&mut self) {
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
                self.stats.snapshot_failures.inc();
                self.snapshot_failures += 1;
                if self.snapshot_failures >= SNAPSHOT_GIVE_UP {
                    tracing::error!(
                        dispatcher = %self.name, version = %self.module.hash, failures = self.snapshot_failures,
                        "collector_snapshot {}; it failed {SNAPSHOT_GIVE_UP} times in a row, so the state \
                         of this version is no longer saved (a new version starts saving again)",
                        Untrusted(&f.to_string())
                    );
                } else if let Some(suppressed) = self.warn.allow() {
                    tracing::error!(
                        dispatcher = %self.name, version = %self.module.hash, suppressed,
                        "collector_snapshot {}: the instance is replaced and resumes from the previous state",
                        Untrusted(&f.to_string())
                    );
                }
            }
        }
    }
}

/// Appends `r` to sorted, disjoint `ranges`, merging it with the last when they touch.
fn push_range(ranges: &mut Vec<Range<u64>>, r: Range<usize>) {
    let r = r.start as u64..r.end as u64;
    match ranges.last_mut() {
        Some(last) if last.end == r.start => last.end = r.end,
        _ => ranges.push(r),
    }
}
