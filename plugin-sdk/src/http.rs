//! Outbound HTTP to the endpoints the operator declared for this dispatcher
//! (`[[dispatchers.endpoints]]` in the daemon's config; docs/ABI.md §17).
//!
//! A plugin names an endpoint and a target (a path and query under the
//! endpoint's URL); the host adds the scheme, host, TLS, credentials and
//! injected headers, and refuses anything else. Several requests may run at
//! once within one `dispatch` call:
//!
//! ```no_run
//! use collector_sdk::http::{self, Request};
//! use std::time::Duration;
//!
//! let a = Request::post("backend", "/write?db=a").body(b"m v=1".to_vec()).send();
//! let b = Request::post("backend", "/write?db=b").body(b"m v=2".to_vec()).send();
//! for pending in [a, b] {
//!     match pending.and_then(|p| p.wait(Duration::from_secs(5))) {
//!         Ok(r) if r.status < 300 => {}
//!         other => { let _ = http::outcome(&other); }
//!     }
//! }
//! ```
//!
//! [`Request::fetch`] is the blocking convenience: send, wait, read.
//!
//! The request encoding ([`encode_request`], [`decode_request`]) is shared with
//! the host, which decodes what the plugin passes to `collector.http_send`.

use std::time::Duration;

use crate::{Outcome, abi};

/// A request to one of the dispatcher's endpoints, not sent yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub endpoint: String,
    pub method: String,
    /// Path and query under the endpoint's URL, starting with `/` (or empty: the
    /// endpoint's URL itself).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, endpoint: &str, target: &str) -> Request {
        Request {
            endpoint: endpoint.to_owned(),
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(endpoint: &str, target: &str) -> Request {
        Request::new("GET", endpoint, target)
    }

    pub fn post(endpoint: &str, target: &str) -> Request {
        Request::new("POST", endpoint, target)
    }

    /// Adds a header (the host refuses those it owns: see [`abi::HTTP_ERR_HEADER`]).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Request {
        self.body = body;
        self
    }

    /// Starts the request; it runs while the plugin goes on.
    ///
    /// # Errors
    /// [`Error::Refused`] when the host does not send it (unknown endpoint, a
    /// target outside it, too many in flight, too large, a forbidden header).
    pub fn send(&self) -> Result<Pending, Error> {
        let bytes = encode_request(self);
        let h = sys::send(&bytes);
        if h < 0 {
            return Err(Error::Refused {
                code: h,
                message: sys::error(abi::HTTP_LAST_REFUSAL),
            });
        }
        Ok(Pending(h))
    }

    /// Sends, and waits at most `timeout` (and never past the call's deadline)
    /// for the whole response.
    ///
    /// # Errors
    /// As [`Request::send`] and [`Pending::wait`].
    pub fn fetch(&self, timeout: Duration) -> Result<Response, Error> {
        self.send()?.wait(timeout)
    }
}

/// A request that was sent: its handle. Dropping it cancels the request if it
/// still runs, and frees what the host holds for it.
#[derive(Debug)]
pub struct Pending(i32);

impl Pending {
    /// The host's handle.
    pub fn handle(&self) -> i32 {
        self.0
    }

    /// Waits at most `timeout` for the response.
    ///
    /// # Errors
    /// [`Error::Failed`] when no response came (connection, timeout, too large);
    /// [`Error::StillRunning`] when `timeout`, or the time left to the call, ran
    /// out first (the request goes on until this `Pending` is dropped).
    pub fn wait(self, timeout: Duration) -> Result<Response, Error> {
        if sys::wait(&[self.0], timeout) == abi::HTTP_WAIT_NONE {
            return Err(Error::StillRunning);
        }
        self.finish()
    }

    /// How it stands, keeping the handle (and what the host holds for it):
    /// `Ok(Some(status))` once answered, `Ok(None)` while it runs.
    ///
    /// # Errors
    /// [`Error::Failed`] when it finished without a response.
    pub fn peek(&self) -> Result<Option<u16>, Error> {
        match sys::status(self.0) {
            abi::HTTP_PENDING => Ok(None),
            s if s < 0 => Err(Error::Failed {
                code: s,
                message: sys::error(self.0),
            }),
            s => Ok(Some(s as u16)),
        }
    }

    /// Whether the request has finished (answered or failed).
    pub fn is_done(&self) -> bool {
        sys::status(self.0) != abi::HTTP_PENDING
    }

