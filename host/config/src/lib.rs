//! # collector-config
//!
//! The daemon's TOML configuration: parsed with unknown keys refused, then
//! validated into values the rest of the daemon can trust. Errors name the field.
//! A crate of its own (serde and toml only), so that it can be fuzzed alone.
//!
//! `collector.example.toml` at the repository root documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod inputs;
mod transport_url;

pub use inputs::{HttpInputConfig, TcpConfig};

/// Durations are written in milliseconds (the keys say so: `timeout_ms`) and held
/// as [`Duration`]s.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Names accepted after `builtin:` (the plugins `collector` embeds).
pub const BUILTIN_PLUGINS: [&str; 2] = ["file", "noop"];

/// The configuration used by `collector run` without `--config`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Ceilometer's own default `[publisher] telemetry_secret`: what a stock agent signs with.
pub const CEILOMETER_DEFAULT_SECRET: &str = "change this for valid signing";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HMAC key shared with the Ceilometer agents (`[publisher] telemetry_secret`).
    /// Empty: no verification, like Ceilometer.
    #[serde(default = "default_secret")]
    pub telemetry_secret: String,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub reload: ReloadConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub sources: SourcesConfig,
    #[serde(default)]
    pub dispatchers: Vec<DispatcherConfig>,
}

