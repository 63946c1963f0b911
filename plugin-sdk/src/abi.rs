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
