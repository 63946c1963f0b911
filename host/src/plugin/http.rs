//! The `collector.http_*` imports (docs/ABI.md §17): a plugin's requests to its
//! dispatcher's endpoints, by handle. Each instance holds its own table of
//! requests; dropping the instance (a trap, a reload) cancels what still runs.
//!
//! Epoch interruption does not fire while the host runs, so a wait is bounded
//! here: never past the current call's deadline minus a margin
//! ([`wait_margin`]), which leaves the plugin time to answer `retry`.
//!
//! A finished response's body is held by the host until its handle is closed,
//! and counts against the instance's `memory_limit_bytes` meanwhile
//! ([`MemoryBudget`]): a body that would take the instance past it is let go,
//! and the request fails with `HTTP_FAIL_RESPONSE_TOO_LARGE`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use collector_sdk::abi;
use tokio::sync::oneshot;
use wasmtime::{Caller, Linker};

use super::guest_memory::{guest_bytes, guest_write};
use super::memory_budget::MemoryBudget;
use crate::egress::{Answer, Endpoints, Failure};

/// Longest request the host reads from a plugin: the endpoints' own limit
/// applies after; this bounds what one call may make the host copy.
const MAX_REQUEST_BYTES: usize = 64 << 20;

/// The margin a wait leaves before the call's deadline: a tenth of `timeout_ms`,
/// between 10 ms and 500 ms.
pub fn wait_margin(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(10), Duration::from_millis(500))
}

/// When a wait of a call with deadline `timeout` from now must end: the
/// deadline minus [`wait_margin`].
pub fn wait_until(timeout: Duration) -> Instant {
    Instant::now() + timeout.saturating_sub(wait_margin(timeout))
}

/// One instance's requests.
pub struct HttpCalls {
    endpoints: Endpoints,
    rt: Option<tokio::runtime::Handle>,
    calls: BTreeMap<i32, Call>,
    next: i32,
    last_refusal: String,
    /// Until when the current call may block in a wait.
    wait_until: Option<Instant>,
    /// The instance's memory cap, which held bodies count against.
    budget: Arc<MemoryBudget>,
}

enum Call {
    Running {
        answer: oneshot::Receiver<Result<Answer, Failure>>,
        abort: tokio::task::AbortHandle,
    },
    Done(Result<Answer, Failure>),
}

impl HttpCalls {
    /// The requests of an instance of a dispatcher with `endpoints`; they run on
    /// the runtime the instance is made in (none outside one: every send is refused).
    pub fn new(endpoints: Endpoints, budget: Arc<MemoryBudget>) -> HttpCalls {
        HttpCalls {
            endpoints,
            rt: tokio::runtime::Handle::try_current().ok(),
            calls: BTreeMap::new(),
            next: 0,
            last_refusal: String::new(),
            wait_until: None,
            budget,
        }
    }

    /// Records a request's end: its body is held against the budget, or let go
    /// (and the request failed) when it does not fit.
    fn finished(&mut self, h: i32, result: Result<Answer, Failure>) {
        let result = match result {
            Ok(a) => match self.budget.hold(a.body.len()) {
                Ok(()) => Ok(a),
                Err(over) => Err(Failure {
                    code: abi::HTTP_FAIL_RESPONSE_TOO_LARGE,
                    why: format!(
                        "holding this response body of {} bytes would take the instance's \
                         memories, tables and held responses to {} bytes, over \
                         memory_limit_bytes ({}); close the handles it no longer needs",
                        a.body.len(),
                        over.total_bytes,
                        over.limit_bytes
                    ),
                }),
            },
            Err(f) => Err(f),
        };
        self.calls.insert(h, Call::Done(result));
    }

    /// Forgets a request: cancels it if it runs, lets its body go if it holds one.
    fn close(&mut self, h: i32) {
        match self.calls.remove(&h) {
            Some(Call::Running { abort, .. }) => abort.abort(),
            Some(Call::Done(Ok(a))) => self.budget.release(a.body.len()),
            Some(Call::Done(Err(_))) | None => {}
        }
    }

    /// A call with deadline `timeout` from now begins.
    pub fn call_starts(&mut self, timeout: Duration) {
        self.wait_until = Some(wait_until(timeout));
    }