fn default_secret() -> String {
    CEILOMETER_DEFAULT_SECRET.to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info` (default), `debug` or `trace`; `RUST_LOG` overrides it.
    #[serde(default)]
    pub level: LogLevel,
    /// `human` (default) or `json` (one JSON object per line, for log shippers).
    #[serde(default)]
    pub format: LogFormat,
}

/// The most detailed level logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// As `tracing` and `RUST_LOG` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: one line each, colours on a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// When a batch is handed to the dispatchers: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_max_samples")]
    pub max_samples: usize,
    /// Encoded size of a batch (ABI v1 bytes).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Counted from the batch's first sample.
    #[serde(
        rename = "max_delay_ms",
        default = "default_max_delay_ms",
        with = "millis"
    )]
    pub max_delay: Duration,
}

fn default_max_samples() -> usize {
    1000
}
fn default_max_bytes() -> usize {
    4 << 20
}
fn default_max_delay_ms() -> Duration {
    Duration::from_millis(1000)
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_samples: default_max_samples(),
            max_bytes: default_max_bytes(),
            max_delay: default_max_delay_ms(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long SIGTERM/SIGINT waits for dispatchers to finish queued batches.
    #[serde(
        rename = "grace_period_ms",
        default = "default_grace_ms",
        with = "millis"
    )]
    pub grace_period: Duration,
}

fn default_grace_ms() -> Duration {
    Duration::from_millis(10_000)
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            grace_period: default_grace_ms(),
        }
    }
}

/// The admin endpoint (`collector status`). Off unless an address is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// e.g. `127.0.0.1:4953`; keep it on loopback (it has no authentication).
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// Connections served at once; more wait in the kernel's backlog.
    #[serde(default = "default_admin_connections")]
    pub max_connections: usize,
    /// A connection is closed this long after it was accepted, whatever it sends.
    #[serde(
        rename = "request_timeout_ms",
        default = "default_admin_timeout_ms",
        with = "millis"
    )]
    pub request_timeout: Duration,
}

fn default_admin_connections() -> usize {
    64
}
fn default_admin_timeout_ms() -> Duration {
    Duration::from_millis(5000)
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            address: None,
            max_connections: default_admin_connections(),
            request_timeout: default_admin_timeout_ms(),
        }
    }
}

/// Hot reload of plugin files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Watch each dispatcher's `.wasm` file and load new versions while running.
    #[serde(default = "yes")]
    pub watch_plugins: bool,
    /// Reload the configuration when its file changes (SIGHUP always reloads it).
    #[serde(default = "yes")]
    pub watch_config: bool,
    /// How long a file must stay unchanged before it is loaded (editors and copies
    /// write in bursts; a half-written file is simply tried again on its next change).
    #[serde(
        rename = "debounce_ms",
        default = "default_debounce_ms",
        with = "millis"
    )]
    pub debounce: Duration,
    /// Keep compiled plugins on disk, so restarts and reloads of known versions skip compiling.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Default: `$XDG_CACHE_HOME/collector/modules` or `~/.cache/collector/modules`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
}

fn default_debounce_ms() -> Duration {
    Duration::from_millis(200)
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch_plugins: true,
            watch_config: true,
            debounce: default_debounce_ms(),
            cache: true,
            cache_dir: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    pub udp: Option<UdpConfig>,
    pub amqp: Option<AmqpConfig>,
    pub tcp: Option<TcpConfig>,
    pub http: Option<HttpInputConfig>,
}

/// RabbitMQ, as oslo.messaging lays it out for Ceilometer (REFERENCE.md §2).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost`, or oslo's `transport_url` as
    /// `ceilometer.conf` writes it (`rabbit://u:p@host1:5672,u:p@host2:5672/vhost`):
    /// the hosts are tried in turn. Never logged with a password.
    #[serde(default)]
    pub url: Option<String>,
    /// Name of an environment variable holding the URL (keeps credentials out of the file).
    #[serde(default)]
    pub url_env: Option<String>,
    /// `url`, or the value of `url_env`: set when the config is parsed.
    #[serde(skip)]
    resolved_url: String,
    /// One AMQP URI per host of `resolved_url`: set when the config is parsed.
    #[serde(skip)]
    broker_uris: Vec<String>,
    /// oslo's `[oslo_messaging_rabbit] ssl`: TLS to every host of a `rabbit://`
    /// URL (an `amqps://` URL is TLS anyway).
    #[serde(default)]
    pub ssl: bool,
    /// oslo's `ssl_ca_file`: PEM certificates the broker's is checked against,
    /// besides the system's roots.
    #[serde(default)]
    pub ssl_ca_file: Option<PathBuf>,
    /// oslo's `ssl_cert_file`: the client certificate (PEM), with `ssl_key_file`.
    #[serde(default)]
    pub ssl_cert_file: Option<PathBuf>,
    /// oslo's `ssl_key_file`: the client certificate's key (PEM, unencrypted).
    #[serde(default)]
    pub ssl_key_file: Option<PathBuf>,
    /// oslo's `heartbeat_timeout_threshold`, in seconds: the AMQP heartbeat the
    /// source asks for, so that a broker that dies without closing its sockets
    /// is noticed within about this long (0: no heartbeats). A `heartbeat` in an
    /// `amqp://` URL's query wins.
    #[serde(default = "default_heartbeat_s")]
    pub heartbeat_timeout_threshold: u16,
    /// oslo's `rabbit_quorum_queue`: the topic queues (`<topic>.sample`,
    /// `<topic>`, `<topic>.<host>`) are quorum queues, and durable.
    #[serde(default)]
    pub rabbit_quorum_queue: bool,
    /// oslo's `rabbit_transient_quorum_queue`: the fanout queue is one too.
    #[serde(default)]
    pub rabbit_transient_quorum_queue: bool,
    /// oslo's `rabbit_quorum_delivery_limit` (`x-delivery-limit`; 0: none).
    #[serde(default)]
    pub rabbit_quorum_delivery_limit: u32,
    /// oslo's `rabbit_quorum_max_memory_length` (`x-max-in-memory-length`; 0: none).
    #[serde(default)]
    pub rabbit_quorum_max_memory_length: u32,
    /// oslo's `rabbit_quorum_max_memory_bytes` (`x-max-in-memory-bytes`; 0: none).
    #[serde(default)]
    pub rabbit_quorum_max_memory_bytes: u64,
    /// oslo's `control_exchange`; Ceilometer sets `ceilometer`.
    #[serde(default = "default_exchange")]
    pub exchange: String,
    /// `[publisher_notifier] metering_topic` / `[publisher_rpc] metering_topic`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Consume notifications from `<topic>.sample`.
    #[serde(default = "yes")]
    pub notifications: bool,
    /// Consume RPC casts from `<topic>`, `<topic>.<host>` and the fanout queue.
    #[serde(default = "yes")]
    pub rpc: bool,
    /// For the `<topic>.<host>` queue; default: this machine's name (oslo's `host`).
    #[serde(default)]
    pub host: Option<String>,
    /// oslo's `amqp_durable_queues`.
    #[serde(default)]
    pub durable: bool,
    /// oslo's `amqp_auto_delete`.
    #[serde(default)]
    pub auto_delete: bool,
    /// Declare nothing; the exchanges and queues must exist.
    #[serde(default)]
    pub passive: bool,
    /// `x-expires` of the fanout queue (oslo's `rabbit_transient_queues_ttl`).
    #[serde(
        rename = "fanout_queue_expires_ms",
        default = "default_fanout_expires_ms",
        with = "millis"
    )]
    pub fanout_queue_expires: Duration,
    /// Unacknowledged messages per consumer (`basic.qos`); bounds memory.
    #[serde(default = "default_prefetch")]
    pub prefetch_count: u16,
    /// Consumer channels per queue.
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// When a dispatcher still fails after its retries: requeue (true) or reject
    /// to the queue's dead-letter exchange (false).
    #[serde(default = "yes")]
    pub requeue_on_dispatcher_error: bool,
    /// Deliveries of a failing message before it is rejected for good (0 = no cap).
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u32,
    /// A message body larger than this is rejected (without requeue) before it is
    /// parsed. Memory held for AMQP is at most about prefetch_count × channels ×
    /// queues × this.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// A message with more samples is rejected (without requeue); decoding stops
    /// at the first one too many.
    #[serde(default = "default_max_samples_per_message")]
    pub max_samples_per_message: usize,
    /// Threads that decode and verify message bodies, for every queue and
    /// channel of the source. Default: one per core, at most 8.
    #[serde(default = "default_amqp_decode_threads")]
    pub decode_threads: usize,
    #[serde(
        rename = "reconnect_backoff_ms",
        default = "default_reconnect_ms",
        with = "millis"
    )]
    pub reconnect_backoff: Duration,
    #[serde(
        rename = "reconnect_backoff_max_ms",
        default = "default_reconnect_max_ms",
        with = "millis"
    )]
    pub reconnect_backoff_max: Duration,
}

