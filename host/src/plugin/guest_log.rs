//! A plugin's log lines (`collector.log` of a core module, the world's `log`
//! import of a component): rate-limited per dispatcher, escaped and cut to
//! `max_line_bytes`, logged under the target `plugin`, in one place.

use collector_sdk::abi;

use super::settings::LogPolicy;
use crate::telemetry::Untrusted;

/// Takes a line from the dispatcher's budget: `None` when the rate limit drops
/// it (counted), else how many lines were dropped before it.
pub fn admit(policy: &LogPolicy) -> Option<u64> {
    match &policy.limit {
        None => Some(0),
        Some(limit) => match limit.allow() {
            Some(n) => Some(n),
            None => {
                policy.suppressed.inc();
                None
            }
        },
    }
}

/// Logs one admitted line at an ABI v1 level (`abi::LOG_*`); `cut` is how many
/// bytes of it were not read.
pub fn emit(policy: &LogPolicy, plugin: &str, level: i32, suppressed: u64, text: &str, cut: usize) {
    let msg = Untrusted::capped(text, policy.max_line_bytes);
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
}