    /// The response of a finished request.
    ///
    /// # Errors
    /// [`Error::Failed`] when it has no response; [`Error::StillRunning`] when it
    /// has not finished.
    pub fn finish(self) -> Result<Response, Error> {
        let status = sys::status(self.0);
        match status {
            abi::HTTP_PENDING => Err(Error::StillRunning),
            s if s < 0 => Err(Error::Failed {
                code: s,
                message: sys::error(self.0),
            }),
            s => {
                let body = sys::body(self.0);
                Ok(Response {
                    status: s as u16,
                    body,
                    pending: self,
                })
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        sys::close(self.0);
    }
}

/// Waits at most `timeout` until one of `pending` has finished; its index.
/// `None` when none did in time (or in the time left to the call).
pub fn wait_any(pending: &[&Pending], timeout: Duration) -> Option<usize> {
    let handles: Vec<i32> = pending.iter().map(|p| p.0).collect();
    let i = sys::wait(&handles, timeout);
    usize::try_from(i).ok()
}

/// A whole response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pending: Pending,
}

impl Response {
    /// A response header's value (the first of that name), if it has one.
    pub fn header(&self, name: &str) -> Option<String> {
        sys::header(self.pending.0, name)
    }

    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request brought no usable response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The host did not send it (an `HTTP_ERR_*` code and why).
    Refused { code: i32, message: String },
    /// It was sent, and no whole response came (an `HTTP_FAIL_*` code and why).
    Failed { code: i32, message: String },
    /// Still running when the wait ended.
    StillRunning,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Refused { code, message } => write!(f, "refused ({code}): {message}"),
            Error::Failed { code, message } => write!(f, "failed ({code}): {message}"),
            Error::StillRunning => f.write_str("no response in the time left"),
        }
    }
}

/// What a dispatcher answers for a request's result, by the rule every bundled
/// dispatcher follows: `None` for a 2xx or 3xx response; `retry` on connection
/// errors, timeouts, 429 and 5xx (the backend may take it later); `reject` with
/// the backend's own message on any other 4xx, and on a refusal by the host (a
/// configuration error: retrying would not help).
pub fn outcome(result: &Result<Response, Error>) -> Option<Outcome> {
    match result {
        Ok(r) if r.status < 400 => None,
        Ok(r) if r.status == 429 || r.status >= 500 => Some(Outcome::Retry(format!(
            "the backend answered {}: {}",
            r.status,
            excerpt(&r.text())
        ))),
        Ok(r) => Some(Outcome::Reject(format!(
            "the backend answered {}: {}",
            r.status,
            excerpt(&r.text())
        ))),
        Err(e @ Error::Refused { code, .. }) if *code == abi::HTTP_ERR_BUSY => {
            Some(Outcome::Retry(e.to_string()))
        }
        Err(e @ Error::Refused { .. }) => Some(Outcome::Reject(e.to_string())),
        Err(e) => Some(Outcome::Retry(e.to_string())),
    }
}

/// The first 512 bytes of a backend's message.
fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(512);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim()
}

/// Percent-encodes `v` for a query string (everything but letters, digits
/// and `-_.~`), as a target's query values must be.
pub fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The bytes `collector.http_send` takes (docs/ABI.md §17.2): each field a u32
/// little-endian length and its bytes, in order endpoint, method, target, the
/// header count (u32) and each name and value, then the body.
pub fn encode_request(r: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + r.body.len());
    put(&mut out, r.endpoint.as_bytes());
    put(&mut out, r.method.as_bytes());
    put(&mut out, r.target.as_bytes());
    out.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
    for (n, v) in &r.headers {
        put(&mut out, n.as_bytes());
        put(&mut out, v.as_bytes());
    }
    put(&mut out, &r.body);
    out
}

/// A request as [`decode_request`] reads it, borrowing the bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestView<'a> {
    pub endpoint: &'a str,
    pub method: &'a str,
    pub target: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

/// Headers one request may carry.
pub const MAX_REQUEST_HEADERS: usize = 64;