    fn send(&mut self, bytes: &[u8]) -> i32 {
        let refuse = |this: &mut Self, code: i32, why: String| {
            this.last_refusal = why;
            code
        };
        let Some(rt) = self.rt.clone() else {
            return refuse(
                self,
                abi::HTTP_ERR_UNAVAILABLE,
                "no outbound HTTP here (no async runtime)".into(),
            );
        };
        let req = match collector_sdk::http::decode_request(bytes) {
            Ok(r) => r,
            Err(e) => return refuse(self, abi::HTTP_ERR_MALFORMED, e),
        };
        if self.calls.len() >= abi::HTTP_MAX_HANDLES {
            return refuse(
                self,
                abi::HTTP_ERR_BUSY,
                format!(
                    "the instance holds {} request handles; close some",
                    abi::HTTP_MAX_HANDLES
                ),
            );
        }
        match self.endpoints.start(&rt, &req) {
            Ok(started) => {
                let h = self.next;
                self.next = self.next.checked_add(1).unwrap_or(0);
                self.calls.insert(
                    h,
                    Call::Running {
                        answer: started.answer,
                        abort: started.abort,
                    },
                );
                h
            }
            Err(r) => refuse(self, r.code, r.why),
        }
    }

    /// Moves a finished request to `Done`; true when it is done.
    fn poll_done(&mut self, h: i32) -> bool {
        match self.calls.get_mut(&h) {
            Some(Call::Running { answer, .. }) => match answer.try_recv() {
                Ok(r) => {
                    self.finished(h, r);
                    true
                }
                Err(oneshot::error::TryRecvError::Empty) => false,
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.calls.insert(
                        h,
                        Call::Done(Err(Failure {
                            code: abi::HTTP_FAIL_IO,
                            why: "the request was cancelled".into(),
                        })),
                    );
                    true
                }
            },
            Some(Call::Done(_)) => true,
            None => true,
        }
    }

    /// Index of the first of `handles` that is done, waiting at most `timeout`
    /// and never past the call's deadline minus the margin.
    fn wait(&mut self, handles: &[i32], timeout: Duration) -> i32 {
        let limit = Instant::now() + timeout;
        let until = self.wait_until.map_or(limit, |d| d.min(limit));
        loop {
            for (i, h) in handles.iter().enumerate() {
                if self.poll_done(*h) {
                    return i as i32;
                }
            }
            let now = Instant::now();
            let (Some(rt), true) = (self.rt.clone(), now < until) else {
                return abi::HTTP_WAIT_NONE;
            };
            // Sleep until one of them finishes, or the time is up.
            let mut running: Vec<(i32, &mut oneshot::Receiver<Result<Answer, Failure>>)> = self
                .calls
                .iter_mut()
                .filter(|(h, _)| handles.contains(h))
                .filter_map(|(h, c)| match c {
                    Call::Running { answer, .. } => Some((*h, answer)),
                    Call::Done(_) => None,
                })
                .collect();
            if running.is_empty() {
                return abi::HTTP_WAIT_NONE;
            }
            let finished = rt.block_on(async {
                let any = std::future::poll_fn(|cx| {
                    for (h, r) in running.iter_mut() {
                        if let std::task::Poll::Ready(v) = std::pin::Pin::new(&mut **r).poll(cx) {
                            return std::task::Poll::Ready((*h, v));
                        }
                    }
                    std::task::Poll::Pending
                });
                tokio::time::timeout(until - now, any).await.ok()
            });
            drop(running);
            let Some((h, v)) = finished else {
                return abi::HTTP_WAIT_NONE;
            };
            let result = v.unwrap_or_else(|_| {
                Err(Failure {
                    code: abi::HTTP_FAIL_IO,
                    why: "the request was cancelled".into(),
                })
            });
            self.finished(h, result);
        }
    }

    fn result(&mut self, h: i32) -> Option<&Result<Answer, Failure>> {
        self.poll_done(h);
        match self.calls.get(&h) {
            Some(Call::Done(r)) => Some(r),
            _ => None,
        }
    }

    fn status(&mut self, h: i32) -> i32 {
        if !self.calls.contains_key(&h) {
            return abi::HTTP_ERR_NO_HANDLE;
        }
        match self.result(h) {
            None => abi::HTTP_PENDING,
            Some(Ok(a)) => i32::from(a.status),
            Some(Err(f)) => f.code,
        }
    }
}

impl Drop for HttpCalls {
    /// A discarded instance's requests are cancelled.
    fn drop(&mut self) {
        for call in self.calls.values() {
            if let Call::Running { abort, .. } = call {
                abort.abort();
            }
        }
    }
}