fn yes() -> bool {
    true
}
fn default_exchange() -> String {
    "ceilometer".into()
}
fn default_topic() -> String {
    "metering".into()
}
fn default_fanout_expires_ms() -> Duration {
    Duration::from_millis(1_800_000)
}
fn default_prefetch() -> u16 {
    100
}
fn default_channels() -> usize {
    2
}
fn default_max_deliveries() -> u32 {
    5
}
fn default_max_message_bytes() -> usize {
    16 << 20
}
fn default_max_samples_per_message() -> usize {
    20_000
}
/// A message takes about 3 µs per sample to decode and verify, where lapin and
/// the batching take a fraction of that: the decoders can use every core.
fn default_amqp_decode_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, 8)
}
fn default_heartbeat_s() -> u16 {
    60
}
fn default_reconnect_ms() -> Duration {
    Duration::from_millis(500)
}
fn default_reconnect_max_ms() -> Duration {
    Duration::from_millis(30_000)
}

impl AmqpConfig {
    /// The broker URL: `url`, or the value of the variable `url_env` names, read
    /// when the config was parsed (a variable that is not set is a config error).
    pub fn broker_url(&self) -> &str {
        &self.resolved_url
    }

    /// The AMQP URI of each broker host `broker_url` names, in the order they
    /// are tried.
    pub fn broker_uris(&self) -> &[String] {
        &self.broker_uris
    }

    /// oslo's `durable` for the topic queues: `amqp_durable_queues`, or quorum
    /// queues (which are always durable).
    pub fn topic_queues_durable(&self) -> bool {
        self.durable || self.rabbit_quorum_queue
    }

    fn resolve_url(&self) -> Result<String, String> {
        if let Some(var) = &self.url_env {
            return std::env::var(var).map_err(|_| format!("names {var}, which is not set"));
        }
        self.url
            .clone()
            .ok_or_else(|| "or `url_env` must be set".to_owned())
    }

    /// The host part of `<topic>.<host>`.
    pub fn host_name(&self) -> String {
        self.host.clone().unwrap_or_else(machine_name)
    }
}

/// This machine's name, as Python's `socket.gethostname()` gives it.
pub fn machine_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match (rc, std::str::from_utf8(&buf[..end])) {
        (0, Ok(name)) if !name.is_empty() => name.to_owned(),
        _ => "localhost".to_owned(),
    }
}

/// The URL with every password replaced by `***`, for logs.
///
/// The authority runs from `://` to the first `/`, `?` or `#` after its last `@`
/// (a password may hold `@`, `,`, `:` or `/`, written raw). An `amqp://` or
/// `amqps://` URL (one host) is read with the `url` crate, as lapin reads it, and
/// its password replaced; one it cannot read has everything from the user name's
/// `:` to that last `@` hidden. oslo.messaging's `transport_url`
/// (`rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost`) has one set of
/// credentials per host, which a URL parser would not see (it keeps only the
/// last host): there the authority is split at each `@`, what stands between two
/// `@` being the previous host and, after its first `,`, the next `user:password`;
/// any other piece was part of a password. Only user names and hosts are kept;
/// in doubt, more is hidden. (Hand-written because no URL parser reads oslo's
/// multi-host form.)
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(unparsable URL)".into();
    };
    let Some(last_at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let end = rest[last_at..]
        .find(['/', '?', '#'])
        .map_or(rest.len(), |i| last_at + i);
    let (authority, tail) = rest.split_at(end);
    let mask = |userinfo: &str| match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => userinfo.to_owned(),
    };
    if matches!(scheme, "amqp" | "amqps") {
        // One host, read by the URL parser lapin uses; what it cannot read, lapin
        // cannot either: everything up to the last `@` is hidden then.
        if let Ok(mut u) = url::Url::parse(url)
            && u.password().is_some()
            // An `@` past the host means a password with a `/` in it: the parser
            // took part of it for the path.
            && !u[url::Position::BeforePath..].contains('@')
            && u.set_password(Some("***")).is_ok()
        {
            return u.to_string();
        }
        let (userinfo, host) = authority.split_at(last_at);
        return format!("{scheme}://{}{host}{tail}", mask(userinfo));
    }
    let pieces: Vec<&str> = authority.split('@').collect();
    let mut hosts = Vec::new();
    let mut userinfo = pieces[0].to_owned();
    for piece in &pieces[1..pieces.len() - 1] {
        // `host,user:password`: the next host's credentials; anything else was part
        // of a password (a `,` in one is possible, but then `user:` must follow).
        match piece.split_once(',').filter(|(_, next)| next.contains(':')) {
            Some((host, next)) => {
                hosts.push(format!("{}@{host}", mask(&userinfo)));
                userinfo = next.to_owned();
            }
            None => {
                userinfo.push('@');
                userinfo.push_str(piece);
            }
        }
    }
    hosts.push(format!("{}@{}", mask(&userinfo), pieces[pieces.len() - 1]));
    format!("{scheme}://{}{tail}", hosts.join(","))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpConfig {
    /// Ceilometer's port is 4952.
    pub address: SocketAddr,
    /// Kernel receive buffer (SO_RCVBUF); absorbs bursts.
    #[serde(default = "default_rcvbuf")]
    pub receive_buffer_bytes: usize,
    /// Datagrams read per wake-up before yielding.
    #[serde(default = "default_per_wake")]
    pub max_datagrams_per_wake: usize,
    /// Threads that decode, verify and batch datagrams (the receive task only
    /// reads). Default: one fewer than the machine's cores, 1 or 2.
    #[serde(default = "default_decode_threads")]
    pub decode_threads: usize,
}

