//! What one plugin instance may do, built once from a dispatcher's config (or
//! from `collector check`'s arguments) and used for every instance of it: the
//! first ones, those made after a trap, and every reloaded version's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::{PluginError, WasmError};
use crate::config::DispatcherConfig;
use crate::egress::Endpoints;
use crate::telemetry::{Counter, RateLimit};

/// What one instance may do.
#[derive(Clone, Debug)]
pub struct InstanceSettings {
    /// Deadline of one call (`init`, `dispatch`, `snapshot`, `restore`).
    pub timeout: Duration,
    /// Every memory and table of the instance together.
    pub memory_limit_bytes: usize,
    /// The only directories it sees (WASI preopens).
    pub dirs: Vec<GrantedDir>,
    /// The plugin's config, as JSON, for `collector_init`.
    pub config_json: String,
    pub log: LogPolicy,
    /// Where it may send HTTP requests (none: every `http_send` is refused).
    pub endpoints: Endpoints,
}

/// A host directory a plugin sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantedDir {
    pub host: PathBuf,
    /// Where the plugin sees it, e.g. `/data`.
    pub guest: String,
    pub writable: bool,
}

/// How much a plugin may write to the daemon's log through `collector.log`.
#[derive(Clone, Debug)]
pub struct LogPolicy {
    /// Lines per second for all instances of a dispatcher (`None`: no limit, for
    /// `collector check`, where the plugin's output is the point).
    pub limit: Option<Arc<RateLimit>>,
    /// Longer lines are cut (and say how much was cut).
    pub max_line_bytes: usize,
    /// Lines the limit kept out of the log.
    pub suppressed: Counter,
}

impl LogPolicy {
    /// No rate limit, lines up to 1 MiB: what `collector check` shows.
    pub fn unlimited() -> Self {
        LogPolicy {
            limit: None,
            max_line_bytes: 1 << 20,
            suppressed: Counter::default(),
        }
    }
}

impl InstanceSettings {
    /// The settings of a dispatcher's instances; creates its granted directories.
    /// Suppressed plugin log lines count into `log_suppressed`.
    ///
    /// # Errors
    /// [`PluginError::CreateDir`] when a granted directory cannot be created.
    pub fn for_dispatcher(
        cfg: &DispatcherConfig,
        log_suppressed: Counter,
        endpoints: Endpoints,
    ) -> Result<InstanceSettings, PluginError> {
        let mut dirs = Vec::new();
        for g in &cfg.dirs {
            std::fs::create_dir_all(&g.host).map_err(|source| PluginError::CreateDir {
                path: g.host.display().to_string(),
                source,
            })?;
            dirs.push(GrantedDir {
                host: g.host.clone(),
                guest: g.guest.clone(),
                writable: g.writable,
            });
        }
        Ok(InstanceSettings {
            timeout: cfg.timeout,
            memory_limit_bytes: cfg.memory_limit_bytes,
            dirs,
            config_json: cfg.config_json(),
            log: LogPolicy {
                limit: (cfg.log_lines_per_second > 0).then(|| {
                    Arc::new(RateLimit::new(
                        cfg.log_lines_per_second,
                        Duration::from_secs(1),
                    ))
                }),
                max_line_bytes: cfg.log_line_max_bytes,
                suppressed: log_suppressed,
            },
            endpoints,
        })
    }

    /// Settings with no log limit, for `collector check`, benchmarks and tests:
    /// the plugin's output is the point there.
    pub fn unlimited_log(
        timeout: Duration,
        memory_limit_bytes: usize,
        dirs: Vec<GrantedDir>,
        config_json: &str,
    ) -> InstanceSettings {
        InstanceSettings {
            timeout,
            memory_limit_bytes,
            dirs,
            config_json: config_json.to_owned(),
            log: LogPolicy::unlimited(),
            endpoints: Endpoints::default(),
        }
    }
}

/// What WASI grants a plugin: the dispatcher's directories, clocks and random;
/// no sockets, stdio, environment or arguments.
pub fn granted_wasi(settings: &InstanceSettings) -> Result<WasiCtxBuilder, PluginError> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    for GrantedDir {
        host,
        guest,
        writable,
    } in &settings.dirs
    {
        let perms = if *writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        wasi.preopened_dir(host, guest, perms)
            .map_err(|e| PluginError::Grant {
                path: host.display().to_string(),
                guest: guest.clone(),
                source: WasmError(e),
            })?;
    }
    Ok(wasi)
}
