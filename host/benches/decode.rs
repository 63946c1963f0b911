//! Decoding cost of hostile input next to realistic input, in µs per input and
//! ns per input byte: a receive path that is linear in its input costs about the
//! same per byte whatever the sender puts in.
//!
//! Cases: one realistic signed datagram; the worst datagram we know (64 KiB of
//! distinct extra keys, about 13,000); a realistic notification of 100 samples;
//! the worst message we know (one sample with 100,000 distinct extra keys,
//! 1.4 MB). Each is decoded and its signatures verified, as the sources do. For
//! comparison, the same worst inputs through the duplicate-key check as it was
//! before it was made linear (each extra key compared with every earlier one).
//!
//! `make bench` runs it (release). Medians of 15 runs (the old check on 100,000
//! keys: one run, it takes seconds).

use std::time::Instant;

use collector::cli::samples::hostile::{many_keys_datagram, many_keys_notification};
use collector::cli::samples::{Rng, notification, realistic};
use collector::signature::Signer;
use collector::wire::{msgpack, oslo};
use collector_sdk::Value;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `f`, run `reps` times per measurement.
fn time(reps: u32, mut f: impl FnMut()) -> f64 {
    let mut runs = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        runs.push(t.elapsed().as_secs_f64() / f64::from(reps));
    }
    median(runs)
}

/// The duplicate check before it was made linear, for the "before" rows.
fn quadratic_repeat(extra: &[(String, Value)]) -> bool {
    let mut seen: Vec<&str> = Vec::new();
    for (k, _) in extra {
        if seen.contains(&k.as_str()) {
            return true;
        }
        seen.push(k);
    }
    false
}

fn row(label: &str, bytes: usize, secs: f64) {
    println!(
        "  {label:<58} {:>9} B {:>11.1} µs {:>9.2} ns/B",
        bytes,
        secs * 1e6,
        secs * 1e9 / bytes as f64
    );
}

fn main() {
    let secret = b"bench-secret";
    let signer = Signer::new(secret);
    let mut rng = Rng::new(5);

    println!("decode + verify, median of 15 runs (2 shared cores: compare ratios)");
    let mut good = Vec::new();
    msgpack::encode_sample(&realistic(1, &mut rng, secret), &mut good);
    let t_good = time(2000, || {
        let s = msgpack::decode_sample(&good).expect("decodes");
        assert!(signer.verify(&s));
    });
    row("UDP: realistic signed datagram", good.len(), t_good);

    let worst = many_keys_datagram(65_507);
    let t_worst = time(20, || {
        let s = msgpack::decode_sample(&worst).expect("decodes");
        assert!(!signer.verify(&s));
    });
    row(
        "UDP: 64 KiB of distinct extra keys (unsigned)",
        worst.len(),
        t_worst,
    );
    let decoded = msgpack::decode_sample(&worst).expect("decodes");
    let keys = decoded.extra.len();
    let t_before = time(1, || {
        assert!(!quadratic_repeat(&decoded.extra));
    });
    row(
        &format!("  the old duplicate check alone ({keys} keys)"),
        worst.len(),
        t_before,
    );

    let samples: Vec<_> = (0..100).map(|i| realistic(i, &mut rng, secret)).collect();
    let body = notification(&samples);
    let t_msg = time(50, || {
        let m = oslo::decode_message(&body).expect("decodes");
        assert!(m.samples.iter().all(|s| signer.verify(s)));
    });
    row(
        "AMQP: notification of 100 realistic samples",
        body.len(),
        t_msg,
    );

    let hostile = many_keys_notification(100_000);
    let t_hostile = time(3, || {
        let m = oslo::decode_message(&hostile).expect("decodes");
        assert!(!m.samples.iter().any(|s| signer.verify(s)));
    });
    row(
        "AMQP: one sample with 100,000 distinct extra keys",
        hostile.len(),
        t_hostile,
    );
    let m = oslo::decode_message(&hostile).expect("decodes");
    let extra = &m.samples[0].extra;
    // Seconds a run: measured once.
    let t = Instant::now();
    assert!(!quadratic_repeat(extra));
    let t_before = t.elapsed().as_secs_f64();
    row(
        &format!("  the old duplicate check alone ({} keys)", extra.len()),
        hostile.len(),
        t_before,
    );

    let per_byte = |t: f64, n: usize| t / n as f64;
    println!(
        "ratios per byte, hostile / realistic: UDP {:.2}, AMQP {:.2}",
        per_byte(t_worst, worst.len()) / per_byte(t_good, good.len()),
        per_byte(t_hostile, hostile.len()) / per_byte(t_msg, body.len())
    );
}
