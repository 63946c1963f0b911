//! Runs plugins on wasmtime: one [`Runtime`] (Engine + Linker) per process, a
//! [`PluginModule`] compiled once per plugin version, and an [`Instance`] (a
//! Store of its own) per dispatcher thread.
//!
//! Every call runs under an epoch deadline (`timeout_ms`) and a memory cap
//! (`memory_limit_bytes`). A trap, timeout or memory refusal poisons only that
//! instance: the caller drops it and makes a new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use collector_sdk::abi;
use wasmtime::{
    Caller, Engine, InstancePre, Linker, Memory, Module, ResourceLimiter, Store, Trap, TypedFunc,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::conformance::check_abi;
use super::guest_memory::guest_bytes;
use super::memory_budget::MemoryBudget;
use super::settings::{GrantedDir, InstanceSettings, LogPolicy};
use super::{PluginError, WasmError};
use crate::telemetry::Untrusted;

/// How often the engine's epoch advances; the granularity of `timeout_ms`.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Per-store state: WASI, the memory cap, the plugin's HTTP requests and what
/// the guest told us.
pub struct HostState {
    wasi: WasiP1Ctx,
    limiter: MemoryCap,
    /// Message from `collector.set_error` during the current call.
    error: Option<String>,
    plugin: Arc<str>,
    log: LogPolicy,
    /// Its requests to the dispatcher's endpoints (`collector.http_*`).
    http: super::http::HttpCalls,
}

/// Longest `collector.set_error` message kept (it is logged and shown by `/status`).
const MAX_ERROR_BYTES: usize = 4096;

/// Bytes wasmtime keeps per table element (a pointer, as its limiter docs say).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// The instance-wide cap: every linear memory and every table of the store count
/// together against `memory_limit_bytes`, however many a module declares, with
/// the response bodies the host holds for the instance ([`MemoryBudget`]).
/// Growth beyond it traps (and is reported as a memory refusal).
struct MemoryCap {
    budget: Arc<MemoryBudget>,
    /// The growth last allowed, taken back if wasmtime then fails to grow.
    pending_bytes: usize,
    refused: Option<(usize, usize)>,
}

impl MemoryCap {
    fn new(budget: Arc<MemoryBudget>) -> Self {
        MemoryCap {
            budget,
            pending_bytes: 0,
            refused: None,
        }
    }

    /// Grows the total from `current` to `desired` bytes of one memory or table.
    fn grow(&mut self, what: &str, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let delta = desired.saturating_sub(current);
        if let Err(over) = self.budget.grow_wasm(delta) {
            self.refused = Some((over.total_bytes, over.limit_bytes));
            return Err(wasmtime::format_err!(
                "memory limit exceeded: growing a {what} would make the plugin's memories and \
                 tables (with the HTTP responses it holds) {} bytes, memory_limit_bytes is {}",
                over.total_bytes,
                over.limit_bytes
            ));
        }
        self.pending_bytes = delta;
        Ok(true)
    }

    fn grow_failed(&mut self) {
        self.budget.shrink_wasm(self.pending_bytes);
        self.pending_bytes = 0;
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow("linear memory", current, desired)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |n: usize| n.saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow("table", bytes(current), bytes(desired))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    // One module per store, so one instance; multi-memory is off, so one memory.
    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// Tables a plugin may declare (reference types allow several; their elements
/// count against the memory cap).
const MAX_TABLES: usize = 8;

/// The engine settings every plugin runs under: the epoch deadline, and only the
/// wasm features the ABI and the toolchains we support need (docs/ABI.md §8.2).
///
/// Kept: the MVP with mutable globals, sign extension, saturating float-to-int,
/// multi-value, bulk memory, reference types (Rust 1.82+ and clang emit them),
/// fixed-width SIMD, extended constants and tail calls: none of them adds memory
/// outside the one linear memory and the tables the cap counts.
/// Refused, so that a module using them does not compile: multi-memory, 64-bit
/// memories, threads and shared memory, relaxed SIMD, custom page sizes, wide
/// arithmetic, stack switching (and GC, typed function references and exceptions,
/// which this build of wasmtime does not include).
pub fn engine_config() -> wasmtime::Config {
    let mut cfg = wasmtime::Config::new();
    cfg.epoch_interruption(true);
    cfg.wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_relaxed_simd(false)
        .wasm_custom_page_sizes(false)
        .wasm_wide_arithmetic(false)
        .wasm_stack_switching(false)
        .wasm_gc(false)
        .wasm_simd(true)
        .wasm_bulk_memory(true)
        .wasm_multi_value(true)
        .wasm_extended_const(true)
        .wasm_tail_call(true);
    cfg
}

/// The process-wide wasm engine, its linker and the epoch ticker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    stop_ticker: Arc<AtomicBool>,
    cache: Option<super::cache::ModuleCache>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

fn wasm_err(context: &'static str, e: wasmtime::Error) -> PluginError {
    PluginError::Wasm {
        context,
        source: WasmError(e),
    }
}

impl Runtime {
    /// Creates the engine, the linker with the host's imports, and the ticker thread;
    /// with `cache_dir`, compiled plugins are kept there (a cache that cannot be
    /// used is reported and skipped).
    ///
    /// # Errors
    /// When wasmtime cannot be configured on this machine.
    pub fn new(cache_dir: Option<&std::path::Path>) -> Result<Arc<Runtime>, PluginError> {
        let engine =
            Engine::new(&engine_config()).map_err(|e| wasm_err("creating the wasm engine", e))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut HostState| &mut s.wasi)
            .map_err(|e| wasm_err("adding WASI to the linker", e))?;
        linker
            .func_wrap(abi::IMPORT_MODULE, abi::IMPORT_LOG, host_log)
            .map_err(|e| wasm_err("defining collector.log", e))?;
        linker
            .func_wrap(abi::IMPORT_MODULE, abi::IMPORT_SET_ERROR, host_set_error)
            .map_err(|e| wasm_err("defining collector.set_error", e))?;
        super::http::add_to_linker(&mut linker, |s: &mut HostState| &mut s.http)
            .map_err(|e| wasm_err("defining collector.http_*", e))?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (weak_engine, stop) = (engine.weak(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak_engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|source| PluginError::Io {
                context: "starting the epoch thread",
                source,
            })?;
        let cache = cache_dir.and_then(|dir| match super::cache::ModuleCache::open(dir, &engine) {
            Ok(c) => {
                tracing::info!(dir = %dir.display(), "Compiled plugins are cached");
                Some(c)
            }
            Err(e) => {
                tracing::warn!("Plugin cache not used: {e}");
                None
            }
        });
        Ok(Arc::new(Runtime {
            engine,
            linker,
            stop_ticker,
            cache,
        }))
    }

    /// The process-wide engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a plugin and checks it against ABI v1. Slow (JIT): run it off the receive path.
    ///
    /// # Errors
    /// [`PluginError::Abi`] naming a missing or mistyped export or an unknown import;
    /// [`PluginError::Component`] for a WebAssembly component.
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<PluginModule, PluginError> {
        if is_component(wasm) {
            return Err(PluginError::Component);
        }
        let compile =
            || Module::new(&self.engine, wasm).map_err(|e| PluginError::Compile(WasmError(e)));
        let module = match &self.cache {
            Some(cache) => cache.get_or_compile(&self.engine, wasm, compile)?,
            None => compile()?,
        };
        let report = check_abi(&module);
        if let Some(problem) = report.problems.first() {
            return Err(PluginError::Abi(problem.clone()));
        }
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| wasm_err("linking", e))?;
        Ok(PluginModule {
            name: name.into(),
            hash: super::short_hash(wasm),
            pre,
            wasi_reactor: report.wasi_reactor,
            json_batches: module.get_export(abi::JSON_BATCHES).is_some(),
        })
    }
}

/// `collector.log`: rate-limited per dispatcher, escaped, cut to `max_line_bytes`.
fn host_log(
    mut caller: Caller<'_, HostState>,
    level: i32,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<()> {
    let policy = caller.data().log.clone();
    let suppressed = match &policy.limit {
        None => 0,
        Some(limit) => match limit.allow() {
            Some(n) => n,
            None => {
                policy.suppressed.inc();
                return Ok(());
            }
        },
    };
    let (bytes, len) = guest_bytes(&mut caller, ptr, len, policy.max_line_bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let cut = len - bytes.len();
    let msg = Untrusted::capped(&text, policy.max_line_bytes);
    let plugin = &*caller.data().plugin;
    macro_rules! log_at {
        ($level:ident) => {
            match (suppressed, cut) {
                (0, 0) => tracing::$level!(target: "plugin", plugin, "{msg}"),
                (0, cut) => tracing::$level!(target: "plugin", plugin, "{msg}…(+{cut} bytes)"),
                (suppressed, cut) => tracing::$level!(
                    target: "plugin", plugin, suppressed,
                    "{msg}{}", if cut > 0 { format!("…(+{cut} bytes)") } else { String::new() }
                ),
            }
        };
    }
    match level {
        abi::LOG_ERROR => log_at!(error),
        abi::LOG_WARN => log_at!(warn),
        abi::LOG_INFO => log_at!(info),
        abi::LOG_DEBUG => log_at!(debug),
        _ => log_at!(trace),
    }
    Ok(())
}

fn host_set_error(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let (bytes, len) = guest_bytes(&mut caller, ptr, len, MAX_ERROR_BYTES)?;
    let mut msg = String::from_utf8_lossy(&bytes).into_owned();
    if len > bytes.len() {
        msg.push_str(&format!("…(+{} bytes)", len - bytes.len()));
    }
    caller.data_mut().error = Some(msg);
    Ok(())
}

/// A compiled plugin version, ready to instantiate many times.
#[derive(Clone)]
pub struct PluginModule {
    pub name: Arc<str>,
    /// First 16 hex digits of the wasm's SHA-256: names the version in logs.
    pub hash: String,
    pre: InstancePre<HostState>,
    wasi_reactor: bool,
    /// Exports `collector_batch_format_json`: batches go to it as JSON.
    pub json_batches: bool,
}

/// What a plugin call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    Retry(String),
    Reject(String),
    /// The instance is unusable (trap, timeout, memory refusal); make a new one.
    Failed(Failure),
}

/// Why an instance failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Timeout(String),
    Memory(String),
    Trap(String),
}

impl std::error::Error for Failure {}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout(m) => write!(f, "timed out: {m}"),
            Failure::Memory(m) => write!(f, "memory refused: {m}"),
            Failure::Trap(m) => write!(f, "trapped: {m}"),
        }
    }
}

