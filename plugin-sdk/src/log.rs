//! Logging through the host: lines go to the daemon's log, tagged with the plugin's name.
//! Outside wasm (unit tests of a plugin) they go to stderr.

use crate::abi;

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error = abi::LOG_ERROR as isize,
    Warn = abi::LOG_WARN as isize,
    Info = abi::LOG_INFO as isize,
    Debug = abi::LOG_DEBUG as isize,
    Trace = abi::LOG_TRACE as isize,
}

/// Sends one log line to the host.
pub fn log(level: Level, msg: &str) {
    crate::guest::log(level as i32, msg);
}

/// `info!("fmt", args..)`: logs at INFO through the host.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($t)*)) };
}

/// `warn!("fmt", args..)`: logs at WARN through the host.
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($t)*)) };
}

/// `error!("fmt", args..)`: logs at ERROR through the host.
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Error, &format!($($t)*)) };
}

/// `debug!("fmt", args..)`: logs at DEBUG through the host.
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Debug, &format!($($t)*)) };
}
