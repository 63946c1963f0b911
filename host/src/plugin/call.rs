//! One call into a plugin, core module or component alike: its deadline in
//! epoch ticks, and what it came to ([`CallOutcome`], [`Failure`]).

use std::time::Duration;

use wasmtime::Trap;

use super::component_wait::WaitPastDeadline;
use super::memory_cap::MemoryCap;

/// How often the engine's epoch advances; the granularity of `timeout_ms`.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

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

/// The epoch ticks of a call's deadline (one more than `timeout` rounds up
/// to, so that a call never gets less than its timeout).
pub fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() as u64).div_ceil(EPOCH_TICK.as_millis() as u64) + 1
}

/// Turns a wasmtime error into a [`Failure`] an operator understands.
pub fn classify(cap: &MemoryCap, e: wasmtime::Error, timeout: Duration) -> Failure {
    if let Some((desired, limit)) = cap.refused {
        return Failure::Memory(format!(
            "the plugin asked for {desired} bytes of memories and tables (with the HTTP responses it holds), \
             memory_limit_bytes is {limit}"
        ));
    }
    if e.downcast_ref::<WaitPastDeadline>().is_some() {
        return Failure::Timeout(format!(
            "the call waited in WASI past timeout_ms ({} ms)",
            timeout.as_millis()
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
