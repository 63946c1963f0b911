//! Outbound HTTP for plugins, to the endpoints the operator declared per
//! dispatcher (`[[dispatchers.endpoints]]`) and nowhere else.
//!
//! A plugin names an endpoint and a target (path and query); the host checks the
//! target stays under the endpoint's URL, adds the endpoint's headers
//! (credentials the plugin never sees), and sends it on the endpoint's pool: one
//! hyper-util client per endpoint (HTTP/1.1 keep-alive, HTTP/2 by ALPN or prior
//! knowledge, rustls), built when the dispatcher starts and kept across plugin
//! reloads. Requests run on the daemon's tokio runtime; at most `max_in_flight`
//! at once per endpoint (more are refused at once, not queued), each bounded by
//! `response_timeout_ms` and `max_response_bytes`. The only DNS names ever
//! resolved are the endpoints' own hosts.
//!
//! - [`tls`]: the rustls client configuration of an endpoint.

pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{Semaphore, oneshot};

use crate::config::{EndpointConfig, HOST_OWNED_HEADERS};
use crate::telemetry::events::EgressRefused;
use crate::telemetry::{Counter, EndpointStats, RateLimit, Telemetry};
use collector_sdk::abi;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Why an endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("endpoint `{endpoint}`: TLS: {what}")]
    Tls { endpoint: String, what: String },
    #[error("endpoint `{endpoint}`: {what}")]
    Invalid { endpoint: String, what: String },
}