/// One live instance: a Store with its own memory. Not shared between threads.
pub struct Instance {
    store: Store<HostState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    dispatch: TypedFunc<(i32, i32), i32>,
    snapshot: Option<TypedFunc<(), i64>>,
    restore: Option<TypedFunc<(i32, i32), i32>>,
    deadline_ticks: u64,
    json_batches: bool,
}

impl Instance {
    /// Instantiates the module, runs `_initialize` if present, then `collector_init`.
    ///
    /// # Errors
    /// [`PluginError::Refused`] with the plugin's own message, or
    /// [`PluginError::Init`] with the failure that stopped it.
    pub fn new(
        module: &PluginModule,
        settings: &InstanceSettings,
    ) -> Result<Instance, PluginError> {
        let mut wasi = WasiCtxBuilder::new();
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
        let budget = MemoryBudget::new(settings.memory_limit_bytes);
        let state = HostState {
            wasi: wasi.build_p1(),
            limiter: MemoryCap::new(budget.clone()),
            error: None,
            plugin: module.name.clone(),
            log: settings.log.clone(),
            http: super::http::HttpCalls::new(settings.endpoints.clone(), budget),
        };
        let mut store = Store::new(module.pre.module().engine(), state);
        store.limiter(|s| &mut s.limiter);
        let deadline_ticks =
            (settings.timeout.as_millis() as u64).div_ceil(EPOCH_TICK.as_millis() as u64) + 1;
        store.set_epoch_deadline(deadline_ticks);
        store.epoch_deadline_trap();

        let instance = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| PluginError::Init {
                stage: "",
                source: classify(&store, e, settings.timeout),
            })?;
        let memory = instance
            .get_memory(&mut store, abi::MEMORY)
            .ok_or_else(|| PluginError::Abi("does not export `memory`".into()))?;
        let typed = |e: wasmtime::Error| PluginError::Abi(format!("{e:#}"));
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, abi::ALLOC)
            .map_err(typed)?;
        let init = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, abi::INIT)
            .map_err(typed)?;
        let dispatch = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, abi::DISPATCH)
            .map_err(typed)?;
        let snapshot = instance
            .get_typed_func::<(), i64>(&mut store, abi::SNAPSHOT)
            .ok();
        let restore = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, abi::RESTORE)
            .ok();
        let mut inst = Instance {
            store,
            memory,
            alloc,
            dispatch,
            snapshot,
            restore,
            deadline_ticks,
            json_batches: module.json_batches,
        };

        if module.wasi_reactor
            && let Ok(f) = instance.get_typed_func::<(), ()>(&mut inst.store, abi::WASI_INITIALIZE)
        {
            inst.store.set_epoch_deadline(deadline_ticks);
            f.call(&mut inst.store, ()).map_err(|e| PluginError::Init {
                stage: "_initialize ",
                source: classify(&inst.store, e, settings.timeout),
            })?;
        }
        match inst.call(&init, settings.config_json.as_bytes(), settings.timeout) {
            CallOutcome::Ok => Ok(inst),
            CallOutcome::Retry(m) | CallOutcome::Reject(m) => Err(PluginError::Refused(m)),
            CallOutcome::Failed(source) => Err(PluginError::Init { stage: "", source }),
        }
    }

    /// Hands one batch (ABI v1 bytes) to the plugin.
    pub fn dispatch(&mut self, batch: &[u8], timeout: Duration) -> CallOutcome {
        let f = self.dispatch.clone();
        if self.json_batches {
            return match collector_sdk::json::batch_to_json(batch) {
                Ok(json) => self.call(&f, &json, timeout),
                Err(e) => CallOutcome::Reject(format!("cannot convert the batch to JSON: {e}")),
            };
        }
        self.call(&f, batch, timeout)
    }

    /// Copies `bytes` into a guest buffer and calls `f(ptr, len)`.
    fn call(
        &mut self,
        f: &TypedFunc<(i32, i32), i32>,
        bytes: &[u8],
        timeout: Duration,
    ) -> CallOutcome {
        self.store.data_mut().error = None;
        self.store.data_mut().http.call_starts(timeout);
        self.store.set_epoch_deadline(self.deadline_ticks);
        let Ok(len) = i32::try_from(bytes.len()) else {
            return CallOutcome::Reject(format!(
                "{} bytes do not fit a 32-bit wasm address",
                bytes.len()
            ));
        };
        let ptr = match self.alloc.call(&mut self.store, len) {
            Ok(0) if len > 0 => {
                return CallOutcome::Failed(Failure::Memory(format!(
                    "collector_alloc returned 0 for {len} bytes"
                )));
            }
            Ok(p) => p,
            Err(e) => return CallOutcome::Failed(classify(&self.store, e, timeout)),
        };
        if let Err(e) = self
            .memory
            .write(&mut self.store, ptr as u32 as usize, bytes)
        {
            return CallOutcome::Failed(Failure::Trap(format!(
                "collector_alloc returned a buffer outside memory: {e}"
            )));
        }
        let status = match f.call(&mut self.store, (ptr, len)) {
            Ok(s) => s,
            Err(e) => return CallOutcome::Failed(classify(&self.store, e, timeout)),
        };
        let mut msg = || {
            self.store
                .data_mut()
                .error
                .take()
                .unwrap_or_else(|| "(no message)".into())
        };
        match status {
            abi::STATUS_OK => CallOutcome::Ok,
            abi::STATUS_RETRY => CallOutcome::Retry(msg()),
            abi::STATUS_REJECT => CallOutcome::Reject(msg()),
            other => CallOutcome::Reject(format!("unknown status {other}: {}", msg())),
        }
    }

    /// The plugin's state, if it exports `collector_snapshot` and has any.
    ///
    /// # Errors
    /// The failure, when the call traps or returns a buffer outside memory.
    pub fn snapshot(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, Failure> {
        let Some(f) = self.snapshot.clone() else {
            return Ok(None);
        };
        self.store.data_mut().http.call_starts(timeout);
        self.store.set_epoch_deadline(self.deadline_ticks);
        let packed = f
            .call(&mut self.store, ())
            .map_err(|e| classify(&self.store, e, timeout))?;
        if packed == 0 {
            return Ok(None);
        }
        let (ptr, len) = (
            (packed as u64 >> 32) as usize,
            (packed as u64 & 0xffff_ffff) as usize,
        );
        let data = self.memory.data(&self.store);
        let bytes = ptr
            .checked_add(len)
            .and_then(|end| data.get(ptr..end))
            .ok_or_else(|| {
                Failure::Trap("collector_snapshot returned a buffer outside memory".into())
            })?;
        Ok(Some(bytes.to_vec()))
    }

    /// Hands a snapshot to this (new) instance; `Ok` when it has no `collector_restore`.
    pub fn restore(&mut self, state: &[u8], timeout: Duration) -> CallOutcome {
        match self.restore.clone() {
            Some(f) => self.call(&f, state, timeout),
            None => CallOutcome::Ok,
        }
    }

    /// Bytes of all the instance's memories and tables now: what its cap counts.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.budget.wasm_bytes()
    }
}

/// Turns a wasmtime error into a [`Failure`] an operator understands.
fn classify(store: &Store<HostState>, e: wasmtime::Error, timeout: Duration) -> Failure {
    if let Some((desired, limit)) = store.data().limiter.refused {
        return Failure::Memory(format!(
            "the plugin asked for {desired} bytes of memories and tables (with the HTTP responses it holds), \
             memory_limit_bytes is {limit}"
        ));
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::Timeout(format!(
            "the call ran past timeout_ms ({} ms)",
            timeout.as_millis()
        )),
        _ => Failure::Trap(format!("{e:#}")),
    }
}

/// True for a WebAssembly component: the preamble's layer field (bytes 6..8)
/// is 1 (0 for a core module). Module::new would refuse one with a parser
/// message; [`PluginError::Component`] says what it is and what runs instead.
pub fn is_component(wasm: &[u8]) -> bool {
    wasm.starts_with(b"\0asm") && wasm.get(6..8) == Some(&[1, 0])
}
