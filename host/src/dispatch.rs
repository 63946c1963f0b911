//! Fan-out: every sealed batch goes to every dispatcher. Each dispatcher has a
//! bounded queue and its own thread(s) running plugin instances, so a slow or
//! failing one holds up nobody but itself. The outcome of each batch, over all
//! dispatchers, is reported back to the source that sent it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::batch::Sealed;
use crate::config::DispatcherConfig;
use crate::plugin::{
    CallOutcome, Failure, Instance, InstanceSettings, PluginError, PluginModule, PluginSlot,
    Runtime,
};
use crate::telemetry::{DispatcherStats, RateLimit};

/// How a batch fared across all dispatchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub samples: u64,
    /// (dispatcher, reason) for each dispatcher that did not take the batch.
    pub failures: Vec<(String, String)>,
}

impl BatchReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Collects the outcome of one batch from each dispatcher.
struct Tracker {
    remaining: AtomicUsize,
    samples: u64,
    failures: Mutex<Vec<(String, String)>>,
    done: Mutex<Option<oneshot::Sender<BatchReport>>>,
}

impl Tracker {
    fn report(&self, dispatcher: &str, result: Result<(), String>) {
        if let Err(reason) = result
            && let Ok(mut f) = self.failures.lock()
        {
            f.push((dispatcher.to_owned(), reason));
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let failures = self
                .failures
                .lock()
                .map(|mut f| std::mem::take(&mut *f))
                .unwrap_or_default();
            if let Some(tx) = self.done.lock().ok().and_then(|mut d| d.take()) {
                let _ = tx.send(BatchReport {
                    samples: self.samples,
                    failures,
                });
            }
        }
    }
}

struct Job {
    bytes: Arc<Vec<u8>>,
    samples: u64,
    tracker: Arc<Tracker>,
}

#[derive(Clone)]
struct Handle {
    name: Arc<str>,
    tx: mpsc::Sender<Job>,
    stats: Arc<DispatcherStats>,
}

/// Sends batches to every dispatcher. Cheap to clone. The set of dispatchers can
/// change while it runs (config reload); a dispatcher taken out of the set stops
/// once its queue is empty.
#[derive(Clone, Default)]
pub struct Fanout {
    handles: Arc<RwLock<Arc<[Handle]>>>,
    full_warn: Arc<RateLimit>,
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

    fn jobs(&self, batch: Sealed) -> (Vec<(Handle, Job)>, oneshot::Receiver<BatchReport>) {
        let handles = self.current();
        let (tx, rx) = oneshot::channel();
        let tracker = Arc::new(Tracker {
            remaining: AtomicUsize::new(handles.len()),
            samples: batch.samples,
            failures: Mutex::new(Vec::new()),
            done: Mutex::new(Some(tx)),
        });
        if handles.is_empty()
            && let Ok(mut done) = tracker.done.lock()
            && let Some(tx) = done.take()
        {
            let _ = tx.send(BatchReport {
                samples: batch.samples,
                failures: vec![],
            });
        }
        let bytes = Arc::new(batch.bytes);
        let jobs = handles
            .iter()
            .map(|h| {
                let job = Job {
                    bytes: bytes.clone(),
                    samples: batch.samples,
                    tracker: tracker.clone(),
                };
                (h.clone(), job)
            })
            .collect();
        (jobs, rx)
    }

    /// Queues the batch for every dispatcher whose queue has room; for the others
    /// the batch fails at once (counted as dropped). For sources that cannot wait (UDP).
    pub fn send_or_drop(&self, batch: Sealed) -> oneshot::Receiver<BatchReport> {
        let (jobs, rx) = self.jobs(batch);
        for (h, job) in jobs {
            h.stats
                .queued
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = h.tx.try_send(job) {
                h.stats
                    .queued
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                h.stats.batches_dropped.inc();
                h.stats.samples_failed.add(job.samples);
                if let Some(suppressed) = self.full_warn.allow() {
                    tracing::warn!(
                        dispatcher = %h.name, samples = job.samples, suppressed,
                        "Dispatcher queue full: batch dropped for this dispatcher"
                    );
                }
                job.tracker.report(&h.name, Err("queue full".into()));
            }
        }
        rx
    }

    /// Queues the batch for every dispatcher, waiting for room. For sources that
    /// can hold back their input (AMQP).
    pub async fn send_wait(&self, batch: Sealed) -> oneshot::Receiver<BatchReport> {
        let (jobs, rx) = self.jobs(batch);
        for (h, job) in jobs {
            h.stats
                .queued
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(mpsc::error::SendError(job)) = h.tx.send(job).await {
                h.stats
                    .queued
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                job.tracker
                    .report(&h.name, Err("dispatcher stopped".into()));
            }
        }
        rx
    }
}

