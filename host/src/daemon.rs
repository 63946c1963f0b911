//! The running daemon: dispatchers, sources, the plugin watcher and the admin
//! endpoint, and how a new configuration replaces the running one.
//!
//! A reload (SIGHUP, or the config file changing) is all or nothing: the new
//! file is parsed and validated, new and changed dispatchers are started and
//! new sources bound *before* anything running is touched; if any step fails,
//! the running configuration stays and the error is logged. Then the new
//! dispatcher set takes over between two batches (old ones finish their queue),
//! and sources whose settings changed are replaced: the new source starts, the
//! old one stops reading, flushes its open batch and (AMQP) settles its acks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::admin;
use crate::config::{Config, SourcesConfig};
use crate::dispatch::{self, Dispatcher, Fanout};
use crate::plugin::{self, Runtime, reload::ReloadStats};
use crate::source::SourceContext;
use crate::source::amqp::AmqpSource;
use crate::source::udp::UdpSource;
use crate::telemetry::{ConfigReloadStats, SourceStats};
use crate::{RunError, Summary};

/// One generation of sources, stopped together.
struct Sources {
    cfg: SourcesConfig,
    batch: crate::config::BatchConfig,
    secret: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    stats: Vec<(&'static str, Arc<SourceStats>)>,
    grace: Duration,
}

impl Sources {
    /// Binds and starts every configured source.
    fn start(cfg: &Config, fanout: &Fanout) -> Result<Sources, RunError> {
        let (stop, stop_rx) = watch::channel(false);
        let secret: Arc<[u8]> = cfg.telemetry_secret.as_bytes().into();
        if secret.is_empty() {
            tracing::warn!("telemetry_secret is empty: sample signatures are not verified");
        }
        let mut tasks = Vec::new();
        let mut stats = Vec::new();
        let context = |s: &Arc<SourceStats>| SourceContext {
            batch: cfg.batch,
            secret: secret.clone(),
            fanout: fanout.clone(),
            stats: s.clone(),
            grace: cfg.shutdown.grace_period,
        };
        if let Some(u) = &cfg.sources.udp {
            let src = UdpSource::bind(u).map_err(|source| RunError::Bind {
                what: "UDP",
                address: u.address,
                source,
            })?;
            let addr = src
                .local_addr()
                .map_err(|e| RunError::Internal(e.to_string()))?;
            tracing::info!(address = %addr, "UDP source listening");
            let s = Arc::new(SourceStats::default());
            stats.push(("udp", s.clone()));
            tasks.push(tokio::spawn(src.run(context(&s), stop_rx.clone())));
        }
        if let Some(a) = &cfg.sources.amqp {
            let url = a.broker_url().to_owned();
            let s = Arc::new(SourceStats::default());
            stats.push(("amqp", s.clone()));
            let src = AmqpSource::new(a.clone(), url, context(&s));
            tasks.push(tokio::spawn(src.run(stop_rx.clone())));
        }
        Ok(Sources {
            cfg: cfg.sources.clone(),
            batch: cfg.batch,
            secret: cfg.telemetry_secret.clone(),
            stop,
            tasks,
            stats,
            grace: cfg.shutdown.grace_period,
        })
    }

    fn same_settings(&self, cfg: &Config) -> bool {
        self.cfg == cfg.sources && self.batch == cfg.batch && self.secret == cfg.telemetry_secret
    }

