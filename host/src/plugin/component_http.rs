//! Outbound HTTP for component plugins: `wasi:http/outgoing-handler` 0.2, sent
//! only to the dispatcher's declared endpoints, on the host's pools
//! ([`crate::egress`]), by the same checks, limits and counters as a core
//! plugin's `collector.http_*` calls. wasmtime-wasi-http's own sender is not
//! compiled in (its `default-send-request` feature is off): [`EgressHooks`] is
//! the only way out.
//!
//! A request names its endpoint by its authority: `http://NAME/target` goes to
//! endpoint `NAME`, at `target` under the endpoint's URL. The scheme the plugin
//! wrote is ignored (the endpoint's URL decides between http and https), and the
//! authority may not carry a port or credentials. The endpoint's own headers
//! (credentials the plugin never sees) are added by the host; the headers the
//! host owns (`host`, `connection`, `transfer-encoding`, `upgrade`) are refused
//! when the plugin sets them, and `content-length` is the host's to write.
//!
//! The response is read whole (at most the endpoint's `max_response_bytes`)
//! before the plugin sees it, and the wait for it ends at the call's deadline
//! minus a margin ([`wait_until`]): a plugin blocked on a slow endpoint gets
//! `http-response-timeout` in time to answer `retry`, instead of being
//! interrupted. Dropping the response future, or the instance, cancels the
//! request.
//!
//! Until the plugin has read and dropped all of it, a response body held by
//! the host counts against the instance's `memory_limit_bytes`
//! ([`MemoryBudget`]), as a core plugin's held bodies do: a plugin cannot park
//! memory in the host by keeping responses unread. A body that would take the
//! instance past its cap is let go, and the plugin gets
//! `http-response-body-size`. A request body counts too while the host reads
//! it (at most the endpoint's `max_request_bytes`, read only once the endpoint
//! is known).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_LENGTH, HeaderName};
use hyper::http::uri::Scheme;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

use super::http::wait_until;
use super::memory_budget::MemoryBudget;
use crate::config::HOST_OWNED_HEADERS;
use crate::egress::{Endpoints, Failure};
use collector_sdk::abi;

/// What a component's `wasi:http` requests go through: its dispatcher's
/// endpoints, and the current call's deadline.
pub struct EgressHooks {
    endpoints: Endpoints,
    rt: Option<tokio::runtime::Handle>,
    /// Until when the current call (or the instantiation) may wait.
    wait_until: Instant,
    /// The instance's memory cap, which held bodies count against.
    budget: Arc<MemoryBudget>,
}

impl EgressHooks {
    /// The hooks of an instance of a dispatcher with `endpoints` and memory
    /// cap `budget`, being made under deadline `timeout`; requests run on the
    /// runtime the instance is made in (none outside one: every request is
    /// refused).
    pub fn new(endpoints: Endpoints, budget: Arc<MemoryBudget>, timeout: Duration) -> EgressHooks {
        EgressHooks {
            endpoints,
            rt: tokio::runtime::Handle::try_current().ok(),
            wait_until: wait_until(timeout),
            budget,
        }
    }

    /// A call with deadline `timeout` from now begins.
    pub fn call_starts(&mut self, timeout: Duration) {
        self.wait_until = wait_until(timeout);
    }
}