/// One decoder keeps up with one receive task when each has a core (both cost
/// about 2 µs per realistic datagram), and a second absorbs bursts. On two
/// cores the receive task, the dispatchers and a second decoder would share
/// them: on the end-to-end UDP benchmark's traffic (`scripts/bench-e2e.sh`),
/// two decoders there did about 8 % fewer samples per second than one, at
/// more CPU per sample.
fn default_decode_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    cores.saturating_sub(1).clamp(1, 2)
}

fn default_rcvbuf() -> usize {
    16 << 20
}
fn default_per_wake() -> usize {
    256
}

/// How a dispatcher's plugin file is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// `builtin:NAME`: a plugin embedded in the binary.
    Builtin(String),
    File(PathBuf),
}

impl<'de> Deserialize<'de> for PluginSource {
    /// `builtin:NAME`, or a path (relative paths are resolved against the config
    /// file's directory when the config is parsed).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.strip_prefix("builtin:") {
            Some(name) => PluginSource::Builtin(name.to_owned()),
            None => PluginSource::File(PathBuf::from(text)),
        })
    }
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Builtin(n) => write!(f, "builtin:{n}"),
            PluginSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherConfig {
    pub name: String,
    /// Path of the `.wasm` file (relative to the config file), or `builtin:file` / `builtin:noop`.
    pub plugin: PluginSource,
    /// Deadline of one plugin call.
    #[serde(rename = "timeout_ms", default = "default_timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Cap on the plugin's linear memory.
    #[serde(default = "default_memory_limit")]
    pub memory_limit_bytes: usize,
    /// Batches waiting for this dispatcher; beyond it, UDP batches are dropped for it.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// Plugin instances (threads) serving this dispatcher.
    #[serde(default = "default_instances")]
    pub instances: usize,
    /// Retries of a batch the plugin answered `retry` to. Unset: retried (with
    /// capped backoff) until the plugin takes or rejects it, the daemon stops, or
    /// a config reload replaces the dispatcher: a backend that is down holds the
    /// batch (and, for AMQP, its messages unacked) instead of losing it.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// First retry delay; doubles up to `retry_backoff_max_ms`.
    #[serde(
        rename = "retry_backoff_ms",
        default = "default_backoff_ms",
        with = "millis"
    )]
    pub retry_backoff: Duration,
    #[serde(
        rename = "retry_backoff_max_ms",
        default = "default_backoff_max_ms",
        with = "millis"
    )]
    pub retry_backoff_max: Duration,
    /// Host directories the plugin may use (WASI preopens). Nothing else is granted.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// A batch the plugin rejects is offered again in halves, to this
    /// dispatcher alone, until the samples at fault are isolated; at most this many
    /// calls per batch (0: the whole batch fails at once).
    #[serde(default = "default_isolation_max_calls")]
    pub isolation_max_calls: u32,
    /// Lines per second the plugin may log (all its instances together); the rest
    /// is counted (`collector_plugin_log_lines_suppressed_total`), not logged.
    #[serde(default = "default_log_lines_per_second")]
    pub log_lines_per_second: u32,
    /// Longer plugin log lines are cut.
    #[serde(default = "default_log_line_max_bytes")]
    pub log_line_max_bytes: usize,
    /// Handed to the plugin's `init` as JSON.
    #[serde(default = "empty_table")]
    pub config: toml::Table,
    /// The only places the plugin may send HTTP requests to.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// An HTTP endpoint a dispatcher's plugin may call (`[[dispatchers.endpoints]]`):
/// nothing else is reachable. The plugin names it and gives a path under its URL;
/// the host adds TLS, credentials and headers, which the plugin never sees.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// What the plugin calls it (letters, digits, `-`, `_`).
    pub name: String,
    /// `http://` or `https://` URL; requests go to paths under its path.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the URL instead (read when the config is loaded).
    #[serde(default)]
    pub url_env: Option<String>,
    /// PEM file of the CA certificates to trust; the system's roots when unset.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM files of a client certificate (chain) and its key, for mutual TLS.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Headers the host adds to every request (credentials belong here or in
    /// `headers_env`); never shown to the plugin nor logged.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Headers whose values come from environment variables: header = variable.
    #[serde(default)]
    pub headers_env: std::collections::BTreeMap<String, String>,
    #[serde(
        rename = "connect_timeout_ms",
        default = "default_connect_timeout_ms",
        with = "millis"
    )]
    pub connect_timeout: Duration,
    /// From sending the request to the last byte of the response.
    #[serde(
        rename = "response_timeout_ms",
        default = "default_response_timeout_ms",
        with = "millis"
    )]
    pub response_timeout: Duration,
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Requests running at once, over all instances of the dispatcher.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Idle connections kept open for reuse.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    /// Speak HTTP/2 without negotiating it (h2c, or h2 without ALPN); otherwise
    /// HTTP/1.1, or HTTP/2 when TLS negotiates it.
    #[serde(default)]
    pub http2_prior_knowledge: bool,
    /// The URL, after `url_env` (set when the config is loaded).
    #[serde(skip)]
    pub resolved_url: String,
    /// Every injected header, `headers_env` read (set when the config is loaded).
    #[serde(skip)]
    pub resolved_headers: Vec<(String, String)>,
}