/// A running dispatcher: its queue, threads, plugin slot and counters.
pub struct Dispatcher {
    pub cfg: DispatcherConfig,
    handle: Handle,
    pub loaded: Loaded,
    pub stats: Arc<DispatcherStats>,
    threads: Vec<JoinHandle<()>>,
}

impl Dispatcher {
    /// Stops taking batches (once no batch holds its queue) and returns its threads,
    /// which finish what is queued and exit.
    pub fn retire(self) -> Vec<JoinHandle<()>> {
        self.threads
    }
}

/// A running dispatcher's plugin: where it came from and where new versions go.
#[derive(Clone)]
pub struct Loaded {
    pub dispatcher: Arc<str>,
    pub source: crate::config::PluginSource,
    pub slot: Arc<PluginSlot>,
    pub settings: InstanceSettings,
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

/// Retry policy for batches a plugin answered `retry` to.
#[derive(Clone, Copy, Debug)]
struct RetryPolicy {
    max_retries: u32,
    initial: Duration,
    max: Duration,
}

/// Compiles the plugin, starts its instances and threads. Blocking (JIT).
///
/// # Errors
/// Naming the dispatcher and why, when its plugin cannot be loaded or started.
pub fn start_one(runtime: &Arc<Runtime>, cfg: &DispatcherConfig) -> Result<Dispatcher, StartError> {
    let fail = |source| StartError {
        name: cfg.name.clone(),
        plugin: cfg.plugin.clone(),
        source,
    };
    let wasm = crate::plugin::read_plugin(&cfg.plugin_source()).map_err(fail)?;
    let module = runtime.compile(&cfg.name, &wasm).map_err(fail)?;
    let settings = instance_settings(cfg).map_err(fail)?;
    let policy = RetryPolicy {
        max_retries: cfg.max_retries,
        initial: Duration::from_millis(cfg.retry_backoff_ms),
        max: Duration::from_millis(cfg.retry_backoff_max_ms.max(cfg.retry_backoff_ms)),
    };
    // Every instance is made before any thread starts: a plugin that cannot start
    // leaves nothing behind.
    let mut instances = Vec::new();
    for _ in 0..cfg.instances {
        instances.push(Instance::new(&module, &settings).map_err(fail)?);
    }
    let (tx, rx) = mpsc::channel::<Job>(cfg.queue_batches);
    let rx = Arc::new(Mutex::new(rx));
    let stats = Arc::new(DispatcherStats::default());
    let name: Arc<str> = cfg.name.as_str().into();
    tracing::info!(
        dispatcher = %name, plugin = %cfg.plugin, version = %module.hash, instances = cfg.instances,
        "Plugin loaded"
    );
    let slot = Arc::new(PluginSlot::new(module.clone()));
    let loaded = Loaded {
        dispatcher: name.clone(),
        source: cfg.plugin_source(),
        slot: slot.clone(),
        settings: settings.clone(),
    };
    let mut threads = Vec::new();
    for (i, instance) in instances.into_iter().enumerate() {
        let w = Worker {
            name: name.clone(),
            slot: slot.clone(),
            generation: slot.generation(),
            module: module.clone(),
            settings: settings.clone(),
            instance: Some(instance),
            state: None,
            policy,
            stats: stats.clone(),
            warn: RateLimit::default(),
        };
        let rx = rx.clone();
        let t = std::thread::Builder::new()
            .name(format!("dispatch-{}-{i}", cfg.name))
            .spawn(move || w.run(&rx))
            .map_err(|e| fail(PluginError::Wasm(format!("cannot start thread: {e}"))))?;
        threads.push(t);
    }
    Ok(Dispatcher {
        cfg: cfg.clone(),
        handle: Handle {
            name,
            tx,
            stats: stats.clone(),
        },
        loaded,
        stats,
        threads,
    })
}

/// Instance settings from a dispatcher's config; creates granted directories.
///
/// # Errors
/// When a granted directory cannot be created.
pub fn instance_settings(cfg: &DispatcherConfig) -> Result<InstanceSettings, PluginError> {
    let mut dirs = Vec::new();
    for g in &cfg.dirs {
        std::fs::create_dir_all(&g.host).map_err(|e| PluginError::Read {
            path: g.host.display().to_string(),
            reason: format!("cannot create granted directory: {e}"),
        })?;
        dirs.push((g.host.clone(), g.guest.clone(), g.writable));
    }
    Ok(InstanceSettings {
        timeout: Duration::from_millis(cfg.timeout_ms),
        memory_limit_bytes: cfg.memory_limit_bytes,
        dirs,
        config_json: cfg.config_json(),
    })
}

/// One dispatcher thread: takes batches off the queue and runs them through its instance.
struct Worker {
    name: Arc<str>,
    /// Where reloads publish new versions, and the generation this thread serves.
    slot: Arc<PluginSlot>,
    generation: u64,
    module: PluginModule,
    settings: InstanceSettings,
    instance: Option<Instance>,
    /// The plugin's last snapshot (plugins that export `collector_snapshot`).
    state: Option<Vec<u8>>,
    policy: RetryPolicy,
    stats: Arc<DispatcherStats>,
    warn: RateLimit,
}

impl Worker {
    fn run(mut self, rx: &Mutex<mpsc::Receiver<Job>>) {
        loop {
            let job = match rx.lock() {
                Ok(mut r) => r.blocking_recv(),
                Err(_) => None,
            };
            let Some(job) = job else { break };
            self.stats
                .queued
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            if self.slot.generation() != self.generation {
                self.switch_version();
            }
            let started = std::time::Instant::now();
            let result = self.serve(&job.bytes);
            self.stats.latency.observe(started.elapsed().as_secs_f64());
            match &result {
                Ok(()) => {
                    self.stats.batches_ok.inc();
                    self.stats.samples_ok.add(job.samples);
                }
                Err(reason) => {
                    self.stats.batches_failed.inc();
                    self.stats.samples_failed.add(job.samples);
                    if let Ok(mut last) = self.stats.last_error.lock() {
                        *last = Some(reason.clone());
                    }
                    if let Some(suppressed) = self.warn.allow() {
                        tracing::error!(
                            dispatcher = %self.name, samples = job.samples, suppressed,
                            "Batch failed for this dispatcher: {reason}"
                        );
                    }
                }
            }
            job.tracker.report(&self.name, result);
        }
        tracing::debug!(dispatcher = %self.name, "Dispatcher thread stopped");
    }

