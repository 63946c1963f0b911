//! `[sources.tcp]` and `[sources.http]`: the inputs for Ceilometer's `tcp://`,
//! `http(s)://` and `opentelemetryhttp://` publishers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::millis;

/// Ceilometer's `tcp://` publisher: 8-byte little-endian length, then one msgpack map.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// The publisher's default port is 4952 (`tcp://host` means `host:4952`).
    pub address: SocketAddr,
    /// A frame announcing more bytes than this closes its connection (counted).
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// Connections served at once; the next wait in the kernel's backlog.
    #[serde(default = "default_tcp_connections")]
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed. Keep it longer
    /// than the agents' polling interval: the publisher never reads, so the
    /// first sample it sends on a connection we closed is lost on its side.
    #[serde(
        rename = "idle_timeout_ms",
        default = "default_tcp_idle_ms",
        with = "millis"
    )]
    pub idle_timeout: Duration,
    /// A frame whose bytes have begun must be whole within this (a sender that
    /// stalls half-way through a frame is closed, counted).
    #[serde(
        rename = "frame_timeout_ms",
        default = "default_frame_timeout_ms",
        with = "millis"
    )]
    pub frame_timeout: Duration,
}

fn default_max_frame_bytes() -> usize {
    1 << 20
}
fn default_tcp_connections() -> usize {
    1024
}
fn default_tcp_idle_ms() -> Duration {
    Duration::from_secs(3600)
}
fn default_frame_timeout_ms() -> Duration {
    Duration::from_secs(30)
}

/// Ceilometer's `http://` (and `https://`) publisher, and its
/// `opentelemetryhttp://` publisher on `otlp_path`. Unsigned samples: TLS and
/// basic authentication take the signature's place.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpInputConfig {
    pub address: SocketAddr,
    /// Connections served at once; the next wait in the kernel's backlog.
    #[serde(default = "default_http_connections")]
    pub max_connections: usize,
    /// A larger body is refused with 413 before it is read.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// A body with more samples is refused with 413.
    #[serde(default = "default_max_samples_per_request")]
    pub max_samples_per_request: usize,
    /// Bytes of bodies held at once, over all requests (read, decoded, waiting
    /// for the dispatchers); a request that finds no room within
    /// `hold_timeout_ms` is answered 503. At least `max_body_bytes`.
    #[serde(default = "default_max_bytes_in_flight")]
    pub max_bytes_in_flight: usize,
    /// How long a request waits for the dispatchers to take its samples before
    /// it is answered 503 with `Retry-After`. Keep it below the publisher's
    /// `timeout` (5 s unless its URL sets `?timeout=`).
    #[serde(
        rename = "hold_timeout_ms",
        default = "default_hold_ms",
        with = "millis"
    )]
    pub hold_timeout: Duration,
    /// A request's headers and body must arrive within this.
    #[serde(
        rename = "request_timeout_ms",
        default = "default_request_ms",
        with = "millis"
    )]
    pub request_timeout: Duration,
    /// PEM certificate chain and key: serve HTTPS (for `https://` publishers).
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates: clients must present a certificate they signed
    /// (the publisher's `clientcert`/`clientkey`).
    #[serde(default)]
    pub tls_client_ca_file: Option<PathBuf>,
    /// HTTP basic authentication (the publisher puts `user:password@` in its URL).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Environment variable holding the password instead.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The password, after `password_env` (set when the config is loaded).
    #[serde(skip)]
    pub resolved_password: Option<String>,
    /// Where the `opentelemetryhttp://` publisher posts; every other path takes
    /// the `http://` publisher's JSON.
    #[serde(default = "default_otlp_path")]
    pub otlp_path: String,
    /// `source` of the samples OTLP brings (it carries none).
    #[serde(default = "default_otlp_source")]
    pub otlp_source: String,
    /// The OTLP agents' offset from UTC in minutes (east positive): their
    /// publisher computes timestamps with `time.mktime`, in local time. 0 for
    /// agents that run in UTC.
    #[serde(default)]
    pub otlp_agent_utc_offset_minutes: i32,
}

