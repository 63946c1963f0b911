//! Every name and constant of plugin ABI v1, as specified in docs/ABI.md.
//! The host and the SDK both use these, so they cannot disagree.

/// Exported function `() -> ()` whose presence declares ABI v1.
pub const VERSION_MARKER: &str = "collector_abi_version_1";
/// The ABI version this crate implements.
pub const VERSION: u32 = 1;
/// Exported linear memory.
pub const MEMORY: &str = "memory";
/// Exported `(len: i32) -> i32`: a buffer of `len` bytes owned by the guest, 0 on failure.
pub const ALLOC: &str = "collector_alloc";
/// Exported `(ptr: i32, len: i32) -> i32`: the plugin's config (JSON); returns a status.
pub const INIT: &str = "collector_init";
/// Exported `(ptr: i32, len: i32) -> i32`: one batch; returns a status.
pub const DISPATCH: &str = "collector_dispatch";
/// Optional export `() -> i64`: the plugin's state as `(ptr << 32) | len` of a guest
/// buffer valid until the next call into the plugin; 0 = no state.
pub const SNAPSHOT: &str = "collector_snapshot";
/// Optional export `(ptr: i32, len: i32) -> i32`: hands a snapshot to a new instance
/// (after `collector_init`); returns a status.
pub const RESTORE: &str = "collector_restore";
/// Optional export `() -> ()`: this plugin wants each batch as a JSON array of
/// Ceilometer sample dicts (UTF-8) instead of the binary layout. For languages
/// that have a JSON parser but no decoder for the binary layout yet.
pub const JSON_BATCHES: &str = "collector_batch_format_json";
/// Optional export `() -> ()` of WASI reactors (C with wasi-libc), called first.
pub const WASI_INITIALIZE: &str = "_initialize";

/// Module name of the host's imports.
pub const IMPORT_MODULE: &str = "collector";
/// Imported `(level: i32, ptr: i32, len: i32) -> ()`: one UTF-8 log line.
pub const IMPORT_LOG: &str = "log";
/// Imported `(ptr: i32, len: i32) -> ()`: the message explaining a non-OK status.
pub const IMPORT_SET_ERROR: &str = "set_error";

/// Optional imports for outbound HTTP to the endpoints the operator declared
/// for the dispatcher (docs/ABI.md §17). `(req_ptr: i32, req_len: i32) -> i32`:
/// a handle (>= 0), or a refusal (`HTTP_ERR_*`).
pub const IMPORT_HTTP_SEND: &str = "http_send";
/// `(handles_ptr: i32, count: i32, timeout_ms: i32) -> i32`: the index of a
/// finished request among `count` i32 handles, or [`HTTP_WAIT_NONE`].
pub const IMPORT_HTTP_WAIT: &str = "http_wait";
/// `(handle: i32) -> i32`: the HTTP status, [`HTTP_PENDING`], or a failure (`HTTP_FAIL_*`).
pub const IMPORT_HTTP_STATUS: &str = "http_status";
/// `(handle: i32) -> i32`: bytes of the response body, or a negative code.
pub const IMPORT_HTTP_BODY_LEN: &str = "http_body_len";
/// `(handle: i32, dst: i32, len: i32, offset: i32) -> i32`: copies body bytes
/// from `offset`; returns how many.
pub const IMPORT_HTTP_READ: &str = "http_read";
/// `(handle: i32, name: i32, name_len: i32, dst: i32, dst_len: i32) -> i32`: a
/// response header's value length (copied when it fits), or -1 when absent.
pub const IMPORT_HTTP_HEADER: &str = "http_header";
/// `(handle: i32, dst: i32, len: i32) -> i32`: why a request failed, or (handle
/// [`HTTP_LAST_REFUSAL`]) why the last `http_send` was refused; its length.
pub const IMPORT_HTTP_ERROR: &str = "http_error";
/// `(handle: i32) -> ()`: forgets a request, cancelling it if it still runs.
pub const IMPORT_HTTP_CLOSE: &str = "http_close";

/// `http_send` refusals: nothing was sent.
pub const HTTP_ERR_UNKNOWN_ENDPOINT: i32 = -1;
/// The target is not a path (and query) under the endpoint's URL.
pub const HTTP_ERR_BAD_TARGET: i32 = -2;
/// The endpoint has `max_in_flight` requests running, or the instance holds
/// [`HTTP_MAX_HANDLES`] handles.
pub const HTTP_ERR_BUSY: i32 = -3;
/// The body is over the endpoint's `max_request_bytes`.
pub const HTTP_ERR_TOO_LARGE: i32 = -4;
/// The request bytes do not follow the encoding, or the method is not a token.
pub const HTTP_ERR_MALFORMED: i32 = -5;
/// A header the host owns (`Host`, `Content-Length`, `Transfer-Encoding`,
/// `Connection`, or one the endpoint injects), or an invalid name or value.
pub const HTTP_ERR_HEADER: i32 = -6;
/// No outbound HTTP here (`collector check` without `--endpoint`, a test host).
pub const HTTP_ERR_UNAVAILABLE: i32 = -8;
/// `http_status`, `http_body_len`, `http_read`, `http_header`: no such handle.
pub const HTTP_ERR_NO_HANDLE: i32 = -7;

/// `http_status`: the request still runs.
pub const HTTP_PENDING: i32 = 0;
/// The connection could not be made (refused, DNS, TLS).
pub const HTTP_FAIL_CONNECT: i32 = -10;
/// No whole response within the endpoint's `response_timeout_ms`.
pub const HTTP_FAIL_TIMEOUT: i32 = -11;
/// The response body is over the endpoint's `max_response_bytes`.
pub const HTTP_FAIL_RESPONSE_TOO_LARGE: i32 = -12;
/// The connection broke, or the response was not HTTP.
pub const HTTP_FAIL_IO: i32 = -14;

/// `http_wait`: nothing finished within the time given (or left to the call).
pub const HTTP_WAIT_NONE: i32 = -1;
/// `http_error`'s handle for the reason of the last refused `http_send`.
pub const HTTP_LAST_REFUSAL: i32 = -1;
/// Requests one instance may hold handles to at once.
pub const HTTP_MAX_HANDLES: usize = 256;

/// Status: the call succeeded.
pub const STATUS_OK: i32 = 0;
/// Status: a transient failure; the host retries the batch with backoff.
pub const STATUS_RETRY: i32 = 1;
/// Status: the batch (or config) is refused; retrying would not help.
pub const STATUS_REJECT: i32 = 2;

/// Log levels of `collector.log`.
pub const LOG_ERROR: i32 = 1;
pub const LOG_WARN: i32 = 2;
pub const LOG_INFO: i32 = 3;
pub const LOG_DEBUG: i32 = 4;
pub const LOG_TRACE: i32 = 5;

/// Deepest nesting of one sample, in levels of dicts and lists, the sample dict
/// itself counting as level 1: a `resource_metadata` or extra value holds at most
/// `MAX_NESTING - 1` (63) levels of `List`/`Map` (docs/ABI.md §9.7).
///
/// The one limit of every input: the host refuses a deeper sample when it decodes
/// it (msgpack datagram or oslo JSON alike), that sample alone, and the SDKs'
/// batch decoders accept exactly this much.
pub const MAX_NESTING: u32 = 64;
