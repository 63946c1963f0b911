//! Integration tests of the plugin runtime against real wasm plugins built from
//! `plugins/` (run `make plugins` first; `make test` does).
//!
//! One test binary, so wasmtime is linked once; each plugin is compiled once per
//! binary and shared.

mod common;
mod egress;
mod layout;
mod oslo_transcode;
mod plugins;
mod transcode;
