//! `collector send udp` and `collector send tcp`: realistic signed samples to a
//! collector, like Ceilometer's `udp://` publisher (one msgpack map per
//! datagram) and its `tcp://` publisher (an 8-byte little-endian length, then
//! the map, with the `publisher_id` it signs too).

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

/// `collector send tcp` takes the same arguments as `send udp`.
pub type TcpArgs = UdpArgs;

/// The frames the `tcp://` publisher sends: each sample with `publisher_id`
/// (this machine's name, as the agent's `host`), signed with it.
pub fn frames(count: u64, seed: u64, secret: &[u8]) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let host = crate::config::machine_name();
    (0..count)
        .map(|i| {
            let mut s = realistic(i, &mut rng, secret);
            s.extra.push((
                "publisher_id".into(),
                collector_sdk::Value::Str(host.clone()),
            ));
            s.message_signature = Some(crate::signature::compute(&s, secret));
            let mut out = vec![0u8; 8];
            msgpack::encode_sample(&s, &mut out);
            let len = (out.len() - 8) as u64;
            out[..8].copy_from_slice(&len.to_le_bytes());
            out
        })
        .collect()
}

/// Sends the frames on one connection, pacing them to `rate` per second.
///
/// # Errors
/// When the connection cannot be made or breaks.
pub fn send_tcp(
    to: SocketAddr,
    frames: &[Vec<u8>],
    rate: Option<u64>,
) -> std::io::Result<SendReport> {
    use std::io::Write;
    let mut conn = std::io::BufWriter::with_capacity(64 << 10, std::net::TcpStream::connect(to)?);
    let start = Instant::now();
    let mut bytes = 0u64;
    for (i, f) in frames.iter().enumerate() {
        pace(start, i, rate);
        conn.write_all(f)?;
        bytes += f.len() as u64;
    }
    conn.flush()?;
    Ok(SendReport {
        sent: frames.len() as u64,
        errors: 0,
        bytes,
        elapsed: start.elapsed(),
    })
}

/// Sleeps until sample `i` is due at `rate` per second (checked every 100).
pub fn pace(start: Instant, i: usize, rate: Option<u64>) {
    if let Some(r) = rate.filter(|r| *r > 0)
        && i.is_multiple_of(100)
    {
        let due = start + Duration::from_secs_f64(i as f64 / r as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// Prints what was sent; the exit status says whether all of it was.
pub fn report(
    r: &std::io::Result<SendReport>,
    to: &dyn std::fmt::Display,
    gen_time: Duration,
) -> ExitCode {
    match r {
        Ok(r) => {
            let secs = r.elapsed.as_secs_f64().max(1e-9);
            println!(
                "sent {} samples ({} bytes) to {to} in {secs:.3} s: {:.0} samples/s; {} send errors; generated and signed in {:.3} s",
                r.sent,
                r.bytes,
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

/// `collector send tcp`.
pub fn main_tcp(args: &TcpArgs) -> ExitCode {
    let t = Instant::now();
    let frames = frames(args.count, args.seed, args.secret.as_bytes());
    let gen_time = t.elapsed();
    report(&send_tcp(args.to, &frames, args.rate), &args.to, gen_time)
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
        pace(start, i, rate);
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
    report(
        &send_with_progress(args.to, &grams, args.rate, &bar),
        &args.to,
        gen_time,
    )
}
