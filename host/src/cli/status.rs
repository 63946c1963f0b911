//! `collector status`: a human summary of a running daemon, from its admin endpoint.

use std::net::SocketAddr;
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
    let (code, body) = http_get(admin, "/status").map_err(|e| {
        format!("cannot reach the daemon's admin endpoint {admin}: {e} (is `[admin] address` set?)")
    })?;
    if code != 200 {
        return Err(format!("the admin endpoint answered {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("bad status JSON: {e}"))
}

/// `GET path` from the admin endpoint: (status code, body), any code; 5 s at most.
///
/// # Errors
/// When the endpoint cannot be reached or the answer not read.
pub fn http_get(admin: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut answer = agent
        .get(format!("http://{admin}{path}"))
        .call()
        .map_err(|e| e.to_string())?;
    let code = answer.status().as_u16();
    let body = answer
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((code, body))
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
                match (n(s, "amqp_connected") > 0, s["broker"].as_str()) {
                    (true, Some(broker)) => format!(" connected to {broker}"),
                    (true, None) => " connected".to_owned(),
                    (false, _) => " DISCONNECTED".to_owned(),
                }
            } else {
                String::new()
            };
            println!(
                "  {name}{conn}: {:.0} samples/s now; {} samples, {} malformed, {} bad signatures, {} dropped{}",
                rate(before, s, "samples_received"),
                n(s, "samples_received"),
                n(s, "decode_errors"),
                n(s, "bad_signatures"),
                n(s, "input_dropped"),
                if name == "amqp" {
                    format!(
                        "; {} acked, {} requeued, {} dead-lettered",
                        n(s, "amqp_acked"),
                        n(s, "amqp_requeued"),
                        n(s, "amqp_dead_lettered")
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
            n(d, "plugin_retries"),
            n(d, "plugin_timeouts"),
            n(d, "plugin_traps"),
            n(d, "plugin_memory_refusals"),
        );
        if let Some(e) = d["last_error"].as_str() {
            println!("    last error: {e}");
        }
    }
    println!(
        "reloads: {} plugin versions loaded, {} failed; {} configs applied, {} refused",
        n(&second["daemon"], "plugin_reloads"),
        n(&second["daemon"], "plugin_reload_failures"),
        n(&second["daemon"], "config_reloads_applied"),
        n(&second["daemon"], "config_reloads_refused")
    );
    ExitCode::SUCCESS
}
