//! One dispatcher thread: takes batches off its dispatcher's queue and runs each
//! through its plugin instance to a final outcome.
//!
//! - `retry` answers are retried with capped exponential backoff for as long as
//!   the plugin answers `retry` (a backend that is down is not a poison batch),
//!   unless `max_retries` sets a limit; retrying stops when the grace period of
//!   a shutdown is over or a config reload replaced the dispatcher, and the batch
//!   then fails *transiently* (an AMQP message holding it goes back to its queue
//!   without counting toward `max_deliveries`). A source may ask more of a
//!   batch ([`Terms`]): retried whatever `max_retries` says (TCP), or withdrawn
//!   (HTTP, once its request was answered). A trap, timeout or memory refusal
//!   drops the instance, and the next batch gets a fresh one (from the last state
//!   snapshot).
//! - A batch the plugin rejects is offered again in halves, to this
//!   dispatcher alone, until the samples at fault are isolated: the others are
//!   taken, and only the failed ones are reported to the source (whose AMQP
//!   messages holding them are the only ones to pay for it).
//! - Versions and state are the plugin's business
//!   ([`Serving`](crate::plugin::handoff::Serving)): this thread asks it for an
//!   instance, tells it when one failed, and when a batch was accepted.
//! - A panic anywhere in the thread's work is caught: the batch fails, the
//!   instance is dropped, the panic is counted and logged, the dispatcher shows
//!   unhealthy in `/readyz` until it completes a batch again, and the daemon
//!   exits non-zero at the end (the `worker_panics` of [`crate::Summary`]).

use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::report::{Failed as FailedSamples, Outcome, Tracker, whole};
use crate::batch::Sealed;
use crate::plugin::handoff::Serving;
use crate::plugin::{CallOutcome, Failure};
use crate::telemetry::DispatcherStats;
use crate::telemetry::events::{
    BatchDispatched, BatchSplit, DispatchFailed, DispatcherWorkerPanicked, PluginRetried,
};

/// One batch for one dispatcher.
pub struct Job {
    pub bytes: Arc<crate::batch_buffers::BatchBytes>,
    /// Where each sample starts in `bytes` (see [`Sealed::part`]).
    pub starts: Arc<Vec<usize>>,
    pub samples: u64,
    pub tracker: Arc<Tracker>,
    /// What its source asks of the dispatchers for it.
    pub terms: Terms,
}