    /// Stops reading; returns when every open batch is flushed (and AMQP settled),
    /// or at `deadline`, leaving what is not finished (it is counted and logged).
    async fn stop(self, deadline: Instant) {
        let _ = self.stop.send(true);
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout_at(deadline.into(), all).await.is_err() {
            tracing::error!(
                "Sources did not finish within the shutdown grace period; they are abandoned \
                 (unacked AMQP messages go back to their queue)"
            );
        }
    }
}

/// The plugin file watcher of the current dispatcher set.
struct PluginWatch {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl PluginWatch {
    fn start(
        runtime: &Arc<Runtime>,
        cfg: &Config,
        dispatchers: &[Dispatcher],
        stats: &Arc<ReloadStats>,
    ) -> PluginWatch {
        let (stop, stop_rx) = watch::channel(false);
        let mut task = None;
        if cfg.reload.watch_plugins {
            let loaded: Vec<_> = dispatchers.iter().map(|d| d.loaded.clone()).collect();
            let debounce = cfg.reload.debounce;
            match plugin::reload::spawn(runtime.clone(), &loaded, debounce, stats.clone(), stop_rx)
            {
                Ok(t) => task = t,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot watch plugin files: hot reload is off")
                }
            }
        }
        PluginWatch { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task {
            let _ = t.await;
        }
    }
}

struct Daemon {
    runtime: Arc<Runtime>,
    cfg: Config,
    fanout: Fanout,
    dispatchers: Vec<Dispatcher>,
    retired: Vec<std::thread::JoinHandle<()>>,
    sources: Sources,
    plugin_watch: PluginWatch,
    reload_stats: Arc<ReloadStats>,
    config_stats: Arc<ConfigReloadStats>,
    admin_stats: Arc<admin::AdminStats>,
    admin_state: watch::Sender<Arc<admin::State>>,
    started: Instant,
}

/// Runs the daemon until `shutdown` completes, reloading `config_path` on SIGHUP
/// and when it changes; then drains within the grace period.
///
/// # Errors
/// [`RunError`] when a plugin or a source cannot start; nothing is received then.
pub async fn run(
    cfg: Config,
    config_path: Option<PathBuf>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Summary, RunError> {
    let cache_dir = match (&cfg.reload.cache, &cfg.reload.cache_dir) {
        (false, _) => None,
        (true, Some(dir)) => Some(dir.clone()),
        (true, None) => plugin::cache::default_dir(),
    };
    let runtime = Runtime::new(cache_dir.as_deref())?;
    let dispatchers = start_dispatchers(&runtime, &cfg, &[]).await?;
    let fanout = Fanout::default();
    fanout.install(&dispatchers);
    let reload_stats = Arc::new(ReloadStats::default());
    let plugin_watch = PluginWatch::start(&runtime, &cfg, &dispatchers, &reload_stats);
    let sources = Sources::start(&cfg, &fanout)?;
    let started = Instant::now();
    let config_stats = Arc::new(ConfigReloadStats::default());
    let admin_stats = Arc::new(admin::AdminStats::default());
    let state = admin_state(
        started,
        &sources,
        &dispatchers,
        &reload_stats,
        &config_stats,
        &admin_stats,
    );
    let (admin_state, admin_rx) = watch::channel(state);
    let (admin_stop, admin_stop_rx) = watch::channel(false);
    if let Some(addr) = cfg.admin.address {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind {
                what: "the admin endpoint",
                address: addr,
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|e| RunError::Internal(e.to_string()))?;
        tracing::info!(address = %local, "Admin endpoint listening (GET /status, /metrics, /healthz, /readyz)");
        if !local.ip().is_loopback() {
            tracing::warn!(
                address = %local,
                "The admin endpoint listens beyond this machine and has no authentication: \
                 anyone who can reach it reads the daemon's status and metrics. Bind it to \
                 127.0.0.1, or put an authenticating proxy in front of it"
            );
        }
        let limits = admin::Limits {
            max_connections: cfg.admin.max_connections,
            request_timeout: cfg.admin.request_timeout,
        };
        tokio::spawn(admin::serve(
            listener,
            admin_rx,
            admin_stop_rx,
            limits,
            admin_stats.clone(),
        ));
    }
    let mut daemon = Daemon {
        runtime,
        cfg,
        fanout,
        dispatchers,
        retired: Vec::new(),
        sources,
        plugin_watch,
        reload_stats,
        config_stats,
        admin_stats,
        admin_state,
        started,
    };
    let mut reloads = reload_requests(
        config_path.as_deref(),
        daemon.cfg.reload.watch_config,
        daemon.cfg.reload.debounce,
    );
    tracing::info!(dispatchers = daemon.dispatchers.len(), "collector ready");
    systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("receiving"),
    ]);

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(why) = reloads.recv() => {
                if let Some(path) = &config_path {
                    // RELOADING=1 wants CLOCK_MONOTONIC beside it (sd-notify reads it).
                    match sd_notify::NotifyState::monotonic_usec_now() {
                        Ok(now) => systemd(&[sd_notify::NotifyState::Reloading, now]),
                        Err(e) => tracing::warn!(error = %e, "Cannot read the monotonic clock for systemd"),
                    }
                    daemon.reload(path, why).await;
                    systemd(&[sd_notify::NotifyState::Ready]);
                }
            }
        }
    }
    systemd(&[sd_notify::NotifyState::Stopping]);
    let _ = admin_stop.send(true);
    Ok(daemon.shutdown().await)
}

/// Tells systemd (`Type=notify`) where the daemon is; nothing without `NOTIFY_SOCKET`.
fn systemd(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "Cannot notify systemd");
    }
}