/// The endpoints of one dispatcher, by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct Endpoints {
    dispatcher: Arc<str>,
    by_name: Arc<BTreeMap<String, Arc<Endpoint>>>,
    /// Refused requests, counted on the dispatcher (`egress_refused`).
    refused: Counter,
    warn: Arc<RateLimit>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Endpoints {
    /// Builds the pools of `dispatcher`'s endpoints, counting into `telemetry`
    /// (or nowhere, for `collector check`).
    ///
    /// # Errors
    /// [`EgressError`] naming the endpoint, when its TLS files cannot be used.
    pub fn build(
        dispatcher: &str,
        cfgs: &[EndpointConfig],
        telemetry: Option<&Telemetry>,
        refused: Counter,
    ) -> Result<Endpoints, EgressError> {
        let mut by_name = BTreeMap::new();
        for c in cfgs {
            let stats =
                telemetry.map_or_else(EndpointStats::detached, |t| t.endpoint(dispatcher, &c.name));
            by_name.insert(c.name.clone(), Arc::new(Endpoint::new(c, stats)?));
        }
        Ok(Endpoints {
            dispatcher: dispatcher.into(),
            by_name: Arc::new(by_name),
            refused,
            warn: Arc::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The names of the endpoints.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The `max_request_bytes` of endpoint `name`.
    ///
    /// # Errors
    /// A [`Refusal`] (counted and logged) when no endpoint `name` is declared.
    pub fn max_request_bytes(&self, name: &str) -> Result<usize, Refusal> {
        match self.by_name.get(name) {
            Some(e) => Ok(e.max_request_bytes),
            None => Err(self.refuse(name, abi::HTTP_ERR_UNKNOWN_ENDPOINT, self.unknown(name))),
        }
    }

    /// Why a request to `name`, which is not declared, is refused.
    fn unknown(&self, name: &str) -> String {
        format!(
            "no endpoint `{}` is declared for this dispatcher (declared: {})",
            crate::telemetry::Untrusted(name),
            if self.by_name.is_empty() {
                "none".to_owned()
            } else {
                self.names().join(", ")
            }
        )
    }

    /// Refuses a request to `endpoint` for `why` before it could be checked
    /// here (a component's request the host could not read): counted and
    /// logged as [`Endpoints::start`]'s refusals are.
    pub fn refuse(&self, endpoint: &str, code: i32, why: String) -> Refusal {
        EgressRefused {
            dispatcher: &self.dispatcher,
            endpoint,
            why: &why,
        }
        .emit(&self.refused, &self.warn);
        Refusal { code, why }
    }

    /// Checks a plugin's request and starts it on `rt`.
    ///
    /// # Errors
    /// A [`Refusal`] (counted and logged, rate-limited): nothing was sent.
    pub fn start(
        &self,
        rt: &tokio::runtime::Handle,
        req: &collector_sdk::http::RequestView<'_>,
    ) -> Result<Started, Refusal> {
        let result = match self.by_name.get(req.endpoint) {
            Some(e) => e.start(rt, req),
            None => Err(Refusal {
                code: abi::HTTP_ERR_UNKNOWN_ENDPOINT,
                why: self.unknown(req.endpoint),
            }),
        };
        if let Err(r) = &result {
            EgressRefused {
                dispatcher: &self.dispatcher,
                endpoint: req.endpoint,
                why: &r.why,
            }
            .emit(&self.refused, &self.warn);
        }
        result
    }
}

/// A request the host would not send.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// An `HTTP_ERR_*` code of the ABI.
    pub code: i32,
    pub why: String,
}

/// A request that was sent: its answer comes on `answer`; `abort` cancels it.
pub struct Started {
    pub answer: oneshot::Receiver<Result<Answer, Failure>>,
    pub abort: tokio::task::AbortHandle,
}

/// A whole response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a request that was sent got no whole response.
#[derive(Debug, Clone)]
pub struct Failure {
    /// An `HTTP_FAIL_*` code of the ABI.
    pub code: i32,
    pub why: String,
}

/// One endpoint: its URL, pool, injected headers and limits.
pub struct Endpoint {
    name: String,
    base: url::Url,
    client: Client<Connector, Full<Bytes>>,
    inject: Vec<(HeaderName, HeaderValue)>,
    response_timeout: Duration,
    max_request_bytes: usize,
    max_response_bytes: usize,
    max_in_flight: usize,
    in_flight: Arc<Semaphore>,
    stats: EndpointStats,
}

impl Endpoint {
    fn new(c: &EndpointConfig, stats: EndpointStats) -> Result<Endpoint, EgressError> {
        let invalid = |what: String| EgressError::Invalid {
            endpoint: c.name.clone(),
            what,
        };
        let base = url::Url::parse(&c.resolved_url).map_err(|e| invalid(e.to_string()))?;
        let mut inject = Vec::new();
        for (n, v) in &c.resolved_headers {
            let name = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| invalid(format!("header `{n}` is not a header name")))?;
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| invalid(format!("the value of header `{n}` is not valid")))?;
            value.set_sensitive(true);
            inject.push((name, value));
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(c.connect_timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(c)?)
            .https_or_http();
        let connector = if c.http2_prior_knowledge {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().enable_http2().wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(c.pool_max_idle)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(c.http2_prior_knowledge)
            .build(connector);
        Ok(Endpoint {
            name: c.name.clone(),
            base,
            client,
            inject,
            response_timeout: c.response_timeout,
            max_request_bytes: c.max_request_bytes,
            max_response_bytes: c.max_response_bytes,
            max_in_flight: c.max_in_flight,
            in_flight: Arc::new(Semaphore::new(c.max_in_flight)),
            stats,
        })
    }

    /// The URL of `target` under this endpoint, if it stays under it.
    fn url_of(&self, target: &str) -> Result<url::Url, String> {
        if target.is_empty() {
            return Ok(self.base.clone());
        }
        if !target.starts_with('/') || target.starts_with("//") {
            return Err("the target must be a path starting with a single `/`".into());
        }
        if target
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'#' || b == b'\\')
        {
            return Err("the target holds a space, a control character, `#` or `\\`".into());
        }
        let path = target.split('?').next().unwrap_or("");
        if path.split('/').any(is_dot_segment) {
            return Err("the target's path holds `.` or `..` segments".into());
        }
        let base = self.base.as_str().trim_end_matches('/');
        let url = url::Url::parse(&format!("{base}{target}"))
            .map_err(|e| format!("the target does not make a URL: {e}"))?;
        // Under the base path segment by segment: `/api/v1` holds `/api/v1/x`,
        // not `/api/v1-admin`.
        let base_path = self.base.path().trim_end_matches('/');
        let under = url.path() == base_path
            || url
                .path()
                .strip_prefix(base_path)
                .is_some_and(|rest| rest.starts_with('/'));
        let same = url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
            && url.username() == self.base.username()
            && under;
        if !same {
            return Err("the target leaves the endpoint's URL".into());
        }
        Ok(url)
    }

    fn start(
        &self,
        rt: &tokio::runtime::Handle,
        req: &collector_sdk::http::RequestView<'_>,
    ) -> Result<Started, Refusal> {
        let refuse = |code: i32, why: String| Refusal { code, why };
        if req.body.len() > self.max_request_bytes {
            return Err(refuse(
                abi::HTTP_ERR_TOO_LARGE,
                format!(
                    "a body of {} bytes is over max_request_bytes ({}) of endpoint `{}`",
                    req.body.len(),
                    self.max_request_bytes,
                    self.name
                ),
            ));
        }
        let method = hyper::Method::from_bytes(req.method.as_bytes()).map_err(|_| {
            refuse(
                abi::HTTP_ERR_MALFORMED,
                format!(
                    "`{}` is not an HTTP method",
                    crate::telemetry::Untrusted(req.method)
                ),
            )
        })?;
        let url = self.url_of(req.target).map_err(|why| {
            refuse(
                abi::HTTP_ERR_BAD_TARGET,
                format!(
                    "target `{}` of endpoint `{}`: {why}",
                    crate::telemetry::Untrusted(req.target),
                    self.name
                ),
            )
        })?;
        let mut builder = hyper::Request::builder().method(method).uri(url.as_str());
        for (n, v) in &req.headers {
            let lower = n.to_ascii_lowercase();
            let owned = HOST_OWNED_HEADERS.contains(&lower.as_str())
                || self.inject.iter().any(|(i, _)| i.as_str() == lower);
            let name = HeaderName::from_bytes(n.as_bytes());
            let value = HeaderValue::from_str(v);
            match (owned, name, value) {
                (false, Ok(name), Ok(value)) => builder = builder.header(name, value),
                _ => {
                    return Err(refuse(
                        abi::HTTP_ERR_HEADER,
                        format!(
                            "header `{}` is the host's, or not a valid header",
                            crate::telemetry::Untrusted(n)
                        ),
                    ));
                }
            }
        }
        for (n, v) in &self.inject {
            builder = builder.header(n, v);
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(req.body)))
            .map_err(|e| refuse(abi::HTTP_ERR_MALFORMED, e.to_string()))?;
        let permit = self.in_flight.clone().try_acquire_owned().map_err(|_| {
            refuse(
                abi::HTTP_ERR_BUSY,
                format!(
                    "endpoint `{}` has max_in_flight ({}) requests running",
                    self.name, self.max_in_flight
                ),
            )
        })?;
        let (tx, answer) = oneshot::channel();
        let client = self.client.clone();
        let (timeout, max_response) = (self.response_timeout, self.max_response_bytes);
        let stats = self.stats.clone();
        let sent = req.body.len() as u64;
        let task = rt.spawn(async move {
            let _permit = permit;
            let in_flight = InFlight::new(&stats.counts.egress_in_flight);
            stats.counts.egress_bytes_sent.inc_by(sent);
            let started = Instant::now();
            let result = tokio::time::timeout(timeout, exchange(client, request, max_response))
                .await
                .unwrap_or_else(|_| {
                    Err(Failure {
                        code: abi::HTTP_FAIL_TIMEOUT,
                        why: format!("no whole response within response_timeout_ms ({timeout:?})"),
                    })
                });
            stats
                .duration_seconds
                .observe(started.elapsed().as_secs_f64());
            drop(in_flight);
            match &result {
                Ok(a) => {
                    stats.counts.egress_responses.inc();
                    stats
                        .counts
                        .egress_bytes_received
                        .inc_by(a.body.len() as u64);
                }
                Err(_) => {
                    stats.counts.egress_failures.inc();
                }
            }
            let _ = tx.send(result);
        });
        Ok(Started {
            answer,
            abort: task.abort_handle(),
        })
    }
}

