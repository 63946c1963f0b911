//! `collector send http` and `collector send otlp`: realistic samples posted
//! as Ceilometer's `http://` publisher posts them (a JSON list of
//! `Sample.as_dict()` per request, or one bare object per request like its
//! `batch=False`) and as its `opentelemetryhttp://` publisher does (OTLP JSON,
//! one sample per request). Unsigned, as theirs are. One kept-alive
//! connection; a request answered other than 2xx counts as an error.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::samples::{Rng, realistic};
use super::send::{SendReport, pace, report};
use crate::wire::{http_body, otlp};

#[derive(Args, Debug)]
pub struct HttpArgs {
    /// The collector's HTTP input (`http://user:password@host:port/path` for basic auth).
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    pub to: String,
    /// Number of samples.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Samples per request; 0 = one bare object per request (the publisher's `batch=False`).
    #[arg(long, default_value_t = 100)]
    pub batch: u64,
    /// Samples per second; 0 or absent = as fast as the collector answers.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seed of the generator (same seed, same samples).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct OtlpArgs {
    /// The collector's OTLP path.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/metrics")]
    pub to: String,
    /// Number of samples (one request each).
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Samples per second; 0 or absent = as fast as the collector answers.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seed of the generator (same seed, same samples).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The request bodies for `count` samples, `batch` per request (0: one bare object each).
pub fn http_bodies(count: u64, seed: u64, batch: u64) -> Vec<(u64, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let dicts: Vec<serde_json::Value> = (0..count)
        .map(|i| http_body::as_dict(&realistic(i, &mut rng, b"")))
        .collect();
    if batch == 0 {
        return dicts
            .iter()
            .map(|d| (1, d.to_string().into_bytes()))
            .collect();
    }
    dicts
        .chunks(batch as usize)
        .map(|c| {
            (
                c.len() as u64,
                serde_json::Value::from(c.to_vec()).to_string().into_bytes(),
            )
        })
        .collect()
}

/// One OTLP body per sample.
pub fn otlp_bodies(count: u64, seed: u64) -> Vec<(u64, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            (
                1,
                otlp::encode(&realistic(i, &mut rng, b""))
                    .to_string()
                    .into_bytes(),
            )
        })
        .collect()
}

/// Posts every body to `url`, pacing samples to `rate` per second.
///
/// # Errors
/// When `url` is not a URL the client can use.
pub fn post_all(
    url: &str,
    bodies: &[(u64, Vec<u8>)],
    rate: Option<u64>,
) -> std::io::Result<SendReport> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let start = Instant::now();
    let (mut sent, mut errors, mut bytes, mut samples) = (0u64, 0u64, 0u64, 0usize);
    for (n, body) in bodies {
        pace(start, samples, rate);
        samples += *n as usize;
        let answer = agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(&body[..]);
        match answer {
            Ok(r) if r.status().is_success() => {
                sent += n;
                bytes += body.len() as u64;
            }
            Ok(_) => errors += n,
            Err(ureq::Error::BadUri(e)) => return Err(std::io::Error::other(e)),
            Err(_) => errors += n,
        }
    }
    Ok(SendReport {
        sent,
        errors,
        bytes,
        elapsed: start.elapsed(),
    })
}

/// `collector send http`.
pub fn main_http(args: &HttpArgs) -> ExitCode {
    let t = Instant::now();
    let bodies = http_bodies(args.count, args.seed, args.batch);
    report(
        &post_all(&args.to, &bodies, args.rate),
        &args.to,
        t.elapsed(),
    )
}

/// `collector send otlp`.
pub fn main_otlp(args: &OtlpArgs) -> ExitCode {
    let t = Instant::now();
    let bodies = otlp_bodies(args.count, args.seed);
    report(
        &post_all(&args.to, &bodies, args.rate),
        &args.to,
        t.elapsed(),
    )
}