/// Starts the dispatchers of `cfg`, reusing those in `keep` whose config is
/// unchanged. All or nothing: on error, what was started is stopped again.
async fn start_dispatchers(
    runtime: &Arc<Runtime>,
    cfg: &Config,
    keep: &[&Dispatcher],
) -> Result<Vec<Dispatcher>, RunError> {
    let wanted: Vec<_> = cfg
        .dispatchers
        .iter()
        .filter(|d| !keep.iter().any(|k| k.cfg == **d))
        .cloned()
        .collect();
    let rt = runtime.clone();
    let started = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for d in &wanted {
            match dispatch::start_one(&rt, d) {
                Ok(x) => out.push(x),
                Err(e) => return Err((e, out)),
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| RunError::Internal(e.to_string()))?;
    match started {
        Ok(v) => Ok(v),
        Err((e, partial)) => {
            for d in partial {
                // Not installed anywhere: dropping the handle stops its threads.
                drop(d.retire());
            }
            Err(RunError::Dispatcher(e))
        }
    }
}

fn admin_state(
    started: Instant,
    sources: &Sources,
    dispatchers: &[Dispatcher],
    reload: &Arc<ReloadStats>,
    config: &Arc<ConfigReloadStats>,
    admin: &Arc<admin::AdminStats>,
) -> Arc<admin::State> {
    Arc::new(admin::State {
        started,
        sources: sources.stats.clone(),
        dispatchers: dispatchers
            .iter()
            .map(|d| (d.loaded.clone(), d.stats.clone()))
            .collect(),
        reload: reload.clone(),
        config: config.clone(),
        admin: admin.clone(),
    })
}

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy)]
enum ReloadWhy {
    Sighup,
    FileChanged,
}