/// Whether a path segment is `.` or `..`, with any of its dots written `%2e`
/// (the url crate resolves those as dot segments too).
fn is_dot_segment(seg: &str) -> bool {
    let lower = seg.to_ascii_lowercase();
    let dots = lower.replace("%2e", ".");
    dots == "." || dots == ".."
}

/// Counts a request in `egress_in_flight` while it lives: an aborted request
/// (its plugin gave up on it) is let go too.
struct InFlight(crate::telemetry::Gauge);

impl InFlight {
    fn new(g: &crate::telemetry::Gauge) -> InFlight {
        g.inc();
        InFlight(g.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Sends `request` and reads the whole response, at most `max_response` body bytes.
async fn exchange(
    client: Client<Connector, Full<Bytes>>,
    request: hyper::Request<Full<Bytes>>,
    max_response: usize,
) -> Result<Answer, Failure> {
    let response = client.request(request).await.map_err(|e| {
        let code = if e.is_connect() {
            abi::HTTP_FAIL_CONNECT
        } else {
            abi::HTTP_FAIL_IO
        };
        Failure {
            code,
            why: error_chain(&e),
        }
    })?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, max_response)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Failure {
                    code: abi::HTTP_FAIL_RESPONSE_TOO_LARGE,
                    why: format!("the response body is over max_response_bytes ({max_response})"),
                }
            } else {
                Failure {
                    code: abi::HTTP_FAIL_IO,
                    why: format!("reading the response body: {e}"),
                }
            }
        })?
        .to_bytes();
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// `error: cause: cause`, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        let toml = format!(
            "telemetry_secret = \"\"\n[[dispatchers]]\nname = \"d\"\nplugin = \"builtin:noop\"\n\
             [[dispatchers.endpoints]]\nname = \"e\"\nurl = \"{url}\"\n"
        );
        let cfg =
            crate::config::Config::parse(&toml, "test", std::path::Path::new("/")).expect("config");
        Endpoint::new(&cfg.dispatchers[0].endpoints[0], EndpointStats::detached())
            .expect("endpoint")
    }

    #[test]
    fn targets_stay_under_the_endpoint() {
        let e = endpoint("http://127.0.0.1:8428/api/v1");
        assert_eq!(
            e.url_of("/write?db=x").expect("under").as_str(),
            "http://127.0.0.1:8428/api/v1/write?db=x"
        );
        assert_eq!(
            e.url_of("").expect("itself").as_str(),
            "http://127.0.0.1:8428/api/v1"
        );
        for bad in [
            "write",
            "//evil.example/x",
            "/../admin",
            "/a/../../b",
            "/%2E%2E/x",
            "/x#frag",
            "/a b",
            "/a\r\nHost: evil",
            "@evil.example/",
            "/\\evil",
            "/.%2e/v1-admin",
            "/%2e./x",
            "/%2E/x",
            "/a/.%2E/../b",
        ] {
            assert!(e.url_of(bad).is_err(), "{bad:?} was let through");
        }
        // A sibling of the base path is not under it.
        let v1 = endpoint("http://127.0.0.1:8428/api/v1");
        assert!(v1.url_of("/../v1-admin").is_err());
        assert!(v1.url_of("/x").is_ok());
        let root = endpoint("http://127.0.0.1:8041");
        assert_eq!(
            root.url_of("/v1/batch").expect("under").as_str(),
            "http://127.0.0.1:8041/v1/batch"
        );
    }
}
