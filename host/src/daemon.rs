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
// Deadlines on tokio's clock (tests pause it); the uptime on the system's.
use tokio::time::Instant as TokioInstant;

use crate::admin;
use crate::config::{Config, SourcesConfig};
use crate::dispatch::{self, Dispatcher, Fanout};
use crate::plugin::{self, Runtime};
use crate::source::amqp::AmqpSource;
use crate::source::http::HttpSource;
use crate::source::tcp::TcpSource;
use crate::source::udp::UdpSource;
use crate::source::{SourceContext, SourceReport};
use crate::telemetry::events::{ConfigReloadRefused, ConfigReloaded};
use crate::telemetry::{Section, SourceStats, Telemetry};
use crate::watch::{FileWatch, Group};
use crate::{RunError, Summary};

/// One generation of sources, stopped together.
struct Sources {
    cfg: SourcesConfig,
    batch: crate::config::BatchConfig,
    secret: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    reports: Vec<SourceReport>,
    grace: Duration,
}

impl Sources {
    /// Binds and starts every configured source.
    fn start(cfg: &Config, fanout: &Fanout, telemetry: &Telemetry) -> Result<Sources, RunError> {
        let (stop, stop_rx) = watch::channel(false);
        let secret: Arc<[u8]> = cfg.telemetry_secret.as_bytes().into();
        if secret.is_empty() {
            tracing::warn!("telemetry_secret is empty: sample signatures are not verified");
        }
        let mut tasks = Vec::new();
        let mut reports = Vec::new();
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
            let s = telemetry.source("udp");
            reports.push(SourceReport {
                udp: Some((telemetry.udp.handles("udp"), src.inode())),
                ..SourceReport::of(s.clone(), Some(addr))
            });
            tasks.push(tokio::spawn(src.run(context(&s), stop_rx.clone())));
        }
        if let Some(a) = &cfg.sources.amqp {
            let s = telemetry.source("amqp");
            let amqp = telemetry.amqp.handles("amqp");
            let src = AmqpSource::new(a.clone(), context(&s), amqp.clone()).map_err(|e| {
                RunError::Internal(format!("cannot start the AMQP decoder threads: {e}"))
            })?;
            reports.push(SourceReport {
                amqp: Some(amqp),
                amqp_broker: Some(src.connected_to()),
                ..SourceReport::of(s.clone(), None)
            });
            tasks.push(tokio::spawn(src.run(stop_rx.clone())));
        }
        if let Some(t) = &cfg.sources.tcp {
            let src = TcpSource::bind(t).map_err(|source| RunError::Bind {
                what: "TCP",
                address: t.address,
                source,
            })?;
            let addr = src
                .local_addr()
                .map_err(|e| RunError::Internal(e.to_string()))?;
            tracing::info!(address = %addr, "TCP source listening");
            let s = telemetry.source("tcp");
            let tcp = telemetry.tcp.handles("tcp");
            reports.push(SourceReport {
                tcp: Some(tcp.clone()),
                ..SourceReport::of(s.clone(), Some(addr))
            });
            tasks.push(tokio::spawn(src.run(context(&s), tcp, stop_rx.clone())));
        }
        if let Some(h) = &cfg.sources.http {
            let src = HttpSource::bind(h)?;
            let addr = src.local_addr();
            tracing::info!(address = %addr, tls = h.tls_cert_file.is_some(), "HTTP source listening");
            let s = telemetry.source("http");
            let http = telemetry.http.handles("http");
            reports.push(SourceReport {
                http: Some(http.clone()),
                ..SourceReport::of(s.clone(), Some(addr))
            });
            tasks.push(tokio::spawn(src.run(context(&s), http, stop_rx.clone())));
        }
        Ok(Sources {
            cfg: cfg.sources.clone(),
            batch: cfg.batch,
            secret: cfg.telemetry_secret.clone(),
            stop,
            tasks,
            reports,
            grace: cfg.shutdown.grace_period,
        })
    }

    /// Where source `name` listens, if it runs and listens.
    fn address_of(&self, name: &str) -> Option<std::net::SocketAddr> {
        self.reports
            .iter()
            .find(|r| r.stats.name == name)
            .and_then(|r| r.address)
    }

    fn same_settings(&self, cfg: &Config) -> bool {
        self.cfg == cfg.sources && self.batch == cfg.batch && self.secret == cfg.telemetry_secret
    }

    /// Stops reading; returns when every open batch is flushed (and AMQP settled),
    /// or at `deadline`, leaving what is not finished (it is counted and logged).
    async fn stop(self, deadline: TokioInstant) {
        let _ = self.stop.send(true);
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout_at(deadline, all).await.is_err() {
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
        telemetry: &Arc<Telemetry>,
        files: Option<&FileWatch>,
    ) -> PluginWatch {
        let (stop, stop_rx) = watch::channel(false);
        let watched = if cfg.reload.watch_plugins {
            dispatchers.iter().map(|d| d.loaded.clone()).collect()
        } else {
            Vec::new()
        };
        let task = files.and_then(|files| {
            plugin::reload::spawn(
                runtime.clone(),
                &watched,
                files,
                cfg.reload.debounce,
                telemetry.clone(),
                stop_rx,
            )
        });
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
    /// The file watcher of the config and plugin files (none if inotify failed).
    files: Option<FileWatch>,
    telemetry: Arc<Telemetry>,
    admin_state: watch::Sender<Arc<admin::State>>,
    /// Where the admin endpoint listens, if it does.
    admin_address: Option<std::net::SocketAddr>,
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
    ready: Option<Box<dyn FnOnce(crate::Started) + Send>>,
) -> Result<Summary, RunError> {
    let cache_dir = match (&cfg.reload.cache, &cfg.reload.cache_dir) {
        (false, _) => None,
        (true, Some(dir)) => Some(dir.clone()),
        (true, None) => plugin::cache::default_dir(),
    };
    let runtime = Runtime::new(cache_dir.as_deref())?;
    let telemetry = Telemetry::new();
    let fanout = Fanout::default();
    let dispatchers = start_dispatchers(&runtime, &cfg, &[], &telemetry, &fanout.abandon).await?;
    fanout.install(&dispatchers);
    let files = match FileWatch::start() {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(
                error = %e,
                "Cannot watch files: plugin hot reload is off, and the config reloads on SIGHUP only"
            );
            None
        }
    };
    let plugin_watch = PluginWatch::start(&runtime, &cfg, &dispatchers, &telemetry, files.as_ref());
    let sources = Sources::start(&cfg, &fanout, &telemetry)?;
    let started = Instant::now();
    let state = admin_state(started, &telemetry, &sources, &dispatchers);
    let (admin_state, admin_rx) = watch::channel(state);
    let (admin_stop, admin_stop_rx) = watch::channel(false);
    let mut admin_address = None;
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
        admin_address = Some(local);
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
            telemetry.clone(),
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
        files,
        telemetry,
        admin_state,
        admin_address,
        started,
    };
    let mut reloads = reload_requests(
        config_path.as_deref(),
        daemon
            .files
            .as_ref()
            .filter(|_| daemon.cfg.reload.watch_config),
        daemon.cfg.reload.debounce,
    );
    tracing::info!(dispatchers = daemon.dispatchers.len(), "collector ready");
    if let Some(ready) = ready {
        ready(crate::Started {
            admin: daemon.admin_address,
            udp: daemon.sources.address_of("udp"),
            tcp: daemon.sources.address_of("tcp"),
            http: daemon.sources.address_of("http"),
            telemetry: daemon.telemetry.clone(),
        });
    }
    let status = daemon.status_line();
    systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
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
                    let status = daemon.status_line();
                    systemd(&[
                        sd_notify::NotifyState::Ready,
                        sd_notify::NotifyState::Status(&status),
                    ]);
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
    telemetry: &Arc<Telemetry>,
    abandon: &dispatch::Abandon,
) -> Result<Vec<Dispatcher>, RunError> {
    let wanted: Vec<_> = cfg
        .dispatchers
        .iter()
        .filter(|d| !keep.iter().any(|k| k.cfg == **d))
        .cloned()
        .collect();
    let rt = runtime.clone();
    let telemetry = telemetry.clone();
    let abandon = abandon.clone();
    let started = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for d in &wanted {
            let stats = telemetry.dispatcher(&d.name);
            let endpoints = crate::egress::Endpoints::build(
                &d.name,
                &d.endpoints,
                Some(&telemetry),
                stats.counts.egress_refused.clone(),
            )
            .map_err(|e| dispatch::StartError {
                name: d.name.clone(),
                plugin: d.plugin.to_string(),
                source: plugin::PluginError::Egress(e),
            });
            let started =
                endpoints.and_then(|eps| dispatch::start_one(&rt, d, stats, eps, &abandon));
            match started {
                Ok(x) => out.push(x),
                Err(e) => return Err((Box::new(e), out)),
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
            Err(RunError::Dispatcher(*e))
        }
    }
}

