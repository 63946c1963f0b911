//! Fan-out: every sealed batch goes to every dispatcher. Each dispatcher has a
//! bounded queue and its own thread(s) running plugin instances ([`worker`]), so a
//! slow or failing one holds up nobody but itself. The outcome of each batch, over
//! all dispatchers, is reported back to the source that sent it ([`report`]).

pub mod report;
pub mod worker;

use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

pub use report::{BatchReport, DispatchFailure, Failed};

use crate::batch::Sealed;
use crate::config::DispatcherConfig;
use crate::plugin::handoff::Serving;
use crate::plugin::{Instance, InstanceSettings, Loaded, PluginError, PluginSlot, Runtime};
use crate::telemetry::DispatcherStats;
use crate::telemetry::events::{BatchDropped, DispatchFailed};
use report::Tracker;
pub use worker::Terms;
use worker::{Job, Policy, Queue, Worker};

#[derive(Clone)]
struct Handle {
    tx: mpsc::Sender<Job>,
    stats: Arc<DispatcherStats>,
}

/// Sends batches to every dispatcher. Cheap to clone. The set of dispatchers can
/// change while it runs (config reload); a dispatcher taken out of the set stops
/// once its queue is empty.
#[derive(Clone, Default)]
pub struct Fanout {
    handles: Arc<RwLock<Arc<[Handle]>>>,
    /// Set at the shutdown deadline, for every dispatcher this fan-out feeds.
    pub abandon: Abandon,
}