/// SIGHUP, and changes of the config file (debounced), as reload requests.
fn reload_requests(
    path: Option<&Path>,
    watch_file: bool,
    debounce: Duration,
) -> mpsc::UnboundedReceiver<ReloadWhy> {
    let (tx, rx) = mpsc::unbounded_channel();
    let hup = tx.clone();
    // Registered now, before the daemon is ready: SIGHUP's default action kills.
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut s) => {
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if hup.send(ReloadWhy::Sighup).is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => tracing::error!(error = %e, "cannot listen for SIGHUP"),
    }
    let Some(path) = path.filter(|_| watch_file) else {
        return rx;
    };
    let Some(dir) = path.parent().map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    }) else {
        return rx;
    };
    let (Ok(dir), Some(name)) = (std::fs::canonicalize(dir), path.file_name()) else {
        return rx;
    };
    let file = dir.join(name);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = ev_tx.send(ev.paths);
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "Cannot watch the config file; reload with SIGHUP");
            return rx;
        }
    };
    use notify::Watcher;
    if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::error!(error = %e, "Cannot watch the config file; reload with SIGHUP");
        return rx;
    }
    tokio::spawn(async move {
        let _keep = watcher;
        let mut due: Option<Instant> = None;
        loop {
            let sleep_until = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                paths = ev_rx.recv() => match paths {
                    Some(paths) if paths.iter().any(|p| p == &file) => due = Some(Instant::now() + debounce),
                    Some(_) => {}
                    None => break,
                },
                _ = tokio::time::sleep_until(sleep_until.into()), if due.is_some() => {
                    due = None;
                    if tx.send(ReloadWhy::FileChanged).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

impl Daemon {
    /// Applies the config file, all or nothing.
    async fn reload(&mut self, path: &Path, why: ReloadWhy) {
        let new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                self.config_stats.refused.inc();
                tracing::error!(
                    ?why,
                    "Config reload refused, the running configuration stays: {e}"
                );
                return;
            }
        };
        if new == self.cfg {
            tracing::debug!(?why, "Config file unchanged");
            return;
        }
        // 1. Start what is new, before touching anything that runs.
        let keep: Vec<&Dispatcher> = self
            .dispatchers
            .iter()
            .filter(|d| new.dispatchers.contains(&d.cfg))
            .collect();
        let fresh = match start_dispatchers(&self.runtime, &new, &keep).await {
            Ok(f) => f,
            Err(e) => {
                self.config_stats.refused.inc();
                tracing::error!(
                    ?why,
                    "Config reload refused, the running configuration stays: {e}"
                );
                return;
            }
        };
        let restart_sources = !self.sources.same_settings(&new);
        let sources = if restart_sources {
            match Sources::start(&new, &self.fanout) {
                Ok(s) => Some(s),
                Err(e) => {
                    for d in fresh {
                        drop(d.retire());
                    }
                    self.config_stats.refused.inc();
                    tracing::error!(
                        ?why,
                        "Config reload refused, the running configuration stays: {e}"
                    );
                    return;
                }
            }
        } else {
            None
        };
        // 2. Swap: the new dispatcher set takes the next batch; old ones drain.
        let mut next = Vec::new();
        let mut fresh = fresh.into_iter().map(Some).collect::<Vec<_>>();
        let old = std::mem::take(&mut self.dispatchers);
        let (mut kept, mut removed): (Vec<_>, Vec<_>) = old
            .into_iter()
            .partition(|d| new.dispatchers.contains(&d.cfg));
        for want in &new.dispatchers {
            if let Some(i) = kept.iter().position(|d| d.cfg == *want) {
                next.push(kept.remove(i));
            } else if let Some(slot) = fresh
                .iter_mut()
                .find(|f| f.as_ref().is_some_and(|f| f.cfg == *want))
                && let Some(d) = slot.take()
            {
                next.push(d);
            }
        }
        removed.append(&mut kept);
        let names = |v: &[Dispatcher]| v.iter().map(|d| d.cfg.name.clone()).collect::<Vec<_>>();
        let (now, gone) = (names(&next), names(&removed));
        self.fanout.install(&next);
        for d in removed {
            self.retired.extend(d.retire());
        }
        self.dispatchers = next;
        let old_watch = std::mem::replace(
            &mut self.plugin_watch,
            PluginWatch::start(&self.runtime, &new, &self.dispatchers, &self.reload_stats),
        );
        old_watch.stop().await;
        if let Some(s) = sources {
            let old = std::mem::replace(&mut self.sources, s);
            let deadline = Instant::now() + old.grace;
            old.stop(deadline).await;
        }
        self.cfg = new;
        let state = admin_state(
            self.started,
            &self.sources,
            &self.dispatchers,
            &self.reload_stats,
            &self.config_stats,
            &self.admin_stats,
        );
        let _ = self.admin_state.send(state);
        self.config_stats.applied.inc();
        tracing::info!(
            ?why, dispatchers = ?now, removed = ?gone, sources_restarted = restart_sources,
            "Config reloaded"
        );
    }

    /// Stop receiving, flush, let the dispatchers finish within the grace period.
    async fn shutdown(self) -> Summary {
        tracing::info!("Shutting down: stop receiving, flush open batches");
        // One deadline bounds every wait below: sources, then dispatchers.
        let grace = self.cfg.shutdown.grace_period;
        let deadline = Instant::now() + grace;
        let Daemon {
            sources,
            plugin_watch,
            fanout,
            dispatchers,
            mut retired,
            cfg,
            reload_stats,
            config_stats,
            ..
        } = self;
        sources.stop(deadline).await;
        let _ = tokio::time::timeout_at(deadline.into(), plugin_watch.stop()).await;
        tracing::info!(
            reloads = reload_stats.reloads.get(),
            failures = reload_stats.failures.get(),
            config_reloads = config_stats.applied.get(),
            config_refused = config_stats.refused.get(),
            "Plugin reload summary"
        );
        let stats: Vec<_> = dispatchers
            .iter()
            .map(|d| (d.loaded.dispatcher.clone(), d.stats.clone()))
            .collect();
        fanout.install(&[]);
        for d in dispatchers {
            retired.extend(d.retire());
        }
        // Joined on a thread of its own, so that nothing of the runtime waits for it.
        let (joined_tx, joined) = tokio::sync::oneshot::channel();
        let _ = std::thread::Builder::new()
            .name("dispatch-join".into())
            .spawn(move || {
                for t in retired {
                    let _ = t.join();
                }
                let _ = joined_tx.send(());
            });
        let drained = tokio::time::timeout_at(deadline.into(), joined)
            .await
            .is_ok();
        if !drained {
            // What is still queued fails now rather than after the deadline.
            dispatch::abandon_queues();
        }
        for (name, s) in &stats {
            tracing::info!(
                dispatcher = %name,
                batches_ok = s.batches_ok.get(),
                batches_failed = s.batches_failed.get(),
                batches_dropped = s.batches_dropped.get(),
                samples_ok = s.samples_ok.get(),
                samples_failed = s.samples_failed.get(),
                retries = s.retries.get(),
                timeouts = s.timeouts.get(),
                traps = s.traps.get(),
                memory_refusals = s.memory_refusals.get(),
                "Dispatcher summary"
            );
        }
        if !drained {
            for (name, st) in &stats {
                let queued = st.queued.load(std::sync::atomic::Ordering::Relaxed);
                tracing::error!(
                    dispatcher = %name, queued_batches = queued,
                    grace_period_ms = cfg.shutdown.grace_period.as_millis() as u64,
                    "Shutdown grace period over: the batches this dispatcher had not finished are \
                     failed (lost for UDP; unacked AMQP messages go back to their queue)"
                );
            }
        }
        Summary { drained }
    }
}