fn admin_state(
    started: Instant,
    telemetry: &Arc<Telemetry>,
    sources: &Sources,
    dispatchers: &[Dispatcher],
) -> Arc<admin::State> {
    Arc::new(admin::State {
        started,
        telemetry: telemetry.clone(),
        sources: sources.reports.clone(),
        dispatchers: dispatchers
            .iter()
            .map(|d| (d.loaded.clone(), d.stats.clone()))
            .collect(),
    })
}

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy)]
enum ReloadWhy {
    Sighup,
    FileChanged,
}

/// SIGHUP, and changes of the config file (through `files`), as reload requests.
fn reload_requests(
    path: Option<&Path>,
    files: Option<&FileWatch>,
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
    let (Some(path), Some(files)) = (path, files) else {
        return rx;
    };
    let mut changed = files.watch(Group::Config, vec![path.to_path_buf()], debounce);
    tokio::spawn(async move {
        while changed.recv().await.is_some() {
            if tx.send(ReloadWhy::FileChanged).is_err() {
                break;
            }
        }
    });
    rx
}

impl Daemon {
    /// What systemd shows as the daemon's status (`systemctl status`): where it
    /// listens, e.g. `receiving: udp 127.0.0.1:4952, admin 127.0.0.1:4953`.
    fn status_line(&self) -> String {
        let mut parts: Vec<String> = self
            .sources
            .reports
            .iter()
            .map(|r| match r.address {
                Some(a) => format!("{} {a}", r.stats.name),
                None => r.stats.name.to_owned(),
            })
            .collect();
        if let Some(a) = self.admin_address {
            parts.push(format!("admin {a}"));
        }
        format!("receiving: {}", parts.join(", "))
    }

