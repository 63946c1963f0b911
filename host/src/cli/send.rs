//! `collector send udp`: realistic signed samples to a collector, like Ceilometer's
//! `udp://` publisher (one msgpack map per datagram).

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::samples::{Rng, realistic};
use crate::config::CEILOMETER_DEFAULT_SECRET;
use crate::wire::msgpack;

#[derive(Args, Debug)]
pub struct UdpArgs {
    /// Where the collector listens.
    #[arg(long, default_value = "127.0.0.1:4952")]
    pub to: SocketAddr,
    /// Number of samples (one datagram each).
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Samples per second; 0 or absent = as fast as possible.
    #[arg(long)]
    pub rate: Option<u64>,
    /// telemetry_secret to sign with (Ceilometer's default if absent; "" = unsigned).
    #[arg(long, default_value = CEILOMETER_DEFAULT_SECRET)]
    pub secret: String,
    /// Seed of the generator (same seed, same samples).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// What was sent.
#[derive(Debug)]
pub struct SendReport {
    pub sent: u64,
    pub errors: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Builds every datagram first, so that sending is not slowed by signing.
pub fn datagrams(count: u64, seed: u64, secret: &[u8]) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let mut out = Vec::with_capacity(768);
            msgpack::encode_sample(&realistic(i, &mut rng, secret), &mut out);
            out
        })
        .collect()
}

/// Sends the datagrams, pacing them to `rate` per second when given.
///
/// # Errors
/// When no local socket can be opened.
pub fn send(to: SocketAddr, grams: &[Vec<u8>], rate: Option<u64>) -> std::io::Result<SendReport> {
    send_with_progress(to, grams, rate, &indicatif::ProgressBar::hidden())
}

/// [`send`], advancing `bar` as it goes.
///
/// # Errors
/// When no local socket can be opened.
pub fn send_with_progress(
    to: SocketAddr,
    grams: &[Vec<u8>],
    rate: Option<u64>,
    bar: &indicatif::ProgressBar,
) -> std::io::Result<SendReport> {
    let bind: SocketAddr = if to.is_ipv6() {
        "[::]:0".parse()
    } else {
        "0.0.0.0:0".parse()
    }
    .map_err(std::io::Error::other)?;
    let sock = UdpSocket::bind(bind)?;
    let start = Instant::now();
    let (mut sent, mut errors, mut bytes) = (0u64, 0u64, 0u64);
    for (i, g) in grams.iter().enumerate() {
        if let Some(r) = rate.filter(|r| *r > 0)
            && i % 100 == 0
        {
            let due = start + Duration::from_secs_f64(i as f64 / r as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        match sock.send_to(g, to) {
            Ok(n) => {
                sent += 1;
                bytes += n as u64;
            }
            Err(_) => errors += 1,
        }
        if i % 1000 == 999 {
            bar.inc(1000);
        }
    }
    bar.finish_and_clear();
    Ok(SendReport {
        sent,
        errors,
        bytes,
        elapsed: start.elapsed(),
    })
}

pub fn main(args: &UdpArgs) -> ExitCode {
    let t = Instant::now();
    let grams = datagrams(args.count, args.seed, args.secret.as_bytes());
    let gen_time = t.elapsed();
    // A progress bar on a terminal only; the summary line below is always printed.
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(args.count),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "sending {bar:40} {pos}/{len} samples, {per_sec}, eta {eta}",
    ) {
        bar.set_style(style);
    }
    match send_with_progress(args.to, &grams, args.rate, &bar) {
        Ok(r) => {
            let secs = r.elapsed.as_secs_f64().max(1e-9);
            println!(
                "sent {} samples ({} bytes) to {} in {:.3} s: {:.0} samples/s; {} send errors; generated and signed in {:.3} s",
                r.sent,
                r.bytes,
                args.to,
                secs,
                r.sent as f64 / secs,
                r.errors,
                gen_time.as_secs_f64()
            );
            if r.errors > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("collector send: {e}");
            ExitCode::FAILURE
        }
    }
}
