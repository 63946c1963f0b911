//! The receive path stage by stage, in ns and heap allocations per sample, for
//! the `send` generator's realistic samples and for small ones:
//!
//! - `decode`: msgpack datagram to the owned `Sample`;
//! - `verify`: Ceilometer's HMAC of a decoded sample;
//! - `encode`: the owned sample to its ABI bytes;
//! - `decode + verify + encode`: the three, as the UDP path did before;
//! - `one pass`: `wire::transcode`, what the UDP path does now (the same
//!   bytes, checked by `tests/it/transcode.rs`);
//! - `oslo decode + verify + encode`: a notification of 100 samples, per
//!   sample, by the owned model (`oslo::verify_owned`);
//! - `oslo one pass`: `oslo::Transcoder`, what the AMQP path does now (checked
//!   by `tests/it/oslo_transcode.rs`).
//!
//! One thread; medians of 15 runs over 1,000 distinct samples; allocations
//! counted by a counting global allocator over one run (steady state: the
//! buffers are warm). `make bench` runs it (release).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use collector::cli::samples::{Rng, notification, realistic};
use collector::signature::{self, Signer};
use collector::wire::transcode::Transcoder;
use collector::wire::{msgpack, oslo};
use collector_sdk::codec::encode_sample;
use collector_sdk::{Field, Number, Sample, Value};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SECRET: &[u8] = b"bench-secret";
const N: usize = 1000;

/// Median ns per sample over 15 runs, and allocations per sample in one more.
fn measure(mut run: impl FnMut()) -> (f64, f64) {
    run(); // warm the buffers
    let mut t = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        run();
        t.push(start.elapsed().as_secs_f64() * 1e9 / N as f64);
    }
    t.sort_by(f64::total_cmp);
    let before = ALLOCS.load(Relaxed);
    run();
    let allocs = (ALLOCS.load(Relaxed) - before) as f64 / N as f64;
    (t[t.len() / 2], allocs)
}

fn small(i: u64, rng: &mut Rng) -> Sample {
    let mut s = Sample {
        source: "openstack".into(),
        counter_name: "cpu".into(),
        counter_type: "cumulative".into(),
        counter_unit: "ns".into(),
        counter_volume: Some(Number::Int(rng.below(1 << 40) as i64)),
        user_id: Field::Absent,
        user_name: Field::Absent,
        project_id: Field::Absent,
        project_name: Field::Absent,
        resource_id: format!("r-{i}"),
        timestamp: "2025-06-01T12:00:00".into(),
        resource_metadata: Some(Value::Map(vec![])),
        message_id: format!("m-{i}"),
        monotonic_time: Field::Absent,
        message_signature: None,
        extra: vec![],
    };
    s.message_signature = Some(signature::compute(&s, SECRET));
    s
}

fn stages(label: &str, samples: &[Sample]) -> f64 {
    let signer = Signer::new(SECRET);
    let datagrams: Vec<Vec<u8>> = samples
        .iter()
        .map(|s| {
            let mut d = Vec::new();
            msgpack::encode_sample(s, &mut d);
            d
        })
        .collect();
    let bytes = datagrams.iter().map(Vec::len).sum::<usize>() / N;
    println!("{label} samples ({bytes} B per datagram):");
    let row = |stage: &str, (ns, allocs): (f64, f64)| {
        println!("  {stage:<28} {ns:>9.0} ns/sample {allocs:>7.1} allocations/sample");
        ns
    };
    let mut out = Vec::with_capacity(4 << 20);
    row(
        "decode",
        measure(|| {
            for d in &datagrams {
                std::hint::black_box(msgpack::decode_sample(d).expect("decodes"));
            }
        }),
    );
    row(
        "verify",
        measure(|| {
            for s in samples {
                assert!(signer.verify(s));
            }
        }),
    );
    row(
        "encode",
        measure(|| {
            out.clear();
            for s in samples {
                encode_sample(&mut out, s);
            }
        }),
    );
    let owned = row(
        "decode + verify + encode",
        measure(|| {
            out.clear();
            for d in &datagrams {
                let s = msgpack::decode_sample(d).expect("decodes");
                assert!(signer.verify(&s));
                encode_sample(&mut out, &s);
            }
        }),
    );
    let mut t = Transcoder::new(SECRET);
    let one = row(
        "one pass",
        measure(|| {
            out.clear();
            for d in &datagrams {
                t.transcode(d, &mut out).expect("verifies");
            }
        }),
    );
    let bodies: Vec<Vec<u8>> = samples.chunks(100).map(notification).collect();
    let limits = oslo::Limits::default();
    let oslo_owned = row(
        "oslo decode + verify + encode",
        measure(|| {
            out.clear();
            for b in &bodies {
                let m = oslo::verify_owned(b, &limits, &signer, &mut out).expect("decodes");
                assert_eq!(m.bad_signatures, 0);
            }
        }),
    );
    let mut t = oslo::Transcoder::new(signer.clone());
    let oslo_one = row(
        "oslo one pass",
        measure(|| {
            out.clear();
            for b in &bodies {
                let m = t.transcode(b, &limits, &mut out).expect("decodes");
                assert_eq!(m.bad_signatures, 0);
            }
        }),
    );
    assert_eq!(
        t.fallbacks(),
        0,
        "the bench's notifications took the fast path"
    );
    println!("  one pass / owned path: {:.2}", one / owned);
    println!("  oslo one pass / owned path: {:.2}", oslo_one / oslo_owned);
    one
}

fn main() {
    println!(
        "receive path per stage, one thread, median of 15 runs (2 shared cores: compare ratios)"
    );
    let mut rng = Rng::new(14);
    let realistic: Vec<Sample> = (0..N as u64)
        .map(|i| realistic(i, &mut rng, SECRET))
        .collect();
    let small: Vec<Sample> = (0..N as u64).map(|i| small(i, &mut rng)).collect();
    stages("realistic", &realistic);
    stages("small", &small);
}