    /// A reload that cannot be applied: the running configuration stays.
    fn refuse(&self, why: ReloadWhy, error: &dyn std::fmt::Display) {
        ConfigReloadRefused { why: &why, error }.emit(&self.telemetry.daemon);
    }

    /// Applies the config file, all or nothing.
    async fn reload(&mut self, path: &Path, why: ReloadWhy) {
        let new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                return self.refuse(why, &e);
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
        let fresh = match start_dispatchers(
            &self.runtime,
            &new,
            &keep,
            &self.telemetry,
            &self.fanout.abandon,
        )
        .await
        {
            Ok(f) => f,
            Err(e) => {
                return self.refuse(why, &e);
            }
        };
        let restart_sources = !self.sources.same_settings(&new);
        let sources = if restart_sources {
            match Sources::start(&new, &self.fanout, &self.telemetry) {
                Ok(s) => Some(s),
                Err(e) => {
                    for d in fresh {
                        drop(d.retire());
                    }
                    return self.refuse(why, &e);
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
        for name in gone.iter().filter(|g| !now.contains(g)) {
            self.telemetry.remove_dispatcher(name);
        }
        for d in removed {
            self.retired.extend(d.retire());
        }
        self.dispatchers = next;
        let old_watch = std::mem::replace(
            &mut self.plugin_watch,
            PluginWatch::start(
                &self.runtime,
                &new,
                &self.dispatchers,
                &self.telemetry,
                self.files.as_ref(),
            ),
        );
        old_watch.stop().await;
        if let Some(s) = sources {
            let old = std::mem::replace(&mut self.sources, s);
            let deadline = TokioInstant::now() + old.grace;
            old.stop(deadline).await;
        }
        self.cfg = new;
        let state = admin_state(
            self.started,
            &self.telemetry,
            &self.sources,
            &self.dispatchers,
        );
        let _ = self.admin_state.send(state);
        ConfigReloaded {
            why: &why,
            dispatchers: &now,
            removed: &gone,
            sources_restarted: restart_sources,
        }
        .emit(&self.telemetry.daemon);
    }

    /// Stop receiving, flush, let the dispatchers finish within the grace period.
    async fn shutdown(self) -> Summary {
        tracing::info!("Shutting down: stop receiving, flush open batches");
        // One deadline bounds every wait below: sources, then dispatchers.
        let grace = self.cfg.shutdown.grace_period;
        let deadline = TokioInstant::now() + grace;
        let Daemon {
            sources,
            plugin_watch,
            fanout,
            dispatchers,
            mut retired,
            cfg,
            telemetry,
            ..
        } = self;
        let reports = sources.reports.clone();
        sources.stop(deadline).await;
        let _ = tokio::time::timeout_at(deadline, plugin_watch.stop()).await;
        let stats: Vec<_> = dispatchers.iter().map(|d| d.stats.clone()).collect();
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
        let drained = tokio::time::timeout_at(deadline, joined).await.is_ok();
        if !drained {
            // What is still queued fails now rather than after the deadline.
            fanout.abandon.set();
        }
        let mut sections = Vec::new();
        for r in &reports {
            r.refresh();
            sections.push(Section {
                kind: "source",
                name: r.stats.name,
                readings: r.readings(),
            });
        }
        for s in &stats {
            sections.push(Section {
                kind: "dispatcher",
                name: &s.name,
                readings: s.counts.readings(),
            });
        }
        telemetry.summary(&sections);
        if !drained {
            for st in &stats {
                let queued = st.counts.dispatcher_queued_batches.get();
                tracing::error!(
                    dispatcher = %st.name, queued_batches = queued,
                    grace_period_ms = cfg.shutdown.grace_period.as_millis() as u64,
                    "Shutdown grace period over: the batches this dispatcher had not finished are \
                     failed (lost for UDP; unacked AMQP messages go back to their queue)"
                );
            }
        }
        Summary {
            drained,
            worker_panics: telemetry.daemon.worker_panics.get(),
        }
    }
}