impl std::fmt::Debug for EndpointConfig {
    /// Header values and the URL's credentials stay out of any log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("name", &self.name)
            .field("url", &redact_url(&self.resolved_url))
            .field(
                "headers",
                &self
                    .resolved_headers
                    .iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>(),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

fn default_connect_timeout_ms() -> Duration {
    Duration::from_secs(2)
}
fn default_response_timeout_ms() -> Duration {
    Duration::from_secs(10)
}
fn default_max_request_bytes() -> usize {
    16 << 20
}
fn default_max_response_bytes() -> usize {
    1 << 20
}
fn default_max_in_flight() -> usize {
    16
}
fn default_pool_max_idle() -> usize {
    8
}

/// Headers the host sets itself, which an endpoint may not inject either.
pub const HOST_OWNED_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

impl EndpointConfig {
    /// Reads `url_env` and `headers_env`, and checks the URL and the headers.
    fn resolve(&mut self) -> Result<(), (String, String)> {
        let url = match (&self.url, &self.url_env) {
            (Some(_), Some(_)) => {
                return Err(("url".into(), "and `url_env` are both set; keep one".into()));
            }
            (Some(u), None) => u.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                (
                    "url_env".to_owned(),
                    format!("names `{var}`, which is not set in the environment"),
                )
            })?,
            (None, None) => return Err(("url".into(), "or `url_env` must be set".into())),
        };
        let parsed = url::Url::parse(&url).map_err(|e| {
            let field = if self.url_env.is_some() {
                "url_env"
            } else {
                "url"
            };
            (field.to_owned(), format!("is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err((
                "url".into(),
                "must be an http:// or https:// URL with a host".into(),
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err((
                "url".into(),
                "must not have a query or fragment (the plugin's target adds the query)".into(),
            ));
        }
        self.resolved_url = url;
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            headers.push((name.clone(), value.clone()));
        }
        for (name, var) in &self.headers_env {
            let value = std::env::var(var).map_err(|_| {
                (
                    format!("headers_env.{name}"),
                    format!("names `{var}`, which is not set in the environment"),
                )
            })?;
            headers.push((name.clone(), value));
        }
        for (name, value) in &headers {
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid_name || HOST_OWNED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err((
                    format!("headers.{name}"),
                    "is not a header an endpoint may set".into(),
                ));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err((
                    format!("headers.{name}"),
                    "holds a line break or NUL".into(),
                ));
            }
        }
        self.resolved_headers = headers;
        Ok(())
    }
}

fn default_isolation_max_calls() -> u32 {
    64
}
fn default_log_lines_per_second() -> u32 {
    100
}
fn default_log_line_max_bytes() -> usize {
    4096
}

fn default_timeout_ms() -> Duration {
    Duration::from_millis(5_000)
}
fn default_memory_limit() -> usize {
    64 << 20
}
fn default_queue_batches() -> usize {
    16
}
fn default_instances() -> usize {
    1
}
fn default_backoff_ms() -> Duration {
    Duration::from_millis(100)
}
fn default_backoff_max_ms() -> Duration {
    Duration::from_millis(5_000)
}
fn empty_table() -> toml::Table {
    toml::Table::new()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Directory on the host (relative to the config file); created if missing.
    pub host: PathBuf,
    /// Where the plugin sees it, e.g. `/data`.
    pub guest: String,
    #[serde(default)]
    pub writable: bool,
}

/// A configuration that cannot be used. The message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid config {origin}: `{field}` {problem}")]
    Invalid {
        origin: String,
        field: String,
        problem: String,
    },
}