/// Defines the `collector.http_*` imports on `linker`, for stores whose state
/// holds the instance's requests where `calls` finds them.
///
/// # Errors
/// When wasmtime refuses a definition.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    calls: fn(&mut T) -> &mut HttpCalls,
) -> wasmtime::Result<()> {
    let m = abi::IMPORT_MODULE;
    linker.func_wrap(
        m,
        abi::IMPORT_HTTP_SEND,
        move |mut c: Caller<'_, T>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (bytes, full) = guest_bytes(&mut c, ptr, len, MAX_REQUEST_BYTES)?;
            let http = &mut calls(c.data_mut());
            if full > bytes.len() {
                http.last_refusal = format!(
                    "a request of {full} bytes is over what the host reads ({MAX_REQUEST_BYTES})"
                );
                return Ok(abi::HTTP_ERR_TOO_LARGE);
            }
            Ok(http.send(&bytes))
        },
    )?;
    linker.func_wrap(
        m,
        abi::IMPORT_HTTP_WAIT,
        move |mut c: Caller<'_, T>,
              ptr: i32,
              count: i32,
              timeout_ms: i32|
              -> wasmtime::Result<i32> {
            let count = usize::try_from(count)
                .unwrap_or(0)
                .min(abi::HTTP_MAX_HANDLES);
            let (bytes, _) = guest_bytes(&mut c, ptr, (count * 4) as i32, count * 4)?;
            let handles: Vec<i32> = bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
            Ok(calls(c.data_mut()).wait(&handles, timeout))
        },
    )?;
    linker.func_wrap(
        m,
        abi::IMPORT_HTTP_STATUS,
        move |mut c: Caller<'_, T>, h: i32| -> i32 { calls(c.data_mut()).status(h) },
    )?;
    linker.func_wrap(
        m,
        abi::IMPORT_HTTP_BODY_LEN,
        move |mut c: Caller<'_, T>, h: i32| -> i32 {
            let http = &mut calls(c.data_mut());
            let known = http.calls.contains_key(&h);
            match http.result(h) {
                Some(Ok(a)) => i32::try_from(a.body.len()).unwrap_or(i32::MAX),
                Some(Err(f)) => f.code,
                None if known => abi::HTTP_PENDING,
                None => abi::HTTP_ERR_NO_HANDLE,
            }
        },
    )?;
    linker.func_wrap(
        m,
        abi::IMPORT_HTTP_READ,
        move |mut c: Caller<'_, T>,
              h: i32,
              dst: i32,
              len: i32,
              offset: i32|
              -> wasmtime::Result<i32> {
            let chunk = match calls(c.data_mut()).result(h) {
                Some(Ok(a)) => {
                    let from = usize::try_from(offset)
                        .unwrap_or(usize::MAX)
                        .min(a.body.len());
                    let n = usize::try_from(len).unwrap_or(0).min(a.body.len() - from);
                    a.body.slice(from..from + n)
                }
                _ => return Ok(abi::HTTP_ERR_NO_HANDLE),
            };
            guest_write(&mut c, dst, &chunk)?;
            Ok(chunk.len() as i32)
        },
    )?;
    linker.func_wrap(
        m,
        abi::IMPORT_HTTP_HEADER,
        move |mut c: Caller<'_, T>,
              h: i32,
              name: i32,
              name_len: i32,
              dst: i32,
              dst_len: i32|
              -> wasmtime::Result<i32> {
            let (name, _) = guest_bytes(&mut c, name, name_len, 256)?;
            let value = match calls(c.data_mut()).result(h) {
                Some(Ok(a)) => std::str::from_utf8(&name)
                    .ok()
                    .and_then(|n| a.headers.get(n))
                    .map(|v| v.as_bytes().to_vec()),
                _ => return Ok(abi::HTTP_ERR_NO_HANDLE),
            };
            let Some(value) = value else { return Ok(-1) };
            if value.len() <= usize::try_from(dst_len).unwrap_or(0) {
                guest_write(&mut c, dst, &value)?;
            }
            Ok(value.len() as i32)
        },
    )?;
    linker.func_wrap(
        m,
        abi::IMPORT_HTTP_ERROR,
        move |mut c: Caller<'_, T>, h: i32, dst: i32, len: i32| -> wasmtime::Result<i32> {
            let http = &mut calls(c.data_mut());
            let known = http.calls.contains_key(&h);
            let text = if h == abi::HTTP_LAST_REFUSAL {
                http.last_refusal.clone()
            } else {
                match http.result(h) {
                    Some(Err(f)) => f.why.clone(),
                    Some(Ok(_)) => String::new(),
                    None if known => "still running".into(),
                    None => "no such request handle".into(),
                }
            };
            let n = text.len().min(usize::try_from(len).unwrap_or(0));
            guest_write(&mut c, dst, &text.as_bytes()[..n])?;
            Ok(n as i32)
        },
    )?;
    linker.func_wrap(
        m,
        abi::IMPORT_HTTP_CLOSE,
        move |mut c: Caller<'_, T>, h: i32| {
            calls(c.data_mut()).close(h);
        },
    )?;
    Ok(())
}