    /// Moves to the version a reload published: new instance, state handed over,
    /// old instance dropped. If the new version cannot start here, keeps the old one.
    fn switch_version(&mut self) {
        let (generation, module) = self.slot.current();
        self.generation = generation;
        if let Some(inst) = self.instance.as_mut()
            && let Ok(Some(state)) = inst.snapshot(self.settings.timeout)
        {
            self.state = Some(state);
        }
        match self.fresh_instance(&module) {
            Ok(inst) => {
                tracing::info!(
                    dispatcher = %self.name, version = %module.hash, previous = %self.module.hash,
                    "Dispatcher thread now serves the new plugin version"
                );
                self.instance = Some(inst);
                self.module = module;
            }
            Err(e) => tracing::error!(
                dispatcher = %self.name, version = %module.hash, kept = %self.module.hash,
                "New plugin version failed to start on this thread; keeping the old one: {e}"
            ),
        }
    }

    /// A new instance of `module`, given the last state snapshot if there is one.
    fn fresh_instance(&self, module: &PluginModule) -> Result<Instance, PluginError> {
        let mut inst = Instance::new(module, &self.settings)?;
        if let Some(state) = &self.state {
            match inst.restore(state, self.settings.timeout) {
                CallOutcome::Ok => {}
                CallOutcome::Failed(f) => return Err(PluginError::Init(format!("restore {f}"))),
                CallOutcome::Retry(m) | CallOutcome::Reject(m) => {
                    tracing::warn!(dispatcher = %self.name, "Plugin refused its saved state: {m}")
                }
            }
        }
        Ok(inst)
    }

    /// Runs one batch to a final outcome: ok, rejected, failed, or out of retries.
    fn serve(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut backoff = self.policy.initial;
        let mut retries = 0;
        loop {
            if self.instance.is_none() {
                match self.fresh_instance(&self.module) {
                    Ok(i) => self.instance = Some(i),
                    Err(e) => return Err(format!("cannot re-create the plugin instance: {e}")),
                }
            }
            let Some(inst) = self.instance.as_mut() else {
                continue;
            };
            match inst.dispatch(bytes, self.settings.timeout) {
                CallOutcome::Ok => {
                    // Keep the state current, so that a new instance can resume from it.
                    if let Ok(Some(state)) = inst.snapshot(self.settings.timeout) {
                        self.state = Some(state);
                    }
                    return Ok(());
                }
                CallOutcome::Reject(m) => return Err(format!("plugin rejected the batch: {m}")),
                CallOutcome::Retry(m) if retries >= self.policy.max_retries => {
                    return Err(format!(
                        "plugin still asks to retry after {retries} retries: {m}"
                    ));
                }
                CallOutcome::Retry(m) => {
                    retries += 1;
                    self.stats.retries.inc();
                    tracing::debug!(dispatcher = %self.name, retries, "Plugin asked to retry: {m}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(self.policy.max);
                }
                CallOutcome::Failed(f) => {
                    // The instance may be in any state: start afresh for the next batch.
                    self.instance = None;
                    match &f {
                        Failure::Timeout(_) => self.stats.timeouts.inc(),
                        Failure::Memory(_) => self.stats.memory_refusals.inc(),
                        Failure::Trap(_) => self.stats.traps.inc(),
                    }
                    return Err(format!("plugin {f}"));
                }
            }
        }
    }
}
