//! The dispatch path, in ns per sample: host encode (samples → ABI bytes) + copy
//! into the guest + the guest's decode, for batches of 1, 100 and 1000, with the
//! noop plugin's owned and borrowed views, under the per-call deadline.
//! `owned` and `borrowed` are the copy and the guest's decode alone: on the UDP
//! and AMQP inputs the one pass writes the ABI bytes, so no separate encode
//! runs; `enc+` adds the encode that the HTTP inputs pay (they decode JSON
//! into samples first).
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

type Batches = Batcher<collector::batch::SystemClock>;

fn batcher() -> Batches {
    Batcher::new(&BatchConfig {
        max_samples: usize::MAX,
        max_bytes: 64 << 20,
        max_delay: Duration::from_millis(1000),
    })
}

/// Encodes as the daemon does: through a batcher it keeps, whose next buffer is
/// sized from the last batch.
fn encode(b: &mut Batches, samples: &[Sample]) -> Vec<u8> {
    for s in samples {
        let _ = b.push(s);
    }
    b.flush().map(|s| s.bytes.into_vec()).unwrap_or_default()
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/noop.wasm");
    let wasm = std::fs::read(&root)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make plugins`)", root.display()));
    let rt = Runtime::new(None).expect("runtime");
    let module = rt.compile("noop", &wasm).expect("noop compiles");
    let timeout = Duration::from_secs(5);
    let instance = |view: &str| {
        let s = InstanceSettings::unlimited_log(
            timeout,
            256 << 20,
            vec![],
            &format!(r#"{{"view":"{view}"}}"#),
        );
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
            "{:>6} {:>10} {:>8} {:>10} {:>8} {:>9} {:>10} {:>13}",
            "batch",
            "bytes/smp",
            "encode",
            "copy only",
            "owned",
            "borrowed",
            "enc+owned",
            "enc+borrowed"
        );
        for n in [1usize, 100, 1000] {
            let samples = &pool[..n];
            let mut batches = batcher();
            let bytes = encode(&mut batches, samples);
            let iters = (20_000 / n).max(20);
            let (mut e, mut c, mut o, mut b) = (vec![], vec![], vec![], vec![]);
            for _ in 0..25 {
                let t = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(encode(&mut batches, samples));
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
            let (enc, owned, borrowed) = (median(e), median(o), median(b));
            println!(
                "{:>6} {:>10} {:>8.1} {:>10.1} {:>8.1} {:>9.1} {:>10.1} {:>13.1}",
                n,
                bytes.len() / n,
                enc,
                median(c),
                owned,
                borrowed,
                enc + owned,
                enc + borrowed
            );
        }
    }

    languages(&rt, &full);
    components();
}

/// What a component costs to load: size, cold compile, a load from the
/// compiled-module cache (a new runtime on the same cache directory, as a
/// restarted daemon or `collector check` does), and instantiate + `init`
/// (median of 9).
fn components() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    println!(
        "components: size, cold compile, cached load and instantiate + init, in ms \
         (instantiate: median of 9)"
    );
    println!(
        "  {:<16} {:>9} {:>11} {:>11} {:>12}",
        "", "KiB", "cold", "cached", "instantiate"
    );
    for file in ["py-file.wasm", "js-file.wasm"] {
        let Ok(wasm) = std::fs::read(dir.join(file)) else {
            println!("  {file:<16} (not built: run `make plugins`)");
            continue;
        };
        let cache = tempfile::tempdir().expect("cache dir");
        let t = Instant::now();
        let cold = Runtime::new(Some(cache.path()))
            .expect("runtime")
            .compile(file, &wasm)
            .expect("compiles");
        let cold_ms = t.elapsed().as_secs_f64() * 1e3;
        drop(cold);
        let rt = Runtime::new(Some(cache.path())).expect("runtime");
        let t = Instant::now();
        let module = rt.compile(file, &wasm).expect("loads from the cache");
        let cached_ms = t.elapsed().as_secs_f64() * 1e3;
        let scratch = tempfile::tempdir().expect("scratch dir");
        let settings = InstanceSettings::unlimited_log(
            Duration::from_secs(5),
            256 << 20,
            vec![collector::plugin::GrantedDir {
                host: scratch.path().to_path_buf(),
                guest: "/data".into(),
                writable: true,
            }],
            r#"{"path":"/data/out.jsonl"}"#,
        );
        let runs = (0..9)
            .map(|_| {
                let t = Instant::now();
                let inst = Instance::new(&module, &settings).expect("instance");
                let ms = t.elapsed().as_secs_f64() * 1e3;
                drop(inst);
                ms
            })
            .collect();
        println!(
            "  {file:<16} {:>9} {cold_ms:>11.0} {cached_ms:>11.1} {:>12.2}",
            wasm.len() / 1024,
            median(runs)
        );
    }
}

/// Each language's example plugin on batches of 1000 realistic samples (copy +
/// dispatch; plugins that write files write them to a scratch directory).
fn languages(rt: &std::sync::Arc<Runtime>, pool: &[Sample]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let cases = [
        (
            "Rust noop (borrowed view)",
            "noop.wasm",
            r#"{"view":"borrowed"}"#,
        ),
        (
            "Rust file (JSON lines to a file)",
            "file.wasm",
            r#"{"path":"/data/file.jsonl"}"#,
        ),
        (
            "C threshold, freestanding",
            "c-threshold-freestanding.wasm",
            r#"{"limits":{"cpu":1e30}}"#,
        ),
        (
            "C threshold, wasi-libc",
            "c-threshold.wasm",
            r#"{"path":"/data/alerts.jsonl","limits":{"cpu":1e30}}"#,
        ),
        (
            "Zig forwarder (JSON lines to a file)",
            "zig-forwarder.wasm",
            r#"{"path":"/data/zig.jsonl"}"#,
        ),
        (
            "AssemblyScript summary",
            "as-summary.wasm",
            r#"{"meter":"cpu"}"#,
        ),
        (
            "Go meter totals (JSON lines to a file)",
            "go-meter-totals.wasm",
            r#"{"path":"/data/go.jsonl"}"#,
        ),
        ("WAT counter", "wat-counter.wasm", "{}"),
        (
            "Python decode only (py-misbehave, idle)",
            "py-misbehave.wasm",
            "{}",
        ),
        (
            "Python file (JSON lines to a file)",
            "py-file.wasm",
            r#"{"path":"/data/py.jsonl"}"#,
        ),
        (
            "JavaScript decode only (js-misbehave)",
            "js-misbehave.wasm",
            "{}",
        ),
        (
            "JavaScript file (JSON lines to a file)",
            "js-file.wasm",
            r#"{"path":"/data/js.jsonl"}"#,
        ),
    ];
    let bytes = encode(&mut batcher(), &pool[..1000]);
    let timeout = Duration::from_secs(5);
    println!(
        "example plugins: module size, compile time (Cranelift, no cache), and ns per sample at \
         batches of 1000 (copy + dispatch; median of 15 runs)"
    );
    println!("  {:<40} {:>9} {:>11} {:>8}", "", "KiB", "compile ms", "ns");
    for (label, file, config) in cases {
        let Ok(wasm) = std::fs::read(dir.join(file)) else {
            println!("  {label:<40} (not built: run `make plugins`)");
            continue;
        };
        let compiling = Instant::now();
        let module = rt.compile(file, &wasm).expect("plugin compiles");
        let compile_ms = compiling.elapsed().as_millis();
        let s = InstanceSettings::unlimited_log(
            timeout,
            256 << 20,
            vec![collector::plugin::GrantedDir {
                host: scratch.path().to_path_buf(),
                guest: "/data".into(),
                writable: true,
            }],
            config,
        );
        let mut inst = Instance::new(&module, &s).expect("instance");
        let mut runs = vec![];
        for _ in 0..15 {
            let t = Instant::now();
            for _ in 0..10 {
                assert_eq!(inst.dispatch(&bytes, timeout), CallOutcome::Ok, "{file}");
            }
            runs.push(t.elapsed().as_nanos() as f64 / 10_000.0);
        }
        println!(
            "  {label:<40} {:>9} {compile_ms:>11} {:>8.1}",
            wasm.len() / 1024,
            median(runs)
        );
    }
}
