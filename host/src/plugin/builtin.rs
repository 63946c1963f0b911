//! Plugins bundled in the binary (`plugin = "builtin:NAME"`), so that the embedded
//! default config works with nothing but the `collector` binary.
//!
//! `build.rs` embeds `target/plugins/NAME.wasm` when `make plugins` has built it.

use super::PluginError;

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// Names accepted after `builtin:`.
pub const NAMES: [&str; 2] = collector_config::BUILTIN_PLUGINS;

/// The wasm bytes of a bundled plugin.
///
/// # Errors
/// When the name is unknown or the binary was built before the plugins were.
pub fn bytes(name: &str) -> Result<&'static [u8], PluginError> {
    match BUILTINS.iter().find(|(n, _)| *n == name) {
        Some((_, Some(b))) => Ok(b),
        Some((_, None)) => Err(PluginError::Builtin {
            name: name.to_owned(),
            why: "this binary was built without its bundled plugins; run `make build` \
                  (it builds the plugins, then the daemon)",
        }),
        None => Err(PluginError::Builtin {
            name: name.to_owned(),
            why: "no such builtin plugin",
        }),
    }
}