/// What a source asks of every dispatcher for one batch, beyond the
/// dispatcher's own policy.
#[derive(Clone, Debug, Default)]
pub struct Terms {
    /// Retried for as long as the plugin answers `retry`, whatever
    /// `max_retries` says: the source holds its input back meanwhile (TCP), so
    /// giving up would lose what it can still deliver. The shutdown deadline
    /// and a config reload still stop it.
    pub persistent: bool,
    /// Set when the source no longer wants the batch (HTTP: its request was
    /// answered, and the client was told it was not taken): a dispatcher that
    /// has not started it skips it, and retries stop.
    pub withdrawn: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Terms {
    fn is_withdrawn(&self) -> bool {
        self.withdrawn
            .as_ref()
            .is_some_and(|w| w.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// The queue every thread of a dispatcher takes its batches from.
pub type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>;

/// How a dispatcher treats batches that do not go through at once.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Retries of a batch the plugin answers `retry` to (`None`: until it is
    /// taken, the daemon stops or the dispatcher is replaced).
    pub max_retries: Option<u32>,
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

/// Longest sleep between two looks at the stop flags while a retry waits.
const BACKOFF_SLICE: Duration = Duration::from_millis(50);

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

    /// Not the samples' doing: the backend kept asking for time, or the
    /// dispatcher could not make an instance.
    fn transient(&self) -> bool {
        matches!(self, Failed::OutOfRetries(_) | Failed::NoInstance(_))
    }

    fn of(&self, samples: Vec<Range<u64>>) -> FailedSamples {
        FailedSamples {
            reason: self.reason(),
            samples,
            transient: self.transient(),
        }
    }
}

/// One dispatcher thread and its plugin instance.
pub struct Worker {
    /// This thread's index among the dispatcher's instances.
    pub index: usize,
    /// Its version, instance and saved state.
    pub serving: Serving,
    pub policy: Policy,
    pub stats: Arc<DispatcherStats>,
    /// Set at the shutdown deadline: fail what is queued, stop retrying.
    pub abandon: super::Abandon,
    /// Set when a config reload replaced the dispatcher: stop retrying.
    pub retired: Arc<std::sync::atomic::AtomicBool>,
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
        let mut wake = self.serving.subscribe();
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
                    if let Err(why) = self.guarded(|w| w.serving.switch_version()) {
                        tracing::error!(dispatcher = %self.stats.name, "While switching versions: {why}");
                    }
                }
                Next::Job(job) => {
                    self.stats.counts.dispatcher_queued_batches.dec();
                    if self.abandon.is_set() {
                        let why = "shutdown: the grace period was over";
                        self.count_failed(job.samples, why);
                        job.tracker.fail_all(&self.stats.name, why);
                        continue;
                    }
                    if job.terms.is_withdrawn() {
                        let why = "withdrawn by its source before it was served";
                        self.count_failed(job.samples, why);
                        job.tracker.fail_all(&self.stats.name, why);
                        continue;
                    }
                    let outcome = match self.guarded(|w| {
                        w.serving.switch_version();
                        w.handle(&job)
                    }) {
                        Ok(outcome) => {
                            self.stats.counts.dispatcher_healthy.set(true);
                            outcome
                        }
                        Err(why) => {
                            self.count_failed(job.samples, &why);
                            Err(FailedSamples {
                                reason: why,
                                samples: whole(job.samples),
                                transient: false,
                            })
                        }
                    };
                    job.tracker.report(&self.stats.name, outcome);
                }
            }
        }
        tracing::debug!(dispatcher = %self.stats.name, "Dispatcher thread stopped");
    }

    /// A batch that failed before [`Worker::handle`] could count it.
    fn count_failed(&self, samples: u64, reason: &str) {
        DispatchFailed {
            samples,
            failed: samples,
            reason,
            elapsed: None,
        }
        .emit(&self.stats);
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
                self.serving.discard();
                Err(DispatcherWorkerPanicked {
                    thread: self.index,
                    what: &what,
                }
                .emit(&self.stats))
            }
        }
    }

    /// One batch to its final outcome, counted.
    fn handle(&mut self, job: &Job) -> Outcome {
        if std::mem::take(&mut self.inject_panic) {
            panic!("fault injected by COLLECTOR_FAULT_PANIC_DISPATCHER");
        }
        let started = Instant::now();
        let outcome = match self.serve(&job.bytes, &job.terms) {
            Ok(()) => Ok(()),
            Err(f)
                if f.splittable()
                    && job.samples > 1
                    && job.starts.len() as u64 == job.samples
                    && self.policy.isolation_max_calls > 0 =>
            {
                self.isolate(job, &f)
            }
            Err(f) => Err(f.of(whole(job.samples))),
        };
        let elapsed = started.elapsed();
        match &outcome {
            Ok(()) => BatchDispatched {
                samples: job.samples,
                elapsed,
            }
            .emit(&self.stats),
            Err(f) => DispatchFailed {
                samples: job.samples,
                failed: f.samples.iter().map(|r| r.end - r.start).sum(),
                reason: &f.reason,
                elapsed: Some(elapsed),
            }
            .emit(&self.stats),
        }
        outcome
    }

    /// The batch was refused as a whole: offers its halves, recursively, until the
    /// samples at fault are alone (or `isolation_max_calls` is spent; what is left
    /// untried then fails). Other dispatchers are not involved.
    fn isolate(&mut self, job: &Job, first: &Failed) -> Outcome {
        let n = job.samples as usize;
        let mut reason = first.reason();
        let mut transient = first.transient();
        let mut failed: Vec<Range<u64>> = Vec::new();
        let mut todo = vec![(n / 2, n), (0, n / 2)];
        let mut calls = 0;
        while let Some((a, b)) = todo.pop() {
            if a >= b {
                continue;
            }
            if calls >= self.policy.isolation_max_calls
                || self.abandon.is_set()
                || job.terms.is_withdrawn()
            {
                if job.terms.is_withdrawn() {
                    transient = true;
                    reason = "withdrawn by its source while its parts were tried".into();
                }
                push_range(&mut failed, a..b);
                continue;
            }
            calls += 1;
            let part = Sealed::part(&job.bytes, &job.starts, a..b);
            match self.serve(&part, &job.terms) {
                Ok(()) => {}
                Err(f) if f.splittable() && b - a > 1 => {
                    let mid = a + (b - a) / 2;
                    todo.push((mid, b));
                    todo.push((a, mid));
                }
                Err(f) => {
                    reason = f.reason();
                    transient = f.transient();
                    push_range(&mut failed, a..b);
                }
            }
        }
        let failed_samples: u64 = failed.iter().map(|r| r.end - r.start).sum();
        BatchSplit {
            samples: n as u64,
            failed: failed_samples,
            calls,
        }
        .emit(&self.stats);
        if failed.is_empty() {
            return Ok(());
        }
        Err(FailedSamples {
            reason: format!("{reason} ({failed_samples} of {n} samples; the others were taken)"),
            samples: failed,
            transient,
        })
    }

    /// Runs one batch (or part) to a final outcome: ok, rejected, broken, or out of retries.
    fn serve(&mut self, bytes: &[u8], terms: &Terms) -> Result<(), Failed> {
        let mut backoff = self.policy.backoff_initial;
        let mut retries = 0;
        loop {
            let timeout = self.serving.timeout();
            let inst = self.serving.instance().map_err(Failed::NoInstance)?;
            match inst.dispatch(bytes, timeout) {
                CallOutcome::Ok => {
                    self.serving.take_snapshot();
                    return Ok(());
                }
                CallOutcome::Reject(m) => return Err(Failed::Rejected(m)),
                CallOutcome::Retry(m)
                    if !terms.persistent
                        && self.policy.max_retries.is_some_and(|n| retries >= n) =>
                {
                    return Err(Failed::OutOfRetries(format!(
                        "plugin still asks to retry after {retries} retries: {m}"
                    )));
                }
                CallOutcome::Retry(m) if self.abandon.is_set() => {
                    return Err(Failed::OutOfRetries(format!(
                        "plugin asks to retry, but the shutdown grace period is over: {m}"
                    )));
                }
                CallOutcome::Retry(m) if terms.is_withdrawn() => {
                    return Err(Failed::OutOfRetries(format!(
                        "plugin asks to retry, but the source withdrew the batch: {m}"
                    )));
                }
                CallOutcome::Retry(m)
                    if self.retired.load(std::sync::atomic::Ordering::Relaxed) =>
                {
                    return Err(Failed::OutOfRetries(format!(
                        "plugin asks to retry, but a config reload replaced the dispatcher: {m}"
                    )));
                }
                CallOutcome::Retry(m) => {
                    retries += 1;
                    PluginRetried {
                        retries,
                        message: &m,
                    }
                    .emit(&self.stats);
                    self.sleep_unless_stopped(backoff, terms);
                    backoff = (backoff * 2).min(self.policy.backoff_max);
                }
                CallOutcome::Failed(f) => {
                    // The instance may be in any state: start afresh for the next call.
                    self.serving.discard();
                    let counter = match &f {
                        Failure::Timeout(_) => &self.stats.counts.plugin_timeouts,
                        Failure::Memory(_) => &self.stats.counts.plugin_memory_refusals,
                        Failure::Trap(_) => &self.stats.counts.plugin_traps,
                    };
                    counter.inc();
                    return Err(Failed::Broken(f));
                }
            }
        }
    }
}

impl Worker {
    /// Sleeps `d`, waking early when the grace period is over, the dispatcher
    /// was replaced or the source withdrew the batch (the next retry then stops).
    fn sleep_unless_stopped(&self, d: Duration, terms: &Terms) {
        let until = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= until
                || self.abandon.is_set()
                || terms.is_withdrawn()
                || self.retired.load(std::sync::atomic::Ordering::Relaxed)
            {
                return;
            }
            std::thread::sleep((until - now).min(BACKOFF_SLICE));
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
