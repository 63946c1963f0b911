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
use wasmtime::{Caller, Engine, InstancePre, Linker, Memory, Module, Store, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;

use super::call::{CallOutcome, EPOCH_TICK, Failure, classify, deadline_ticks};
use super::component::{ComponentInstance, ComponentModule, ComponentState};
use super::conformance::check_abi;
use super::guest_log;
use super::guest_memory::guest_bytes;
use super::memory_budget::MemoryBudget;
use super::memory_cap::{MemoryCap, StoreShape};
use super::settings::{InstanceSettings, LogPolicy, granted_wasi};
use super::{PluginError, WasmError};

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

/// Set (to anything) in the environment, the engine writes a perf map of the
/// plugins' compiled code, for profiling them (README, "Profiling").
pub const PERFMAP_ENV: &str = "COLLECTOR_PERFMAP";

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
    if std::env::var_os(PERFMAP_ENV).is_some() {
        // perf(1) reads /tmp/perf-<pid>.map to name the JIT's code: plugin
        // functions show up in `perf report` by their wasm names.
        cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
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
    component_linker: wasmtime::component::Linker<ComponentState>,
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
        let component_linker = super::component::linker(&engine)?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            component_linker,
            stop_ticker,
            cache,
        }))
    }

    /// The process-wide engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a plugin (a core module of ABI v1 or a component of the world
    /// `collector:dispatcher@1.0.0`) and checks it against its contract. Slow
    /// (JIT; a component takes seconds): run it off the receive path.
    ///
    /// # Errors
    /// [`PluginError::Abi`] naming a missing or mistyped export or an unknown import.
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<PluginModule, PluginError> {
        if is_component(wasm) {
            return self.compile_component(name, wasm);
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
            kind: ModuleKind::Core {
                pre,
                wasi_reactor: report.wasi_reactor,
            },
            json_batches: module.get_export(abi::JSON_BATCHES).is_some(),
        })
    }

    fn compile_component(&self, name: &str, wasm: &[u8]) -> Result<PluginModule, PluginError> {
        use wasmtime::component::Component;
        let compile =
            || Component::new(&self.engine, wasm).map_err(|e| PluginError::Compile(WasmError(e)));
        let component = match &self.cache {
            Some(cache) => cache.get_or_compile(&self.engine, wasm, compile)?,
            None => compile()?,
        };
        Ok(PluginModule {
            name: name.into(),
            hash: super::short_hash(wasm),
            kind: ModuleKind::Component(ComponentModule::new(&self.component_linker, &component)?),
            json_batches: false,
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
    let Some(suppressed) = guest_log::admit(&policy) else {
        return Ok(());
    };
    let (bytes, len) = guest_bytes(&mut caller, ptr, len, policy.max_line_bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let cut = len - bytes.len();
    guest_log::emit(
        &policy,
        &caller.data().plugin,
        level,
        suppressed,
        &text,
        cut,
    );
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
    kind: ModuleKind,
    /// Exports `collector_batch_format_json`: batches go to it as JSON.
    pub json_batches: bool,
}

#[derive(Clone)]
enum ModuleKind {
    Core {
        pre: InstancePre<HostState>,
        wasi_reactor: bool,
    },
    Component(ComponentModule),
}

impl PluginModule {
    /// The component, when the plugin is one (not a core module).
    pub fn component(&self) -> Option<&ComponentModule> {
        match &self.kind {
            ModuleKind::Component(c) => Some(c),
            ModuleKind::Core { .. } => None,
        }
    }
}

/// One live instance of a plugin version: a Store of its own, with its own
/// memory. Not shared between threads.
pub struct Instance(InstanceKind);

enum InstanceKind {
    Core(CoreInstance),
    Component(ComponentInstance),
}

impl Instance {
    /// Instantiates the plugin and calls its init (`collector_init`, or a
    /// component's `init`) with the dispatcher's config.
    ///
    /// # Errors
    /// [`PluginError::Refused`] with the plugin's own message, or
    /// [`PluginError::Init`] with the failure that stopped it.
    pub fn new(
        module: &PluginModule,
        settings: &InstanceSettings,
    ) -> Result<Instance, PluginError> {
        Ok(Instance(match &module.kind {
            ModuleKind::Core { pre, wasi_reactor } => {
                InstanceKind::Core(CoreInstance::new(module, pre, *wasi_reactor, settings)?)
            }
            ModuleKind::Component(c) => {
                InstanceKind::Component(ComponentInstance::new(c, module.name.clone(), settings)?)
            }
        }))
    }

    /// Hands one batch (ABI v1 bytes) to the plugin.
    pub fn dispatch(&mut self, batch: &[u8], timeout: Duration) -> CallOutcome {
        match &mut self.0 {
            InstanceKind::Core(i) => i.dispatch(batch, timeout),
            InstanceKind::Component(i) => i.dispatch(batch, timeout),
        }
    }

    /// The plugin's state, if it keeps one and has any.
    ///
    /// # Errors
    /// The failure, when the call traps, times out or returns a buffer outside memory.
    pub fn snapshot(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, Failure> {
        match &mut self.0 {
            InstanceKind::Core(i) => i.snapshot(timeout),
            InstanceKind::Component(i) => i.snapshot(timeout),
        }
    }

    /// Hands a snapshot to this (new) instance; `Ok` when a core module has no
    /// `collector_restore`.
    pub fn restore(&mut self, state: &[u8], timeout: Duration) -> CallOutcome {
        match &mut self.0 {
            InstanceKind::Core(i) => i.restore(state, timeout),
            InstanceKind::Component(i) => i.restore(state, timeout),
        }
    }

    /// Bytes of all the instance's memories and tables now: what its cap counts.
    pub fn memory_bytes(&self) -> usize {
        match &self.0 {
            InstanceKind::Core(i) => i.memory_bytes(),
            InstanceKind::Component(i) => i.memory_bytes(),
        }
    }
}

/// An instance of a core module.
struct CoreInstance {
    store: Store<HostState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    dispatch: TypedFunc<(i32, i32), i32>,
    snapshot: Option<TypedFunc<(), i64>>,
    restore: Option<TypedFunc<(i32, i32), i32>>,
    deadline_ticks: u64,
    json_batches: bool,
}

impl CoreInstance {
    /// Instantiates the module, runs `_initialize` if present, then `collector_init`.
    fn new(
        module: &PluginModule,
        pre: &InstancePre<HostState>,
        wasi_reactor: bool,
        settings: &InstanceSettings,
    ) -> Result<CoreInstance, PluginError> {
        let mut wasi = granted_wasi(settings)?;
        let budget = MemoryBudget::new(settings.memory_limit_bytes);
        let state = HostState {
            wasi: wasi.build_p1(),
            limiter: MemoryCap::new(budget.clone(), StoreShape::CORE),
            error: None,
            plugin: module.name.clone(),
            log: settings.log.clone(),
            http: super::http::HttpCalls::new(settings.endpoints.clone(), budget),
        };
        let mut store = Store::new(pre.module().engine(), state);
        store.limiter(|s| &mut s.limiter);
        let deadline_ticks = deadline_ticks(settings.timeout);
        store.set_epoch_deadline(deadline_ticks);
        store.epoch_deadline_trap();

        let instance = pre.instantiate(&mut store).map_err(|e| PluginError::Init {
            stage: "",
            source: classify(&store.data().limiter, e, settings.timeout),
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
        let mut inst = CoreInstance {
            store,
            memory,
            alloc,
            dispatch,
            snapshot,
            restore,
            deadline_ticks,
            json_batches: module.json_batches,
        };

        if wasi_reactor
            && let Ok(f) = instance.get_typed_func::<(), ()>(&mut inst.store, abi::WASI_INITIALIZE)
        {
            inst.store.set_epoch_deadline(deadline_ticks);
            f.call(&mut inst.store, ()).map_err(|e| PluginError::Init {
                stage: "_initialize ",
                source: classify(&inst.store.data().limiter, e, settings.timeout),
            })?;
        }
        match inst.call(&init, settings.config_json.as_bytes(), settings.timeout) {
            CallOutcome::Ok => Ok(inst),
            CallOutcome::Retry(m) | CallOutcome::Reject(m) => Err(PluginError::Refused(m)),
            CallOutcome::Failed(source) => Err(PluginError::Init { stage: "", source }),
        }
    }

    fn dispatch(&mut self, batch: &[u8], timeout: Duration) -> CallOutcome {
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
            Err(e) => return CallOutcome::Failed(classify(&self.store.data().limiter, e, timeout)),
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
            Err(e) => return CallOutcome::Failed(classify(&self.store.data().limiter, e, timeout)),
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
    fn snapshot(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, Failure> {
        let Some(f) = self.snapshot.clone() else {
            return Ok(None);
        };
        self.store.data_mut().http.call_starts(timeout);
        self.store.set_epoch_deadline(self.deadline_ticks);
        let packed = f
            .call(&mut self.store, ())
            .map_err(|e| classify(&self.store.data().limiter, e, timeout))?;
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

    fn restore(&mut self, state: &[u8], timeout: Duration) -> CallOutcome {
        match self.restore.clone() {
            Some(f) => self.call(&f, state, timeout),
            None => CallOutcome::Ok,
        }
    }

    fn memory_bytes(&self) -> usize {
        self.store.data().limiter.budget.wasm_bytes()
    }
}

/// True for a WebAssembly component: the preamble's layer field (bytes 6..8)
/// is 1 (0 for a core module).
pub fn is_component(wasm: &[u8]) -> bool {
    wasm.starts_with(b"\0asm") && wasm.get(6..8) == Some(&[1, 0])
}
