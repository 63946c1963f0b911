//! `collector status`: a human summary of a running daemon, from its admin endpoint.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The daemon's `[admin] address`.
    #[arg(long, default_value = "127.0.0.1:4953")]
    pub admin: SocketAddr,
    /// Seconds between the two readings that the rates come from.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
}

/// `GET /status` from the daemon.
///
/// # Errors
/// A message when the daemon cannot be reached or answers nonsense.
pub fn fetch(admin: SocketAddr) -> Result<serde_json::Value, String> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(3)).map_err(|e| {
        format!("cannot reach the daemon's admin endpoint {admin}: {e} (is `[admin] address` set?)")
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    s.write_all(
        format!("GET /status HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or("no HTTP body in the answer")?;
    serde_json::from_str(body).map_err(|e| format!("bad status JSON: {e}"))
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

pub fn main(args: &StatusArgs) -> ExitCode {
    let first = match fetch(args.admin) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("collector status: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::thread::sleep(Duration::from_secs_f64(args.interval.max(0.1)));
    let second = fetch(args.admin).unwrap_or_else(|_| first.clone());
    let secs =
        (n(&second, "uptime_ms").saturating_sub(n(&first, "uptime_ms")) as f64 / 1000.0).max(0.001);
    let rate = |a: &serde_json::Value, b: &serde_json::Value, k: &str| {
        n(b, k).saturating_sub(n(a, k)) as f64 / secs
    };
    println!(
        "collector {} up {:.0} s (admin {})",
        second["collector"].as_str().unwrap_or("?"),
        n(&second, "uptime_ms") as f64 / 1000.0,
        args.admin
    );
    println!("sources:");
    if let Some(map) = second["sources"].as_object() {
        for (name, s) in map {
            let before = &first["sources"][name];
            let conn = if name == "amqp" {
                if s["connected"].as_bool() == Some(true) {
                    " connected"
                } else {
                    " DISCONNECTED"
                }
            } else {
                ""
            };
            println!(
                "  {name}{conn}: {:.0} samples/s now; {} samples, {} malformed, {} bad signatures, {} dropped{}",
                rate(before, s, "samples"),
                n(s, "samples"),
                n(s, "malformed"),
                n(s, "bad_signature"),
                n(s, "dropped"),
                if name == "amqp" {
                    format!(
                        "; {} acked, {} requeued, {} dead-lettered",
                        n(s, "acked"),
                        n(s, "requeued"),
                        n(s, "dead_lettered")
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    println!("dispatchers:");
    for (i, d) in second["dispatchers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let before = &first["dispatchers"][i];
        println!(
            "  {} ({}, version {}): {:.0} samples/s now; {} batches ok, {} failed, {} dropped; {} retries, {} timeouts, {} traps, {} memory refusals",
            d["name"].as_str().unwrap_or("?"),
            d["plugin"].as_str().unwrap_or("?"),
            d["version"].as_str().unwrap_or("?"),
            rate(before, d, "samples_ok"),
            n(d, "batches_ok"),
            n(d, "batches_failed"),
            n(d, "batches_dropped"),
            n(d, "retries"),
            n(d, "timeouts"),
            n(d, "traps"),
            n(d, "memory_refusals"),
        );
        if let Some(e) = d["last_error"].as_str() {
            println!("    last error: {e}");
        }
    }
    println!(
        "reloads: {} ok, {} failed",
        n(&second["reloads"], "ok"),
        n(&second["reloads"], "failed")
    );
    ExitCode::SUCCESS
}
