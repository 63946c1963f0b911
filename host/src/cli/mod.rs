//! The commands besides `run`: `check` (ABI conformance of a plugin) and `send`
//! (realistic signed Ceilometer traffic).

pub mod check;
pub mod golden;
pub mod samples;
pub mod send;
pub mod send_http;
pub mod status;
