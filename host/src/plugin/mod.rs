//! Dispatcher plugins: loading `.wasm` files (or the bundled ones), checking them
//! against their contract (ABI v1 for a core module, the world
//! `collector:dispatcher@1.0.0` for a component) and running them sandboxed on
//! wasmtime.

pub mod builtin;
pub mod cache;
pub mod call;
pub mod component;
pub mod component_http;
pub mod component_wait;
pub mod conformance;
pub mod guest_log;
pub mod guest_memory;
pub mod handoff;
pub mod http;
pub mod memory_budget;
pub mod memory_cap;
pub mod registry;
pub mod reload;
pub mod runtime;
pub mod settings;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use call::{CallOutcome, Failure};
pub use registry::PluginSlot;
pub use runtime::{Instance, PluginModule, Runtime};
pub use settings::{GrantedDir, InstanceSettings, LogPolicy};

use crate::config::PluginSource;

/// Why a plugin could not be loaded or started. Each variant keeps its cause as
/// its `source()`; the message shows it too, since the daemon logs one line.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("builtin:{name}: {why}")]
    Builtin { name: String, why: &'static str },
    #[error("cannot create granted directory {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot grant directory {path} as {guest}: {source}")]
    Grant {
        path: String,
        guest: String,
        #[source]
        source: WasmError,
    },
    #[error("not a valid wasm module: {0}")]
    Compile(#[source] WasmError),
    #[error("does not follow the plugin ABI: {0}")]
    Abi(String),
    /// `collector_init` answered retry or reject: the plugin's own message.
    #[error("init failed: {0}")]
    Refused(String),
    /// Instantiation, `_initialize` or `collector_init` trapped, timed out or was
    /// refused memory.
    #[error("init failed: {stage}{source}")]
    Init {
        /// `""`, or the export that failed and a space (`"_initialize "`).
        stage: &'static str,
        #[source]
        source: Failure,
    },
    /// A new version's `collector_restore` failed on the running state.
    #[error("init failed: collector_restore {source} on the running state ({bytes} bytes)")]
    Restore {
        bytes: usize,
        #[source]
        source: Failure,
    },
    /// The engine or linker refused something (`context` says what).
    #[error("{context}: {source}")]
    Wasm {
        context: &'static str,
        #[source]
        source: WasmError,
    },
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("dispatchers must be started inside the daemon's runtime: {0}")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
    #[error(transparent)]
    Egress(#[from] crate::egress::EgressError),
}

/// A wasmtime error (an `anyhow` chain), shown whole: `context: cause: cause`.
#[derive(Debug)]
pub struct WasmError(pub wasmtime::Error);

impl std::fmt::Display for WasmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for WasmError {}

/// A running dispatcher's plugin: where it came from and where new versions go.
#[derive(Clone)]
pub struct Loaded {
    pub dispatcher: std::sync::Arc<str>,
    pub source: PluginSource,
    pub slot: std::sync::Arc<PluginSlot>,
    pub settings: InstanceSettings,
}

/// First 16 hex digits of the SHA-256 of a plugin file: its version in logs.
pub fn short_hash(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a plugin, from a file or from the binary.
///
/// # Errors
/// [`PluginError::Read`] naming the file.
pub fn read_plugin(source: &PluginSource) -> Result<Vec<u8>, PluginError> {
    match source {
        PluginSource::Builtin(name) => builtin::bytes(name).map(<[u8]>::to_vec),
        PluginSource::File(path) => read_file(path),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, PluginError> {
    std::fs::read(path).map_err(|source| PluginError::Read {
        path: path.display().to_string(),
        source,
    })
}