impl Fanout {
    /// The dispatchers a batch goes to now.
    fn current(&self) -> Arc<[Handle]> {
        match self.handles.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Makes `dispatchers` the set every following batch goes to.
    pub fn install(&self, dispatchers: &[Dispatcher]) {
        let set: Arc<[Handle]> = dispatchers.iter().map(|d| d.handle.clone()).collect();
        match self.handles.write() {
            Ok(mut h) => *h = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
    }

    fn jobs(
        &self,
        batch: Sealed,
        terms: &Terms,
    ) -> (Vec<(Handle, Job)>, oneshot::Receiver<BatchReport>) {
        let handles = self.current();
        let (jobs, rx) = jobs_for(handles.len(), batch, terms);
        (handles.iter().cloned().zip(jobs).collect(), rx)
    }

    /// Queues the batch for every dispatcher whose queue has room; for the others
    /// the batch fails at once (counted as dropped). For sources that cannot wait (UDP).
    pub fn send_or_drop(&self, batch: Sealed) -> oneshot::Receiver<BatchReport> {
        let (jobs, rx) = self.jobs(batch, &Terms::default());
        for (h, job) in jobs {
            let queued = &h.stats.counts.dispatcher_queued_batches;
            queued.inc();
            if let Err(e) = h.tx.try_send(job) {
                queued.dec();
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                BatchDropped {
                    samples: job.samples,
                }
                .emit(&h.stats);
                job.tracker.fail_all(&h.stats.name, "queue full");
            }
        }
        rx
    }

    /// Queues the batch for every dispatcher, waiting for room. For sources that
    /// can hold back their input (AMQP).
    pub async fn send_wait(&self, batch: Sealed) -> oneshot::Receiver<BatchReport> {
        self.send_wait_with(batch, &Terms::default()).await
    }

    /// [`Fanout::send_wait`], with `terms` for every dispatcher.
    pub async fn send_wait_with(
        &self,
        batch: Sealed,
        terms: &Terms,
    ) -> oneshot::Receiver<BatchReport> {
        let (jobs, rx) = self.jobs(batch, terms);
        for (h, job) in jobs {
            // Room first, then count it: a send cancelled while it waits leaves
            // the gauge as it was.
            match h.tx.reserve().await {
                Ok(permit) => {
                    h.stats.counts.dispatcher_queued_batches.inc();
                    permit.send(job);
                }
                Err(_) => {
                    let reason = "dispatcher stopped";
                    DispatchFailed {
                        samples: job.samples,
                        failed: job.samples,
                        reason,
                        elapsed: None,
                    }
                    .emit(&h.stats);
                    job.tracker.fail_all(&h.stats.name, reason);
                }
            }
        }
        rx
    }

    /// Queues the batch for every dispatcher if all of them have room by
    /// `deadline`, and for none otherwise: the batch is handed back then. For
    /// sources that answer their client (HTTP), which must know whether the
    /// samples were taken.
    ///
    /// # Errors
    /// The batch, when some dispatcher's queue had no room by `deadline`.
    pub async fn send_by(
        &self,
        batch: Sealed,
        terms: &Terms,
        deadline: tokio::time::Instant,
    ) -> Result<oneshot::Receiver<BatchReport>, Sealed> {
        let handles = self.current();
        // Room in every queue at once, without holding one queue's room while
        // waiting for another's (a full dispatcher must not starve the others
        // of the slots a waiting request would hold): take what is free now;
        // if a queue is full, give it all back, wait for that queue, try again.
        let permits = loop {
            let mut permits = Vec::with_capacity(handles.len());
            let mut full = None;
            for h in handles.iter() {
                match h.tx.try_reserve() {
                    Ok(p) => permits.push(Some(p)),
                    // A closed queue: that dispatcher's part fails below.
                    Err(mpsc::error::TrySendError::Closed(())) => permits.push(None),
                    Err(mpsc::error::TrySendError::Full(())) => {
                        full = Some(h);
                        break;
                    }
                }
            }
            let Some(h) = full else { break permits };
            drop(permits);
            match tokio::time::timeout_at(deadline, h.tx.reserve()).await {
                // Room now (given back at once: the loop takes it again with the rest).
                Ok(Ok(_)) | Ok(Err(_)) => {}
                Err(_) => return Err(batch),
            }
        };
        let (jobs, rx) = jobs_for(handles.len(), batch, terms);
        for ((h, permit), job) in handles.iter().zip(permits).zip(jobs) {
            match permit {
                Some(p) => {
                    h.stats.counts.dispatcher_queued_batches.inc();
                    p.send(job);
                }
                None => job.tracker.fail_all(&h.stats.name, "dispatcher stopped"),
            }
        }
        Ok(rx)
    }
}

/// One job of `batch` for each of `n` dispatchers, and where their outcome comes.
fn jobs_for(n: usize, batch: Sealed, terms: &Terms) -> (Vec<Job>, oneshot::Receiver<BatchReport>) {
    let (tracker, rx) = Tracker::new(n, batch.samples);
    let tracker = Arc::new(tracker);
    let bytes = Arc::new(batch.bytes);
    let starts = Arc::new(batch.starts);
    let jobs = (0..n)
        .map(|_| Job {
            bytes: bytes.clone(),
            starts: starts.clone(),
            samples: batch.samples,
            tracker: tracker.clone(),
            terms: terms.clone(),
        })
        .collect();
    (jobs, rx)
}

/// A running dispatcher: its queue, threads, plugin slot and counters.
pub struct Dispatcher {
    pub cfg: DispatcherConfig,
    handle: Handle,
    pub loaded: Loaded,
    pub stats: Arc<DispatcherStats>,
    threads: Vec<JoinHandle<()>>,
    /// Set by [`Dispatcher::retire`]: its threads stop retrying.
    retired: Arc<std::sync::atomic::AtomicBool>,
}

impl Dispatcher {
    /// Stops taking batches (once no batch holds its queue) and returns its
    /// threads, which finish what is queued (without retrying: a batch the plugin
    /// answers `retry` to fails transiently) and exit.
    pub fn retire(self) -> Vec<JoinHandle<()>> {
        self.retired
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads
    }
}

/// A dispatcher that could not be started.
#[derive(Debug, thiserror::Error)]
#[error("dispatcher `{name}` ({plugin}): {source}")]
pub struct StartError {
    pub name: String,
    pub plugin: String,
    #[source]
    pub source: PluginError,
}

/// Compiles the plugin, starts its instances and threads, counting into `stats`.
/// Blocking (JIT).
///
/// # Errors
/// Naming the dispatcher and why, when its plugin cannot be loaded or started.
pub fn start_one(
    runtime: &Arc<Runtime>,
    cfg: &DispatcherConfig,
    stats: Arc<DispatcherStats>,
    endpoints: crate::egress::Endpoints,
    abandon: &Abandon,
) -> Result<Dispatcher, StartError> {
    let fail = |source| StartError {
        name: cfg.name.clone(),
        plugin: cfg.plugin.to_string(),
        source,
    };
    let wasm = crate::plugin::read_plugin(&cfg.plugin).map_err(fail)?;
    let module = runtime.compile(&cfg.name, &wasm).map_err(fail)?;
    let settings = InstanceSettings::for_dispatcher(
        cfg,
        stats.counts.plugin_log_lines_suppressed.clone(),
        endpoints,
    )
    .map_err(fail)?;
    let policy = Policy {
        max_retries: cfg.max_retries,
        backoff_initial: cfg.retry_backoff,
        backoff_max: cfg.retry_backoff_max.max(cfg.retry_backoff),
        isolation_max_calls: cfg.isolation_max_calls,
    };
    // The worker threads run WASI file I/O on the daemon's runtime (see `Worker::run`).
    let rt = tokio::runtime::Handle::try_current().map_err(|e| fail(PluginError::NoRuntime(e)))?;
    // Every instance is made before any thread starts: a plugin that cannot start
    // leaves nothing behind.
    let mut instances = Vec::new();
    for _ in 0..cfg.instances {
        instances.push(Instance::new(&module, &settings).map_err(fail)?);
    }
    let (tx, rx) = mpsc::channel::<Job>(cfg.queue_batches);
    let queue: Queue = Arc::new(tokio::sync::Mutex::new(rx));
    let name: Arc<str> = cfg.name.as_str().into();
    tracing::info!(
        dispatcher = %name, plugin = %cfg.plugin, version = %module.hash, instances = cfg.instances,
        "Plugin loaded"
    );
    let slot = Arc::new(PluginSlot::new(module.clone(), cfg.instances));
    let loaded = Loaded {
        dispatcher: name.clone(),
        source: cfg.plugin.clone(),
        slot: slot.clone(),
        settings: settings.clone(),
    };
    let inject_panic = fault_injected(&cfg.name);
    let retired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for (i, instance) in instances.into_iter().enumerate() {
        let w = Worker {
            index: i,
            serving: Serving::new(slot.clone(), i, instance, settings.clone(), stats.clone()),
            policy,
            stats: stats.clone(),
            abandon: abandon.clone(),
            retired: retired.clone(),
            inject_panic: inject_panic && i == 0,
        };
        let (queue, rt) = (queue.clone(), rt.clone());
        let t = std::thread::Builder::new()
            .name(format!("dispatch-{}-{i}", cfg.name))
            .spawn(move || w.run(&queue, &rt))
            .map_err(|source| {
                fail(PluginError::Io {
                    context: "cannot start a dispatcher thread",
                    source,
                })
            })?;
        threads.push(t);
    }
    Ok(Dispatcher {
        cfg: cfg.clone(),
        handle: Handle {
            tx,
            stats: stats.clone(),
        },
        loaded,
        stats,
        threads,
        retired,
    })
}

/// Set when the shutdown grace period is over: the dispatcher threads of one
/// daemon then fail what is still queued instead of serving it, and stop
/// retrying, so that the process can exit when the deadline says. One per
/// daemon (not a process global: daemons run in-process in tests).
#[derive(Clone, Debug, Default)]
pub struct Abandon(Arc<std::sync::atomic::AtomicBool>);

impl Abandon {
    /// The grace period is over: every dispatcher fails its queue and stops.
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// True once [`Abandon::set`] was called.
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Debug builds only: `COLLECTOR_FAULT_PANIC_DISPATCHER=NAME` makes the first
/// batch of dispatcher NAME panic in its worker, for the test of the panic guard.
/// Release builds ignore it.
fn fault_injected(name: &str) -> bool {
    cfg!(debug_assertions)
        && std::env::var("COLLECTOR_FAULT_PANIC_DISPATCHER").is_ok_and(|v| v == name)
}
