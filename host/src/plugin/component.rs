//! Component plugins: WebAssembly components of the world
//! `collector:dispatcher@1.0.0` (`plugin-sdk/wit/dispatcher.wit`), as
//! componentize-py and componentize-js build them. They run under the same
//! rules as core modules of ABI v1: the epoch deadline (`timeout_ms`), the
//! memory cap over every memory and table of the component
//! ([`MemoryCap`] with [`StoreShape::COMPONENT`]), a new instance after a trap,
//! hot reload with `snapshot`/`restore`, and the compiled-module cache.
//!
//! WASI preview 2 is linked whole, but grants only what a core plugin gets: the
//! dispatcher's directories, clocks and random. Sockets are linked (Python's
//! runtime imports them) and refuse every use: no TCP, no UDP, no name lookup,
//! no address. Stdio, environment and arguments are empty. `wasi:http`'s
//! outgoing handler is linked too, and reaches only the dispatcher's declared
//! endpoints ([`super::component_http`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use collector_sdk::abi;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::call::{CallOutcome, Failure, classify, deadline_ticks};
use super::component_http::EgressHooks;
use super::component_wait::{self, BoundedIo};
use super::memory_budget::MemoryBudget;
use super::memory_cap::{MemoryCap, StoreShape};
use super::settings::{InstanceSettings, LogPolicy, granted_wasi};
use super::{PluginError, WasmError, guest_log};

/// The bindings `bindgen!` writes for the world.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit",
        world: "dispatcher",
    });
}

use bindings::collector::dispatcher::types::{Level, Outcome};
use bindings::{Dispatcher, DispatcherPre};

/// Per-store state of a component instance.
pub struct ComponentState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    /// Where its `wasi:http` requests may go, and until when they may be waited for.
    egress: EgressHooks,
    /// When the current call's (or the instantiation's) time is up: WASI's
    /// blocking calls end there.
    deadline: Instant,
    pub(super) limiter: MemoryCap,
    plugin: Arc<str>,
    log: LogPolicy,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

impl bindings::collector::dispatcher::types::Host for ComponentState {}

impl bindings::DispatcherImports for ComponentState {
    fn log(&mut self, level: Level, msg: String) {
        let Some(suppressed) = guest_log::admit(&self.log) else {
            return;
        };
        let level = match level {
            Level::Error => abi::LOG_ERROR,
            Level::Warn => abi::LOG_WARN,
            Level::Info => abi::LOG_INFO,
            Level::Debug => abi::LOG_DEBUG,
            Level::Trace => abi::LOG_TRACE,
        };
        let keep = floor_char_boundary(&msg, self.log.max_line_bytes);
        let cut = msg.len() - keep;
        guest_log::emit(
            &self.log,
            &self.plugin,
            level,
            suppressed,
            &msg[..keep],
            cut,
        );
    }
}

/// The largest index `<= at` that is a char boundary of `s`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

/// The linker every component is instantiated with: WASI preview 2,
/// `wasi:http`'s outgoing handler (to the declared endpoints) and the world's
/// `log`.
///
/// # Errors
/// When wasmtime refuses a definition.
pub fn linker(engine: &Engine) -> Result<Linker<ComponentState>, PluginError> {
    let wasm = |context: &'static str| {
        move |e: wasmtime::Error| PluginError::Wasm {
            context,
            source: WasmError(e),
        }
    };
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(wasm("adding WASI preview 2 to the component linker"))?;
    component_wait::add_to_linker(&mut linker, |s: &mut ComponentState| BoundedIo {
        table: &mut s.table,
        deadline: s.deadline,
    })
    .map_err(wasm(
        "bounding WASI's blocking calls by the call's deadline",
    ))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
        .map_err(wasm("adding wasi:http to the component linker"))?;
    Dispatcher::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        .map_err(wasm("defining the dispatcher world's imports"))?;
    Ok(linker)
}

/// A compiled component, linked and checked against the world.
#[derive(Clone)]
pub struct ComponentModule {
    pre: DispatcherPre<ComponentState>,
}

impl ComponentModule {
    /// Links `component` and checks its exports against the world.
    ///
    /// # Errors
    /// [`PluginError::Abi`] naming an import the host does not provide or an
    /// export that is missing or of the wrong type.
    pub fn new(
        linker: &Linker<ComponentState>,
        component: &Component,
    ) -> Result<ComponentModule, PluginError> {
        let pre = linker.instantiate_pre(component).map_err(|e| {
            PluginError::Abi(format!(
                "the component imports what the host does not provide \
                 (the world collector:dispatcher@1.0.0 and WASI 0.2): {e:#}"
            ))
        })?;
        let pre = DispatcherPre::new(pre).map_err(|e| {
            PluginError::Abi(format!(
                "the component does not export the world collector:dispatcher@1.0.0 \
                 (init, dispatch, snapshot, restore): {e:#}"
            ))
        })?;
        Ok(ComponentModule { pre })
    }

