//! # collector-wire
//!
//! Everything the collector reads from outside before a sample reaches a batch:
//! Ceilometer's wire formats, decoded into the lossless sample model of
//! `collector-sdk`, and Ceilometer's sample signatures. A crate of its own, with
//! no runtime, no I/O and no wasm engine, so that it can be fuzzed (`fuzz/`) and
//! reasoned about alone.
//!
//! - [`msgpack`]: one msgpack map per UDP datagram;
//! - [`oslo`]: oslo.messaging notification and RPC bodies (JSON), decoded into
//!   samples or, by [`oslo::Transcoder`], straight into ABI bytes (the AMQP path);
//! - [`json`]: the sample model to and from `serde_json` values;
//! - [`http_body`]: the JSON Ceilometer's `http://` publisher posts;
//! - [`otlp`]: the OTLP JSON Ceilometer's `opentelemetryhttp://` publisher posts;
//! - [`signature`]: Ceilometer-exact HMAC-SHA256 signatures;
//! - [`transcode`]: a datagram to ABI bytes in one pass, signature checked, no
//!   sample model in between (the UDP hot path).
//!
//! Decoding is linear in the input and bounded in memory: lengths are checked
//! against the bytes that remain before anything is reserved, nesting stops at
//! [`collector_sdk::abi::MAX_NESTING`], and repeated keys are found by hashing.

pub mod http_body;
pub mod json;
pub mod msgpack;
pub mod oslo;
pub mod otlp;
pub mod signature;
pub mod transcode;
