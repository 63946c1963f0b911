//! Dispatcher plugins: loading `.wasm` files (or the bundled ones), checking them
//! against ABI v1 and running them sandboxed on wasmtime.

pub mod builtin;
pub mod cache;
pub mod conformance;
pub mod registry;
pub mod reload;
pub mod runtime;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use registry::PluginSlot;
pub use runtime::{CallOutcome, Failure, Instance, InstanceSettings, PluginModule, Runtime};

use crate::config::PluginSource;

/// Why a plugin could not be loaded or started.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("not a valid wasm module: {0}")]
    Compile(String),
    #[error("does not follow the plugin ABI: {0}")]
    Abi(String),
    #[error("init failed: {0}")]
    Init(String),
    #[error("{0}")]
    Wasm(String),
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
    std::fs::read(path).map_err(|e| PluginError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}