impl std::fmt::Debug for HttpInputConfig {
    /// The password stays out of any log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpInputConfig")
            .field("address", &self.address)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("hold_timeout", &self.hold_timeout)
            .field("tls", &self.tls_cert_file.is_some())
            .field("username", &self.username)
            .field("otlp_path", &self.otlp_path)
            .finish_non_exhaustive()
    }
}

fn default_http_connections() -> usize {
    256
}
fn default_max_body_bytes() -> usize {
    16 << 20
}
fn default_max_bytes_in_flight() -> usize {
    64 << 20
}
fn default_max_samples_per_request() -> usize {
    20_000
}
fn default_hold_ms() -> Duration {
    Duration::from_millis(4000)
}
fn default_request_ms() -> Duration {
    Duration::from_secs(10)
}
fn default_otlp_path() -> String {
    "/v1/metrics".into()
}
fn default_otlp_source() -> String {
    "openstack".into()
}

impl TcpConfig {
    /// Checks the values; the error names the field (under `sources.tcp.`).
    pub(crate) fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_frame_bytes < 64 {
            return Err(("max_frame_bytes", "must be at least 64"));
        }
        if self.max_connections == 0 {
            return Err(("max_connections", "must be at least 1"));
        }
        if self.idle_timeout.is_zero() {
            return Err(("idle_timeout_ms", "must be at least 1"));
        }
        if self.frame_timeout.is_zero() {
            return Err(("frame_timeout_ms", "must be at least 1"));
        }
        Ok(())
    }
}

impl HttpInputConfig {
    /// Checks the values and reads `password_env`; the error names the field
    /// (under `sources.http.`). Relative paths resolve against `base`.
    pub(crate) fn resolve(&mut self, base: &Path) -> Result<(), (&'static str, String)> {
        let bad = |field, problem: &str| Err((field, problem.to_owned()));
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes", "must be at least 1024");
        }
        if self.max_bytes_in_flight < self.max_body_bytes
            || u32::try_from(self.max_bytes_in_flight).is_err()
        {
            return bad(
                "max_bytes_in_flight",
                "must be at least max_body_bytes and below 4 GiB",
            );
        }
        if self.max_samples_per_request == 0 {
            return bad("max_samples_per_request", "must be at least 1");
        }
        if self.hold_timeout.is_zero() || self.request_timeout.is_zero() {
            return bad(
                "hold_timeout_ms",
                "and `request_timeout_ms` must be at least 1",
            );
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return bad("tls_cert_file", "and `tls_key_file` go together");
        }
        if self.tls_client_ca_file.is_some() && self.tls_cert_file.is_none() {
            return bad(
                "tls_client_ca_file",
                "needs `tls_cert_file` and `tls_key_file`",
            );
        }
        if !self.otlp_path.starts_with('/') {
            return bad("otlp_path", "must start with /");
        }
        if self.otlp_agent_utc_offset_minutes.abs() > 18 * 60 {
            return bad(
                "otlp_agent_utc_offset_minutes",
                "must be within ±1080 (18 hours)",
            );
        }
        self.resolved_password = match (&self.password, &self.password_env) {
            (Some(_), Some(_)) => {
                return bad("password", "and `password_env` are both set; keep one");
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                (
                    "password_env",
                    format!("names `{var}`, which is not set in the environment"),
                )
            })?),
            (None, None) => None,
        };
        if self.resolved_password.is_some() != self.username.is_some() {
            return bad(
                "username",
                "and a password (`password` or `password_env`) go together",
            );
        }
        for p in [
            &mut self.tls_cert_file,
            &mut self.tls_key_file,
            &mut self.tls_client_ca_file,
        ]
        .into_iter()
        .flatten()
        {
            *p = base.join(&*p);
        }
        Ok(())
    }
}