impl Config {
    /// Reads, parses and validates a config file; relative paths resolve against its directory.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the field.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &path.display().to_string(), &base)
    }

    /// The embedded default configuration (paths relative to the working directory).
    ///
    /// # Errors
    /// Only if the embedded text is broken (a test guards against it).
    pub fn default_config() -> Result<Config, ConfigError> {
        Self::parse(DEFAULT_TOML, "(embedded default)", Path::new(""))
    }

    /// Parses and validates TOML text.
    ///
    /// # Errors
    /// [`ConfigError`] naming `origin` and the field.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        cfg.validate(origin)?;
        if let Some(a) = &mut cfg.sources.amqp {
            let field = if a.url_env.is_some() {
                "sources.amqp.url_env"
            } else {
                "sources.amqp.url"
            };
            let ssl = a.ssl;
            let (url, uris) = a
                .resolve_url()
                .and_then(|u| {
                    let uris = transport_url::broker_uris(&u, ssl)?;
                    Ok((u, uris.into_iter().map(|b| b.0).collect()))
                })
                .map_err(|problem| ConfigError::Invalid {
                    origin: origin.to_owned(),
                    field: field.to_owned(),
                    problem,
                })?;
            a.resolved_url = url;
            a.broker_uris = uris;
            for p in [
                &mut a.ssl_ca_file,
                &mut a.ssl_cert_file,
                &mut a.ssl_key_file,
            ]
            .into_iter()
            .flatten()
            {
                *p = base.join(&*p);
            }
        }
        if let Some(t) = &cfg.sources.tcp {
            t.check().map_err(|(field, problem)| ConfigError::Invalid {
                origin: origin.to_owned(),
                field: format!("sources.tcp.{field}"),
                problem: problem.to_owned(),
            })?;
        }
        if let Some(h) = &mut cfg.sources.http {
            h.resolve(base)
                .map_err(|(field, problem)| ConfigError::Invalid {
                    origin: origin.to_owned(),
                    field: format!("sources.http.{field}"),
                    problem,
                })?;
        }
        for (i, d) in cfg.dispatchers.iter_mut().enumerate() {
            if let PluginSource::File(p) = &mut d.plugin {
                *p = base.join(&*p);
            }
            for g in &mut d.dirs {
                g.host = base.join(&g.host);
            }
            for (j, e) in d.endpoints.iter_mut().enumerate() {
                e.resolve()
                    .map_err(|(field, problem)| ConfigError::Invalid {
                        origin: origin.to_owned(),
                        field: format!("dispatchers[{i}].endpoints[{j}].{field}"),
                        problem,
                    })?;
                for p in [
                    &mut e.ca_file,
                    &mut e.client_cert_file,
                    &mut e.client_key_file,
                ]
                .into_iter()
                .flatten()
                {
                    *p = base.join(&*p);
                }
            }
        }
        Ok(cfg)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |field: String, problem: &str| ConfigError::Invalid {
            origin: origin.to_owned(),
            field,
            problem: problem.to_owned(),
        };
        if self.batch.max_samples == 0 {
            return Err(bad("batch.max_samples".into(), "must be at least 1"));
        }
        if self.batch.max_bytes < 1024 {
            return Err(bad("batch.max_bytes".into(), "must be at least 1024"));
        }
        if self.batch.max_delay.is_zero() {
            return Err(bad("batch.max_delay_ms".into(), "must be at least 1"));
        }
        if let Some(u) = &self.sources.udp {
            if u.max_datagrams_per_wake == 0 {
                return Err(bad(
                    "sources.udp.max_datagrams_per_wake".into(),
                    "must be at least 1",
                ));
            }
            if u.decode_threads == 0 || u.decode_threads > 64 {
                return Err(bad(
                    "sources.udp.decode_threads".into(),
                    "must be between 1 and 64",
                ));
            }
        }
        if let Some(a) = &self.sources.amqp {
            if a.url.is_none() && a.url_env.is_none() {
                return Err(bad("sources.amqp.url".into(), "or `url_env` must be set"));
            }
            if let Some(u) = &a.url
                && let Err(problem) = transport_url::broker_uris(u, a.ssl)
            {
                return Err(bad("sources.amqp.url".into(), &problem));
            }
            if a.ssl_cert_file.is_some() != a.ssl_key_file.is_some() {
                let field = if a.ssl_cert_file.is_some() {
                    "sources.amqp.ssl_key_file"
                } else {
                    "sources.amqp.ssl_cert_file"
                };
                return Err(bad(
                    field.into(),
                    "must be set too: a client certificate needs its key",
                ));
            }
            if !a.notifications && !a.rpc {
                return Err(bad(
                    "sources.amqp".into(),
                    "has both `notifications` and `rpc` off",
                ));
            }
            if a.channels == 0 || a.channels > 64 {
                return Err(bad(
                    "sources.amqp.channels".into(),
                    "must be between 1 and 64",
                ));
            }
            if a.max_message_bytes < 1024 {
                return Err(bad(
                    "sources.amqp.max_message_bytes".into(),
                    "must be at least 1024",
                ));
            }
            if a.decode_threads == 0 || a.decode_threads > 64 {
                return Err(bad(
                    "sources.amqp.decode_threads".into(),
                    "must be between 1 and 64",
                ));
            }
            if a.max_samples_per_message == 0 {
                return Err(bad(
                    "sources.amqp.max_samples_per_message".into(),
                    "must be at least 1",
                ));
            }
            if a.prefetch_count == 0 {
                return Err(bad(
                    "sources.amqp.prefetch_count".into(),
                    "must be at least 1",
                ));
            }
        }
        if self.admin.max_connections == 0 {
            return Err(bad("admin.max_connections".into(), "must be at least 1"));
        }
        if self.admin.request_timeout.is_zero() {
            return Err(bad("admin.request_timeout_ms".into(), "must be at least 1"));
        }
        if self.dispatchers.is_empty() {
            return Err(bad(
                "dispatchers".into(),
                "must list at least one dispatcher",
            ));
        }
        for (i, d) in self.dispatchers.iter().enumerate() {
            let f = |name: &str| format!("dispatchers[{i}].{name}");
            if !is_name(&d.name) {
                return Err(bad(
                    f("name"),
                    "must be non-empty letters, digits, `-` or `_`",
                ));
            }
            if self.dispatchers[..i].iter().any(|o| o.name == d.name) {
                return Err(bad(f("name"), "is used by another dispatcher"));
            }
            if let PluginSource::Builtin(b) = &d.plugin
                && !BUILTIN_PLUGINS.contains(&b.as_str())
            {
                return Err(bad(f("plugin"), "names an unknown builtin plugin"));
            }
            if d.timeout.is_zero() {
                return Err(bad(f("timeout_ms"), "must be at least 1"));
            }
            if d.memory_limit_bytes < 65536 {
                return Err(bad(
                    f("memory_limit_bytes"),
                    "must be at least 65536 (one wasm page)",
                ));
            }
            if d.queue_batches == 0 {
                return Err(bad(f("queue_batches"), "must be at least 1"));
            }
            if d.instances == 0 || d.instances > 64 {
                return Err(bad(f("instances"), "must be between 1 and 64"));
            }
            if d.log_line_max_bytes < 64 {
                return Err(bad(f("log_line_max_bytes"), "must be at least 64"));
            }
            for (j, e) in d.endpoints.iter().enumerate() {
                let ef = |name: &str| format!("dispatchers[{i}].endpoints[{j}].{name}");
                if !is_name(&e.name) {
                    return Err(bad(
                        ef("name"),
                        "must be non-empty letters, digits, `-` or `_`",
                    ));
                }
                if d.endpoints[..j].iter().any(|o| o.name == e.name) {
                    return Err(bad(
                        ef("name"),
                        "is used by another endpoint of this dispatcher",
                    ));
                }
                if e.client_cert_file.is_some() != e.client_key_file.is_some() {
                    return Err(bad(
                        ef("client_cert_file"),
                        "and `client_key_file` go together",
                    ));
                }
                if e.max_in_flight == 0 {
                    return Err(bad(ef("max_in_flight"), "must be at least 1"));
                }
                if e.connect_timeout.is_zero() || e.response_timeout.is_zero() {
                    return Err(bad(
                        ef("response_timeout_ms"),
                        "and `connect_timeout_ms` must be at least 1",
                    ));
                }
                if e.max_response_bytes == 0 {
                    return Err(bad(ef("max_response_bytes"), "must be at least 1"));
                }
            }
            for (j, g) in d.dirs.iter().enumerate() {
                if !g.guest.starts_with('/') {
                    return Err(bad(
                        format!("dispatchers[{i}].dirs[{j}].guest"),
                        "must be an absolute path like /data",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A dispatcher's or endpoint's name: non-empty letters, digits, `-` and `_`
/// (it goes into metric labels and log lines as it is).
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl DispatcherConfig {
    /// The `config` table as JSON text, for the plugin's `init`.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::default_config().expect("default config");
        let udp = c.sources.udp.expect("udp source");
        assert_eq!(udp.address.to_string(), "127.0.0.1:4952");
        assert_eq!(c.dispatchers[0].plugin.to_string(), "builtin:file");
    }

    #[test]
    fn example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../collector.example.toml");
        Config::load(&path).expect("example config");
    }

    fn err(text: &str) -> String {
        match Config::parse(text, "t.toml", Path::new("")) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn endpoints_are_checked_and_their_secrets_stay_out_of_debug() {
        let d = "[[dispatchers]]\nname='a'\nplugin='builtin:noop'\n[[dispatchers.endpoints]]\nname='e'\n";
        assert!(err(d).contains("dispatchers[0].endpoints[0].url"));
        assert!(
            err(&format!("{d}url='ftp://x'\n")).contains("http:// or https://"),
            "scheme"
        );
        assert!(err(&format!("{d}url='http://x/?q=1'\n")).contains("query"));
        assert!(
            err(&format!("{d}url='http://x'\nheaders = {{ Host = 'y' }}\n"))
                .contains("endpoints[0].headers.Host")
        );
        assert!(
            err(&format!(
                "{d}url='http://x'\nheaders_env = {{ Authorization = 'COLLECTOR_TEST_UNSET_VAR' }}\n"
            ))
            .contains("endpoints[0].headers_env.Authorization")
        );
        assert!(
            err(&format!(
                "{d}url='http://x'\n[[dispatchers.endpoints]]\nname='e'\nurl='http://y'\n"
            ))
            .contains("endpoints[1].name")
        );
        let ok = Config::parse(
            &format!("{d}url='https://user:pw@gnocchi:8041/base'\nheaders = {{ X-Auth-Token = 's3cret' }}\n"),
            "t.toml",
            Path::new(""),
        )
        .expect("valid endpoint");
        let e = &ok.dispatchers[0].endpoints[0];
        assert_eq!(
            e.resolved_headers,
            vec![("X-Auth-Token".to_owned(), "s3cret".to_owned())]
        );
        let shown = format!("{ok:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains(":pw@"),
            "{shown}"
        );
        assert!(shown.contains("X-Auth-Token"), "{shown}");
    }

    #[test]
    fn input_settings_name_their_field_and_keep_the_password_out_of_debug() {
        let d = "[[dispatchers]]\nname='a'\nplugin='builtin:noop'\n";
        assert!(
            err(&format!(
                "[sources.tcp]\naddress='127.0.0.1:1'\nmax_frame_bytes=1\n{d}"
            ))
            .contains("sources.tcp.max_frame_bytes")
        );
        let http = "[sources.http]\naddress='127.0.0.1:1'\n";
        assert!(
            err(&format!("{http}tls_cert_file='c.pem'\n{d}"))
                .contains("sources.http.tls_cert_file")
        );
        assert!(err(&format!("{http}username='u'\n{d}")).contains("sources.http.username"));
        assert!(
            err(&format!(
                "{http}password_env='COLLECTOR_TEST_UNSET_VAR'\n{d}"
            ))
            .contains("sources.http.password_env")
        );
        assert!(err(&format!("{http}otlp_path='v1'\n{d}")).contains("sources.http.otlp_path"));
        assert!(
            err(&format!(
                "{http}max_body_bytes=2048\nmax_bytes_in_flight=1024\n{d}"
            ))
            .contains("sources.http.max_bytes_in_flight")
        );
        let ok = Config::parse(
            &format!("{http}username='u'\npassword='s3cret'\ntls_cert_file='c.pem'\ntls_key_file='k.pem'\n{d}"),
            "t.toml",
            Path::new("/etc/collector"),
        )
        .expect("valid");
        let h = ok.sources.http.as_ref().expect("http");
        assert_eq!(h.resolved_password.as_deref(), Some("s3cret"));
        assert_eq!(
            h.tls_cert_file.as_deref(),
            Some(Path::new("/etc/collector/c.pem"))
        );
        assert!(!format!("{ok:?}").contains("s3cret"));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[batch]\nmax_sample = 3\n[[dispatchers]]\nname='a'\nplugin='builtin:noop'\n");
        assert!(e.contains("max_sample"), "{e}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let d = "[[dispatchers]]\nname='a'\nplugin='builtin:noop'\n";
        assert!(err(&format!("[batch]\nmax_samples = 0\n{d}")).contains("batch.max_samples"));
        assert!(err(&format!("{d}timeout_ms = 0\n")).contains("dispatchers[0].timeout_ms"));
        assert!(err("[sources.udp]\naddress = 'nowhere'\n").contains("address"));
        assert!(
            err("[[dispatchers]]\nname='a'\nplugin='builtin:nope'\n")
                .contains("dispatchers[0].plugin")
        );
        assert!(err("").contains("dispatchers"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(redact_url("amqp://h:5672/"), "amqp://h:5672/");
    }

    #[test]
    fn redacts_passwords_holding_separators_and_every_host_of_an_oslo_url() {
        let cases = [
            ("amqp://u:p@ss@h:5672/v", "amqp://u:***@h:5672/v"),
            ("amqp://u:a@b@c@h/", "amqp://u:***@h/"),
            ("amqp://u:p,w@h:5672/", "amqp://u:***@h:5672/"),
            ("amqp://u:p/w@h:5672/v", "amqp://u:***@h:5672/v"),
            ("amqp://u:p:w@h", "amqp://u:***@h"),
            (
                "rabbit://u1:p1@h1:5672,u2:p@2,x@h2:5672,u3:p3@h3:5672/v?ssl=1",
                "rabbit://u1:***@h1:5672,u2:***@h2:5672,u3:***@h3:5672/v?ssl=1",
            ),
            ("rabbit://u:p@h1,h2,h3/", "rabbit://u:***@h1,h2,h3/"),
            ("rabbit://user@h1:5672/", "rabbit://user@h1:5672/"),
            ("amqp://u:p@[::1]:5672/", "amqp://u:***@[::1]:5672/"),
            ("amqp://u:s3cr@t,p:w/rd@h:1/%2f", "amqp://u:***@h:1/%2f"),
            ("amqps://u:a,b:c@d@h/", "amqps://u:***@h/"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
        // Whatever the password, no piece of it longer than the user name survives.
        for password in [
            "p@ss",
            "a,b@c",
            "x/y@z",
            "@@@",
            ",,@,,",
            "p:@,/w",
            "s3cr@t,p:w/rd",
        ] {
            let url = format!("amqp://me:{password}@h1:5672/vh");
            let shown = redact_url(&url);
            assert_eq!(shown, "amqp://me:***@h1:5672/vh", "{url}");
        }
        for password in ["p@ss", "a,b@c", "@@@", ",,@,,", "p@w"] {
            let url = format!("rabbit://me:{password}@h1:5672,me:{password}@h2/vh");
            let shown = redact_url(&url);
            assert!(!shown.contains(password), "{url} -> {shown}");
            assert!(shown.ends_with("/vh"), "{url} -> {shown}");
        }
    }

    #[test]
    fn url_env_is_read_when_the_config_is_parsed() {
        let text = "[sources.amqp]\nurl_env = 'COLLECTOR_TEST_URL_THAT_IS_NOT_SET'\n\
                    [[dispatchers]]\nname='a'\nplugin='builtin:noop'\n";
        let e = err(text);
        assert!(
            e.contains("sources.amqp.url_env") && e.contains("not set"),
            "{e}"
        );
        let text =
            "[sources.amqp]\nurl = 'amqp://h/'\n[[dispatchers]]\nname='a'\nplugin='builtin:noop'\n";
        let c = Config::parse(text, "t", Path::new("")).expect("valid");
        assert_eq!(c.sources.amqp.expect("amqp").broker_url(), "amqp://h/");
    }

    #[test]
    fn durations_levels_and_plugin_sources_are_typed() {
        let c = Config::parse(
            "[log]\nlevel = 'debug'\nformat = 'json'\n[batch]\nmax_delay_ms = 250\n\
             [[dispatchers]]\nname='a'\nplugin='p.wasm'\ntimeout_ms = 1500\n",
            "t",
            Path::new("/etc/collector"),
        )
        .expect("valid");
        assert_eq!(c.log.level, LogLevel::Debug);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.batch.max_delay, Duration::from_millis(250));
        assert_eq!(c.dispatchers[0].timeout, Duration::from_millis(1500));
        assert_eq!(
            c.dispatchers[0].plugin,
            PluginSource::File(PathBuf::from("/etc/collector/p.wasm"))
        );
        let e = err("[log]\nlevel = 'loud'\n[[dispatchers]]\nname='a'\nplugin='builtin:noop'\n");
        assert!(e.contains("level") && e.contains("loud"), "{e}");
    }

    #[test]
    fn plugin_config_becomes_json() {
        let c = Config::parse(
            "[[dispatchers]]\nname='a'\nplugin='builtin:noop'\n[dispatchers.config]\npath='/data/x'\nn=3\n",
            "t",
            Path::new(""),
        )
        .expect("valid");
        let v: serde_json::Value =
            serde_json::from_str(&c.dispatchers[0].config_json()).expect("json");
        assert_eq!(v["path"], "/data/x");
        assert_eq!(v["n"], 3);
    }
}