/// Reads what [`encode_request`] wrote; linear in the input, and the header
/// count is checked against [`MAX_REQUEST_HEADERS`] before anything is kept.
///
/// # Errors
/// What is wrong, and where.
pub fn decode_request(bytes: &[u8]) -> Result<RequestView<'_>, String> {
    let mut c = Cursor { bytes, at: 0 };
    let endpoint = c.text("endpoint name")?;
    let method = c.text("method")?;
    let target = c.text("target")?;
    let count = c.u32("header count")? as usize;
    if count > MAX_REQUEST_HEADERS {
        return Err(format!(
            "{count} headers; at most {MAX_REQUEST_HEADERS} are taken"
        ));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        headers.push((c.text("header name")?, c.text("header value")?));
    }
    let body = c.field("body")?;
    if c.at != bytes.len() {
        return Err(format!("{} bytes after the body", bytes.len() - c.at));
    }
    Ok(RequestView {
        endpoint,
        method,
        target,
        headers,
        body,
    })
}

/// Where [`decode_request`] is in the request bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self
            .bytes
            .get(self.at..self.at + 4)
            .ok_or_else(|| format!("the request ends before its {what} (byte {})", self.at))?;
        self.at += 4;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn field(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.u32(what)? as usize;
        let start = self.at;
        let v = start
            .checked_add(len)
            .and_then(|end| self.bytes.get(start..end))
            .ok_or_else(|| {
                format!("the {what} ({len} bytes at byte {start}) runs past the request")
            })?;
        self.at = start + len;
        Ok(v)
    }

    fn text(&mut self, what: &str) -> Result<&'a str, String> {
        let start = self.at;
        std::str::from_utf8(self.field(what)?)
            .map_err(|_| format!("the {what} at byte {start} is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let r = Request::post("gnocchi", "/v1/batch?x=1")
            .header("Content-Type", "application/json")
            .header("X-Empty", "")
            .body(b"{}".to_vec());
        let bytes = encode_request(&r);
        let v = decode_request(&bytes).expect("decodes");
        assert_eq!(v.endpoint, "gnocchi");
        assert_eq!(v.method, "POST");
        assert_eq!(v.target, "/v1/batch?x=1");
        assert_eq!(
            v.headers,
            vec![("Content-Type", "application/json"), ("X-Empty", "")]
        );
        assert_eq!(v.body, b"{}");
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let bytes = encode_request(&Request::get("e", "/").header("a", "b"));
        for cut in 0..bytes.len() {
            assert!(decode_request(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_request(&longer).is_err());
    }

    #[test]
    fn huge_counts_and_lengths_cost_nothing() {
        let mut b = Vec::new();
        for f in ["e", "GET", "/"] {
            put(&mut b, f.as_bytes());
        }
        let mut many = b.clone();
        many.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_request(&many).unwrap_err().contains("headers"));
        let mut long = b;
        long.extend_from_slice(&0u32.to_le_bytes());
        long.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_request(&long).unwrap_err().contains("runs past"));
    }

    #[test]
    fn outcomes_follow_the_backend() {
        let refused = |code| {
            Err(Error::Refused {
                code,
                message: "m".into(),
            })
        };
        assert!(matches!(
            outcome(&refused(abi::HTTP_ERR_BUSY)),
            Some(Outcome::Retry(_))
        ));
        assert!(matches!(
            outcome(&refused(abi::HTTP_ERR_UNKNOWN_ENDPOINT)),
            Some(Outcome::Reject(_))
        ));
        let failed = Err(Error::Failed {
            code: abi::HTTP_FAIL_CONNECT,
            message: "m".into(),
        });
        assert!(matches!(outcome(&failed), Some(Outcome::Retry(_))));
        assert!(matches!(
            outcome(&Err(Error::StillRunning)),
            Some(Outcome::Retry(_))
        ));
        let answered = |status: u16| {
            Ok(Response {
                status,
                body: b"backend says why".to_vec(),
                pending: Pending(1),
            })
        };
        assert_eq!(outcome(&answered(204)), None);
        assert!(matches!(outcome(&answered(429)), Some(Outcome::Retry(_))));
        assert!(matches!(outcome(&answered(503)), Some(Outcome::Retry(_))));
        match outcome(&answered(400)) {
            Some(Outcome::Reject(m)) => assert!(m.contains("400: backend says why"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

/// The raw imports, and what outside wasm stands in for them (no host: every
/// send is refused with [`abi::HTTP_ERR_UNAVAILABLE`]).
mod sys {
    use std::time::Duration;

    #[cfg(target_family = "wasm")]
    mod raw {
        #[link(wasm_import_module = "collector")]
        unsafe extern "C" {
            pub fn http_send(ptr: *const u8, len: usize) -> i32;
            pub fn http_wait(handles: *const i32, count: usize, timeout_ms: i32) -> i32;
            pub fn http_status(h: i32) -> i32;
            pub fn http_body_len(h: i32) -> i32;
            pub fn http_read(h: i32, dst: *mut u8, len: usize, offset: i32) -> i32;
            pub fn http_header(
                h: i32,
                name: *const u8,
                name_len: usize,
                dst: *mut u8,
                dst_len: usize,
            ) -> i32;
            pub fn http_error(h: i32, dst: *mut u8, len: usize) -> i32;
            pub fn http_close(h: i32);
        }
    }

    fn millis(t: Duration) -> i32 {
        i32::try_from(t.as_millis()).unwrap_or(i32::MAX)
    }

    #[cfg(target_family = "wasm")]
    pub fn send(req: &[u8]) -> i32 {
        // SAFETY: the host reads `len` bytes at `ptr`, owned by `req` for the call.
        unsafe { raw::http_send(req.as_ptr(), req.len()) }
    }

    #[cfg(target_family = "wasm")]
    pub fn wait(handles: &[i32], timeout: Duration) -> i32 {
        // SAFETY: the host reads `count` i32s at `handles`, owned for the call.
        unsafe { raw::http_wait(handles.as_ptr(), handles.len(), millis(timeout)) }
    }

    #[cfg(target_family = "wasm")]
    pub fn status(h: i32) -> i32 {
        // SAFETY: no memory is passed.
        unsafe { raw::http_status(h) }
    }

    #[cfg(target_family = "wasm")]
    pub fn body(h: i32) -> Vec<u8> {
        // SAFETY: no memory is passed.
        let len = usize::try_from(unsafe { raw::http_body_len(h) }).unwrap_or(0);
        let mut out = vec![0u8; len];
        let mut at = 0;
        while at < len {
            // SAFETY: the host writes at most `len - at` bytes into `out[at..]`.
            let n = unsafe { raw::http_read(h, out[at..].as_mut_ptr(), len - at, at as i32) };
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            at += n;
        }
        out.truncate(at);
        out
    }

    #[cfg(target_family = "wasm")]
    pub fn header(h: i32, name: &str) -> Option<String> {
        let mut buf = vec![0u8; 256];
        loop {
            // SAFETY: the host reads `name` and writes at most `buf.len()` bytes into `buf`.
            let n = unsafe {
                raw::http_header(h, name.as_ptr(), name.len(), buf.as_mut_ptr(), buf.len())
            };
            let n = usize::try_from(n).ok()?;
            if n <= buf.len() {
                buf.truncate(n);
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
            buf = vec![0u8; n];
        }
    }

    #[cfg(target_family = "wasm")]
    pub fn error(h: i32) -> String {
        let mut buf = vec![0u8; 1024];
        // SAFETY: the host writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { raw::http_error(h, buf.as_mut_ptr(), buf.len()) };
        buf.truncate(usize::try_from(n).unwrap_or(0).min(1024));
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[cfg(target_family = "wasm")]
    pub fn close(h: i32) {
        // SAFETY: no memory is passed.
        unsafe { raw::http_close(h) }
    }

    #[cfg(not(target_family = "wasm"))]
    pub fn send(_: &[u8]) -> i32 {
        crate::abi::HTTP_ERR_UNAVAILABLE
    }
    #[cfg(not(target_family = "wasm"))]
    pub fn wait(_: &[i32], t: Duration) -> i32 {
        let _ = millis(t);
        crate::abi::HTTP_WAIT_NONE
    }
    #[cfg(not(target_family = "wasm"))]
    pub fn status(_: i32) -> i32 {
        crate::abi::HTTP_ERR_NO_HANDLE
    }
    #[cfg(not(target_family = "wasm"))]
    pub fn body(_: i32) -> Vec<u8> {
        Vec::new()
    }
    #[cfg(not(target_family = "wasm"))]
    pub fn header(_: i32, _: &str) -> Option<String> {
        None
    }
    #[cfg(not(target_family = "wasm"))]
    pub fn error(_: i32) -> String {
        "no outbound HTTP outside a collector host".into()
    }
    #[cfg(not(target_family = "wasm"))]
    pub fn close(_: i32) {}
}
