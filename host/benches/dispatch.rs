//! The dispatch path, in ns per sample: host encode (samples → ABI bytes) + copy
//! into the guest + the guest's decode, for batches of 1, 100 and 1000, with the
//! noop plugin's owned and borrowed views, under the per-call deadline.
//!
//! `make bench` runs it (release). Prints medians of 25 interleaved runs.

use std::time::{Duration, Instant};

use collector::batch::Batcher;
use collector::cli::samples::{Rng, realistic};
use collector::config::BatchConfig;
use collector::plugin::{CallOutcome, Instance, InstanceSettings, Runtime};
use collector_sdk::Sample;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Encodes as the daemon does: through a batcher.
fn encode(samples: &[Sample]) -> Vec<u8> {
    let cfg = BatchConfig {
        max_samples: usize::MAX,
        max_bytes: 64 << 20,
        max_delay_ms: 1000,
    };
    let mut b = Batcher::new(&cfg);
    for s in samples {
        let _ = b.push(s);
    }
    b.flush().map(|s| s.bytes).unwrap_or_default()
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/noop.wasm");
    let wasm = std::fs::read(&root)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make plugins`)", root.display()));
    let rt = Runtime::new(None).expect("runtime");
    let module = rt.compile("noop", &wasm).expect("noop compiles");
    let timeout = Duration::from_secs(5);
    let instance = |view: &str| {
        let s = InstanceSettings {
            timeout,
            memory_limit_bytes: 256 << 20,
            dirs: vec![],
            config_json: format!(r#"{{"view":"{view}"}}"#),
        };
        Instance::new(&module, &s).expect("instance")
    };
    let (mut none, mut owned, mut borrowed) =
        (instance("none"), instance("owned"), instance("borrowed"));

    let mut rng = Rng::new(42);
    let full: Vec<Sample> = (0..1000)
        .map(|i| realistic(i, &mut rng, b"bench-secret"))
        .collect();
    // The prototype's goals were set with small samples: the same without metadata.
    let small: Vec<Sample> = full
        .iter()
        .map(|s| Sample {
            resource_metadata: None,
            ..s.clone()
        })
        .collect();

    for (title, pool) in [
        ("realistic Ceilometer samples", &full),
        ("the same without resource_metadata", &small),
    ] {
        println!("dispatch path, ns per sample ({title}; median of 25 runs; deadline on)");
        println!(
            "{:>6} {:>10} {:>10} {:>12} {:>14} {:>14}",
            "batch", "bytes/smp", "encode", "copy only", "enc+owned", "enc+borrowed"
        );
        for n in [1usize, 100, 1000] {
            let samples = &pool[..n];
            let bytes = encode(samples);
            let iters = (20_000 / n).max(20);
            let (mut e, mut c, mut o, mut b) = (vec![], vec![], vec![], vec![]);
            for _ in 0..25 {
                let t = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(encode(samples));
                }
                e.push(t.elapsed().as_nanos() as f64 / (iters * n) as f64);
                for (inst, out) in [
                    (&mut none, &mut c),
                    (&mut owned, &mut o),
                    (&mut borrowed, &mut b),
                ] {
                    let t = Instant::now();
                    for _ in 0..iters {
                        assert_eq!(inst.dispatch(&bytes, timeout), CallOutcome::Ok);
                    }
                    out.push(t.elapsed().as_nanos() as f64 / (iters * n) as f64);
                }
            }
            let enc = median(e);
            println!(
                "{:>6} {:>10} {:>10.1} {:>12.1} {:>14.1} {:>14.1}",
                n,
                bytes.len() / n,
                enc,
                median(c),
                enc + median(o),
                enc + median(b)
            );
        }
    }
}