    /// What the component imports and exports, by name (for `collector check`).
    pub fn imports_and_exports(&self) -> (Vec<String>, Vec<String>) {
        let component = self.pre.instance_pre().component();
        let engine = self.pre.instance_pre().engine();
        let ty = component.component_type();
        let imports = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
        let exports = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
        (imports, exports)
    }
}

/// One live component instance: a Store of its own.
pub struct ComponentInstance {
    store: Store<ComponentState>,
    bindings: Dispatcher,
    deadline_ticks: u64,
}

impl ComponentInstance {
    /// Instantiates the component and calls its `init` with the config.
    ///
    /// # Errors
    /// [`PluginError::Refused`] with the plugin's own message, or
    /// [`PluginError::Init`] with the failure that stopped it.
    pub fn new(
        module: &ComponentModule,
        plugin: Arc<str>,
        settings: &InstanceSettings,
    ) -> Result<ComponentInstance, PluginError> {
        let wasi = granted_wasi(settings)?.build();
        let budget = MemoryBudget::new(settings.memory_limit_bytes);
        let state = ComponentState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            // Instantiation runs under the first call's deadline.
            egress: EgressHooks::new(settings.endpoints.clone(), budget.clone(), settings.timeout),
            deadline: Instant::now() + settings.timeout,
            limiter: MemoryCap::new(budget, StoreShape::COMPONENT),
            plugin,
            log: settings.log.clone(),
        };
        let mut store = Store::new(module.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        let deadline_ticks = deadline_ticks(settings.timeout);
        store.set_epoch_deadline(deadline_ticks);
        store.epoch_deadline_trap();
        let bindings = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| PluginError::Init {
                stage: "",
                source: classify(&store.data().limiter, e, settings.timeout),
            })?;
        let mut inst = ComponentInstance {
            store,
            bindings,
            deadline_ticks,
        };
        let timeout = settings.timeout;
        let outcome = inst.call(timeout, |b, s| b.call_init(s, &settings.config_json));
        match outcome {
            CallOutcome::Ok => Ok(inst),
            CallOutcome::Retry(m) | CallOutcome::Reject(m) => Err(PluginError::Refused(m)),
            CallOutcome::Failed(source) => Err(PluginError::Init { stage: "", source }),
        }
    }

    /// A call with deadline `timeout` from now begins: the epoch deadline,
    /// WASI's waits and HTTP responses' waits are set.
    fn call_starts(&mut self, timeout: Duration) {
        self.store.set_epoch_deadline(self.deadline_ticks);
        let state = self.store.data_mut();
        state.deadline = Instant::now() + timeout;
        state.egress.call_starts(timeout);
    }

    /// Runs one export under the deadline; a trap, timeout or memory refusal
    /// is a [`CallOutcome::Failed`].
    fn call(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&Dispatcher, &mut Store<ComponentState>) -> wasmtime::Result<Outcome>,
    ) -> CallOutcome {
        self.call_starts(timeout);
        match f(&self.bindings, &mut self.store) {
            Ok(Outcome::Ok) => CallOutcome::Ok,
            Ok(Outcome::Retry(m)) => CallOutcome::Retry(m),
            Ok(Outcome::Reject(m)) => CallOutcome::Reject(m),
            Err(e) => CallOutcome::Failed(classify(&self.store.data().limiter, e, timeout)),
        }
    }

    /// Hands one batch (ABI v1 bytes) to the plugin.
    pub fn dispatch(&mut self, batch: &[u8], timeout: Duration) -> CallOutcome {
        self.call(timeout, |b, s| b.call_dispatch(s, batch))
    }

    /// The plugin's state, if it has any.
    ///
    /// # Errors
    /// The failure, when the call traps, times out or is refused memory.
    pub fn snapshot(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, Failure> {
        self.call_starts(timeout);
        self.bindings
            .call_snapshot(&mut self.store)
            .map_err(|e| classify(&self.store.data().limiter, e, timeout))
    }

    /// Hands a snapshot to this (new) instance.
    pub fn restore(&mut self, state: &[u8], timeout: Duration) -> CallOutcome {
        self.call(timeout, |b, s| b.call_restore(s, state))
    }

    /// Bytes of all the component's memories and tables now: what its cap counts.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.budget.wasm_bytes()
    }
}