/// Whether the plugin may set header `name`: not the ones wasi:http forbids,
/// nor the ones the host owns (`content-length` aside: the host rewrites it).
fn forbidden(name: &HeaderName) -> bool {
    DEFAULT_FORBIDDEN_HEADERS.contains(name)
        || (name != CONTENT_LENGTH && HOST_OWNED_HEADERS.contains(&name.as_str()))
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    hyper::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for EgressHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        Arc::new(forbidden)
    }

    /// The host writes `host` itself, from the endpoint's URL.
    fn set_host_header(&mut self) -> bool {
        false
    }

    /// The endpoint's URL decides the scheme; a request without one is fine.
    fn default_scheme(&mut self) -> Option<Scheme> {
        Some(Scheme::HTTP)
    }

    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let endpoints = self.endpoints.clone();
        let rt = self.rt.clone();
        let until = tokio::time::Instant::from_std(self.wait_until);
        let budget = self.budget.clone();
        Box::new(async move {
            let rt = rt.ok_or_else(|| refused("no outbound HTTP here (no async runtime)"))?;
            let (parts, mut body) = request.into_parts();
            let authority = parts.uri.authority().map_or("", |a| a.as_str());
            let refuse =
                |code: i32, why: String| refused(&endpoints.refuse(authority, code, why).why);
            if authority.contains([':', '@']) {
                return Err(refuse(
                    abi::HTTP_ERR_UNKNOWN_ENDPOINT,
                    "the authority must be an endpoint's name alone (no port, no user)".into(),
                ));
            }
            let max_body = endpoints
                .max_request_bytes(authority)
                .map_err(|r| refused(&r.why))?;
            // `/` (a URI's path is never empty) is the endpoint's URL itself.
            let target = match parts.uri.path_and_query().map_or("", |p| p.as_str()) {
                "/" => "",
                t => t,
            };
            let mut headers = Vec::with_capacity(parts.headers.len());
            for (n, v) in &parts.headers {
                if n == CONTENT_LENGTH {
                    continue;
                }
                let Ok(v) = v.to_str() else {
                    return Err(refuse(
                        abi::HTTP_ERR_HEADER,
                        format!("the value of header `{n}` is not visible ASCII"),
                    ));
                };
                headers.push((n.as_str(), v));
            }
            // The body, bounded by the endpoint's max_request_bytes and the
            // call's deadline, and counted against the instance's cap while
            // the host holds it.
            let mut held = HeldRequest {
                budget: budget.clone(),
                bytes: 0,
            };
            let mut buf = Vec::new();
            loop {
                let frame = tokio::time::timeout_at(until, body.frame())
                    .await
                    .map_err(|_| HttpError::ConnectionWriteTimeout)?;
                let Some(frame) = frame else { break };
                let frame = frame.map_err(|e| {
                    HttpError::InternalError(Some(format!("reading the request body: {e}")))
                })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if buf.len() + data.len() > max_body {
                    return Err(refuse(
                        abi::HTTP_ERR_TOO_LARGE,
                        format!(
                            "a body over max_request_bytes ({max_body}) of endpoint `{}`",
                            crate::telemetry::Untrusted(authority)
                        ),
                    ));
                }
                budget
                    .hold(data.len())
                    .map_err(|_| HttpError::HttpRequestBodySize(Some(buf.len() as u64)))?;
                held.bytes += data.len();
                buf.extend_from_slice(&data);
            }
            let body = buf;
            let view = collector_sdk::http::RequestView {
                endpoint: authority,
                method: parts.method.as_str(),
                target,
                headers,
                body: &body,
            };
            let started = endpoints.start(&rt, &view).map_err(|r| refused(&r.why))?;
            drop(held); // start copied the body into the request it sends
            let _cancel = AbortOnDrop(started.abort);
            let answer = tokio::time::timeout_at(until, started.answer)
                .await
                .map_err(|_| HttpError::HttpResponseTimeout)?
                .map_err(|_| HttpError::InternalError(Some("the request was cancelled".into())))?
                .map_err(failure)?;
            let body = held_body(answer.body, budget)?;
            let mut response = hyper::Response::builder()
                .status(answer.status)
                .body(
                    Full::new(body)
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )
                .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
            *response.headers_mut() = answer.headers;
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

/// A response body held for the plugin: counted against the instance's cap
/// until the last piece of it is dropped (wasi:http's stream slices it; every
/// slice keeps the whole allocation alive, so the count ends when the memory
/// is freed).
struct Counted {
    bytes: Bytes,
    budget: Arc<MemoryBudget>,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.budget.release(self.bytes.len());
    }
}

/// `body`, counted against `budget` while any of it lives; refused when it
/// does not fit.
fn held_body(body: Bytes, budget: Arc<MemoryBudget>) -> Result<Bytes, HttpError> {
    budget
        .hold(body.len())
        .map_err(|_| HttpError::HttpResponseBodySize(Some(body.len() as u64)))?;
    Ok(Bytes::from_owner(Counted {
        bytes: body,
        budget,
    }))
}

/// The part of a request body the host has read so far, counted against the
/// instance's cap until it is handed to the endpoint (or the request fails).
struct HeldRequest {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Drop for HeldRequest {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Cancels the request it holds when dropped (the guest let the response
/// future go, or the instance was dropped).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A request the host would not send, as the guest sees it: `internal-error`
/// with the reason (the refusal is also counted and logged by [`Endpoints`]).
fn refused(why: &str) -> HttpError {
    HttpError::InternalError(Some(format!("refused by the host: {why}")))
}

/// A request that got no whole response, as the guest sees it.
fn failure(f: Failure) -> HttpError {
    match f.code {
        abi::HTTP_FAIL_CONNECT => HttpError::ConnectionRefused,
        abi::HTTP_FAIL_TIMEOUT => HttpError::HttpResponseTimeout,
        abi::HTTP_FAIL_RESPONSE_TOO_LARGE => HttpError::HttpResponseBodySize(None),
        _ => HttpError::InternalError(Some(f.why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_body_counts_until_its_last_slice_is_dropped_and_one_over_the_cap_is_refused() {
        let budget = MemoryBudget::new(200 << 10);
        let body =
            held_body(Bytes::from(vec![7u8; 150 << 10]), budget.clone()).expect("within the cap");
        assert_eq!(budget.held_bytes(), 150 << 10);
        assert!(
            held_body(Bytes::from(vec![0u8; 51 << 10]), budget.clone()).is_err(),
            "a second body past the cap is refused"
        );
        assert_eq!(
            budget.held_bytes(),
            150 << 10,
            "a refused body is not counted"
        );
        let last_byte = body.slice(body.len() - 1..);
        drop(body);
        assert_eq!(budget.held_bytes(), 150 << 10, "a slice keeps it all alive");
        drop(last_byte);
        assert_eq!(budget.held_bytes(), 0, "let go with its last slice");
    }

    #[test]
    fn host_owned_headers_are_forbidden_but_content_length() {
        for h in [
            "host",
            "connection",
            "transfer-encoding",
            "upgrade",
            "keep-alive",
        ] {
            assert!(forbidden(&HeaderName::from_static(h)), "{h}");
        }
        for h in ["content-length", "content-type", "x-custom"] {
            assert!(!forbidden(&HeaderName::from_static(h)), "{h}");
        }
    }
}
