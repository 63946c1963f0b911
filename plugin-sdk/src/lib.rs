//! # collector-sdk: write collector dispatcher plugins in Rust
//!
//! A dispatcher plugin is a WebAssembly module that the `collector` daemon hands
//! batches of OpenStack Ceilometer samples to. This crate is everything a Rust
//! plugin needs: implement [`Dispatcher`], call [`export_dispatcher!`], and build
//! for `wasm32-unknown-unknown` (or `wasm32-wasip1` when the plugin uses files).
//!
//! Module map:
//! - [`model`]: the owned sample model ([`Sample`], [`Value`], [`Number`], [`Field`]);
//! - [`codec`]: the ABI v1 batch codec, with a zero-copy [`BatchView`];
//! - [`json`]: writes a sample as the JSON dict Ceilometer sent;
//! - [`abi`]: every name and constant of the ABI (docs/ABI.md);
//! - [`http`]: outbound HTTP to the endpoints the operator declared;
//! - [`time`]: Ceilometer's timestamps as nanoseconds since the epoch;
//! - [`log`](mod@log): logging through the host.
//!
//! ## Example
//!
//! A dispatcher that counts the volume of one meter, configured with
//! `config = { meter = "cpu" }` in the daemon's TOML:
//!
//! ```
//! use collector_sdk::{Batch, Config, Dispatcher, Outcome};
//!
//! struct Sum {
//!     meter: String,
//!     total: f64,
//! }
//!
//! impl Dispatcher for Sum {
//!     fn init(config: Config<'_>) -> Result<Self, String> {
//!         let meter = config.get_str("meter").unwrap_or_else(|| "cpu".into());
//!         Ok(Sum { meter, total: 0.0 })
//!     }
//!
//!     fn dispatch(&mut self, batch: Batch<'_>) -> Outcome {
//!         // Borrowed view: no allocation, strings point into the batch.
//!         for sample in batch.samples() {
//!             let sample = match sample {
//!                 Ok(s) => s,
//!                 Err(e) => return Outcome::Reject(e.to_string()),
//!             };
//!             if sample.counter_name == self.meter {
//!                 self.total += sample.counter_volume.map_or(0.0, |v| v.as_f64());
//!             }
//!         }
//!         collector_sdk::info!("{} total so far: {}", self.meter, self.total);
//!         Outcome::Ok
//!     }
//! }
//!
//! collector_sdk::export_dispatcher!(Sum);
//! ```
//!
//! Build it with
//! `cargo build --target wasm32-unknown-unknown --profile wasm` (a `cdylib` crate)
//! and check it with `collector check target/wasm32-unknown-unknown/wasm/NAME.wasm`.

pub mod abi;
pub mod codec;
pub mod http;
pub mod json;
pub mod log;
pub mod model;
pub mod time;

#[doc(hidden)]
pub mod guest;

pub use codec::{BatchView, DecodeError, SampleView, ValueView};
pub use model::{Field, Number, Sample, Value};

/// What a plugin says about a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The batch is taken care of.
    Ok,
    /// A transient failure: the host retries the same batch later, with backoff.
    Retry(String),
    /// The batch cannot be processed; retrying would not help.
    Reject(String),
}

/// The plugin's configuration: the dispatcher's `config` table from the daemon's
/// TOML, handed over as JSON text.
#[derive(Clone, Copy, Debug)]
pub struct Config<'a> {
    json: &'a str,
}

impl<'a> Config<'a> {
    pub fn new(json: &'a str) -> Self {
        Config { json }
    }

    /// The raw JSON text (`{}` when the dispatcher has no `config`).
    pub fn as_json(&self) -> &'a str {
        self.json
    }

    /// Deserializes the whole configuration.
    ///
    /// # Errors
    /// A message naming what did not match, ready to return from [`Dispatcher::init`].
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(self.json).map_err(|e| format!("invalid plugin config: {e}"))
    }

    /// A top-level string value, if present.
    pub fn get_str(&self, key: &str) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(self.json).ok()?;
        v.get(key)?.as_str().map(str::to_owned)
    }
}

/// One batch as the host handed it over.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    bytes: &'a [u8],
}

impl<'a> Batch<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Batch { bytes }
    }

    /// The raw ABI v1 bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Number of samples (0 if the header is missing).
    pub fn len(&self) -> u64 {
        BatchView::new(self.bytes).map_or(0, |v| v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples as zero-copy views, decoded as they are reached.
    pub fn samples(&self) -> impl Iterator<Item = Result<SampleView<'a>, DecodeError>> + 'a {
        let (view, header_err) = match BatchView::new(self.bytes) {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(Err(e))),
        };
        header_err
            .into_iter()
            .chain(view.into_iter().flat_map(|v| v.iter()))
    }

    /// The samples as owned values ([`codec::decode_batch`]: one walk, each string copied once).
    ///
    /// # Errors
    /// When the batch bytes are malformed.
    pub fn to_owned(&self) -> Result<Vec<Sample>, DecodeError> {
        codec::decode_batch(self.bytes)
    }
}

/// A dispatcher plugin. One value lives per plugin instance.
pub trait Dispatcher: Sized + 'static {
    /// Called once per instance, before any batch.
    ///
    /// # Errors
    /// A message for the operator; the daemon refuses to start the dispatcher.
    fn init(config: Config<'_>) -> Result<Self, String>;

    /// Called for each batch. The batch bytes are freed when it returns.
    fn dispatch(&mut self, batch: Batch<'_>) -> Outcome;

    /// The state to carry into the next instance (after a reload of the plugin, or
    /// when the host replaces an instance that failed). Called after every batch
    /// the plugin accepted, so keep it small. `None`: nothing to carry.
    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }

    /// Takes over a snapshot made by [`snapshot`](Self::snapshot), possibly by an
    /// older version of the plugin. Called once, right after `init`.
    ///
    /// # Errors
    /// A message for the log; the instance then starts without the state.
    fn restore(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// Exports the ABI v1 functions for a [`Dispatcher`] type. Use it once per plugin.
#[macro_export]
macro_rules! export_dispatcher {
    ($t:ty) => {
        static __COLLECTOR_DISPATCHER: $crate::guest::Slot<$t> = $crate::guest::Slot::new();

        /// ABI v1 marker (docs/ABI.md).
        #[unsafe(no_mangle)]
        pub extern "C" fn collector_abi_version_1() {}

        #[unsafe(no_mangle)]
        pub extern "C" fn collector_alloc(len: i32) -> i32 {
            $crate::guest::alloc(len)
        }

        /// # Safety
        /// Called by the host with a buffer from `collector_alloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn collector_init(ptr: i32, len: i32) -> i32 {
            unsafe { $crate::guest::init(&__COLLECTOR_DISPATCHER, ptr, len) }
        }

        /// # Safety
        /// Called by the host with a buffer from `collector_alloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn collector_dispatch(ptr: i32, len: i32) -> i32 {
            unsafe { $crate::guest::dispatch(&__COLLECTOR_DISPATCHER, ptr, len) }
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn collector_snapshot() -> i64 {
            $crate::guest::snapshot(&__COLLECTOR_DISPATCHER)
        }

        /// # Safety
        /// Called by the host with a buffer from `collector_alloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn collector_restore(ptr: i32, len: i32) -> i32 {
            unsafe { $crate::guest::restore(&__COLLECTOR_DISPATCHER, ptr, len) }
        }
    };
}
