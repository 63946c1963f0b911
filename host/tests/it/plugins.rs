//! Misbehaving plugins fail only their batch, and the instance that replaces them
//! serves the next one; well-behaved plugins pass the golden batches.

use std::time::{Duration, Instant};

use collector::cli::golden::GOLDEN;
use collector::plugin::{CallOutcome, Failure, Instance, PluginError};

use crate::common::{batch, module, plugin_path, runtime, settings};

fn fresh(file: &'static str, config: &str, timeout_ms: u64) -> Instance {
    Instance::new(&module(file), &settings(config, timeout_ms))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn infinite_loop_times_out_within_the_deadline_then_a_new_instance_serves() {
    let timeout_ms = 200;
    let mut inst = fresh("misbehave.wasm", r#"{"mode":"loop"}"#, timeout_ms);
    assert_eq!(
        inst.dispatch(&batch(10, false), Duration::from_millis(timeout_ms)),
        CallOutcome::Ok
    );
    let t = Instant::now();
    let out = inst.dispatch(&batch(10, true), Duration::from_millis(timeout_ms));
    let took = t.elapsed();
    assert!(
        matches!(out, CallOutcome::Failed(Failure::Timeout(_))),
        "{out:?}"
    );
    // Slack: one epoch tick of rounding plus scheduling on a busy 2-core machine.
    assert!(
        took >= Duration::from_millis(timeout_ms),
        "stopped early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(timeout_ms + 150),
        "stopped late: {took:?}"
    );
    let mut next = fresh("misbehave.wasm", r#"{"mode":"loop"}"#, timeout_ms);
    assert_eq!(
        next.dispatch(&batch(10, false), Duration::from_millis(timeout_ms)),
        CallOutcome::Ok
    );
}

#[test]
fn memory_hog_is_refused_with_a_clear_error() {
    let mut inst = fresh("misbehave.wasm", r#"{"mode":"hog"}"#, 5000);
    let out = inst.dispatch(&batch(10, true), Duration::from_secs(5));
    match out {
        CallOutcome::Failed(Failure::Memory(m)) => {
            assert!(m.contains("memory_limit_bytes is 16777216"), "{m}");
        }
        other => panic!("expected a memory refusal, got {other:?}"),
    }
    assert!(inst.memory_bytes() <= 16 << 20);
    let mut next = fresh("misbehave.wasm", r#"{"mode":"hog"}"#, 5000);
    assert_eq!(
        next.dispatch(&batch(10, false), Duration::from_secs(5)),
        CallOutcome::Ok
    );
}

#[test]
fn trap_fails_the_batch_and_names_the_trap() {
    let mut inst = fresh("misbehave.wasm", r#"{"mode":"trap"}"#, 5000);
    match inst.dispatch(&batch(3, true), Duration::from_secs(5)) {
        CallOutcome::Failed(Failure::Trap(m)) => assert!(m.contains("unreachable"), "{m}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    let mut next = fresh("misbehave.wasm", r#"{"mode":"trap"}"#, 5000);
    assert_eq!(
        next.dispatch(&batch(3, false), Duration::from_secs(5)),
        CallOutcome::Ok
    );
}

#[test]
fn retry_and_reject_carry_the_plugin_message() {
    let mut inst = fresh(
        "misbehave.wasm",
        r#"{"fail_first":1,"mode":"reject"}"#,
        5000,
    );
    match inst.dispatch(&batch(1, false), Duration::from_secs(5)) {
        CallOutcome::Retry(m) => assert!(m.contains("failing call 1"), "{m}"),
        other => panic!("expected retry, got {other:?}"),
    }
    assert_eq!(
        inst.dispatch(&batch(1, true), Duration::from_secs(5)),
        CallOutcome::Reject("poison sample".into())
    );
}

#[test]
fn missing_export_is_named() {
    let bytes = std::fs::read(plugin_path("missing-export.wat")).expect("fixture");
    match runtime().compile("missing", &bytes) {
        Err(PluginError::Abi(m)) => assert!(m.contains("`collector_dispatch`"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a module without collector_dispatch was accepted"),
    }
}

#[test]
fn bad_plugin_config_fails_init_with_the_plugin_message() {
    match Instance::new(
        &module("noop.wasm"),
        &settings(r#"{"view":"sideways"}"#, 5000),
    ) {
        Err(PluginError::Refused(m)) => assert!(m.contains("view must be"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("bad config accepted"),
    }
}

#[test]
fn noop_takes_every_golden_batch_in_both_views() {
    for view in ["borrowed", "owned"] {
        let mut inst = fresh("noop.wasm", &format!(r#"{{"view":"{view}"}}"#), 5000);
        for (name, bytes, _) in GOLDEN {
            assert_eq!(
                inst.dispatch(bytes, Duration::from_secs(5)),
                CallOutcome::Ok,
                "{view} {name}"
            );
        }
    }
}

#[test]
fn file_plugin_writes_the_golden_json_and_rotates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings(
        r#"{"path":"/data/out.jsonl","max_bytes":2500,"backup_count":2}"#,
        5000,
    );
    s.dirs = vec![collector::plugin::GrantedDir {
        host: dir.path().to_path_buf(),
        guest: "/data".into(),
        writable: true,
    }];
    let mut inst = Instance::new(&module("file.wasm"), &s).expect("file plugin");
    let mut expected = Vec::new();
    for (name, bytes, json) in GOLDEN {
        assert_eq!(inst.dispatch(bytes, s.timeout), CallOutcome::Ok, "{name}");
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        expected.extend(v.as_array().expect("array").iter().cloned());
    }
    // Oldest first: out.jsonl.2, out.jsonl.1, out.jsonl; older files beyond backup_count are gone.
    let mut lines = Vec::new();
    for f in ["out.jsonl.2", "out.jsonl.1", "out.jsonl"] {
        let p = dir.path().join(f);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            text.len() < 2500 || text.lines().count() == 1,
            "{f} is {} bytes",
            text.len()
        );
        lines.extend(
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line")),
        );
    }
    assert!(!dir.path().join("out.jsonl.3").exists());
    assert!(
        lines.len() < expected.len(),
        "rotation dropped nothing: backup_count is 2"
    );
    let tail = &expected[expected.len() - lines.len()..];
    assert_eq!(
        lines, tail,
        "the newest samples are kept, in order, equal to the input"
    );
}

#[test]
fn a_module_with_several_memories_does_not_compile() {
    let wasm = std::fs::read(plugin_path("multi-memory.wat")).expect("fixture");
    let err = runtime()
        .compile("multi-memory", &wasm)
        .err()
        .expect("multi-memory is refused");
    assert!(
        matches!(&err, PluginError::Compile(m) if m.to_string().contains("multiple memories")),
        "{err}"
    );
}

/// A component is compiled as one and checked against the world: the smallest
/// valid one (the preamble alone) exports nothing, and is refused saying so.
#[test]
fn a_component_without_the_world_is_refused_naming_it() {
    let err = runtime()
        .compile("component", b"\0asm\x0d\x00\x01\x00")
        .err()
        .expect("a component without the exports is refused");
    assert!(matches!(err, PluginError::Abi(_)), "{err}");
    assert!(
        err.to_string()
            .contains("does not export the world collector:dispatcher@1.0.0"),
        "{err}"
    );
    // The core-module preamble still goes to the compiler.
    let err = runtime()
        .compile("empty", b"\0asm\x01\x00\x00\x00")
        .err()
        .expect("an empty module lacks the ABI");
    assert!(matches!(err, PluginError::Abi(_)), "{err}");
}

#[test]
fn memories_and_tables_count_together_against_the_cap() {
    // 40 MiB of memory and 32 MB of table: each under 64 MiB, not both.
    let mut s = settings("{}", 5000);
    s.memory_limit_bytes = 64 << 20;
    let mut inst = Instance::new(&module("table-hog.wat"), &s).expect("instance");
    let out = inst.dispatch(&batch(1, false), Duration::from_secs(5));
    match out {
        CallOutcome::Failed(Failure::Memory(m)) => {
            assert!(m.contains("memory_limit_bytes is 67108864"), "{m}");
        }
        other => panic!("expected a memory refusal, got {other:?}"),
    }
    assert!(
        inst.memory_bytes() <= 64 << 20,
        "{} bytes held",
        inst.memory_bytes()
    );
    // With room for both, the same plugin runs.
    s.memory_limit_bytes = 128 << 20;
    let mut roomy = Instance::new(&module("table-hog.wat"), &s).expect("instance");
    assert_eq!(
        roomy.dispatch(&batch(1, false), Duration::from_secs(5)),
        CallOutcome::Ok
    );
    assert!(
        roomy.memory_bytes() > (40 << 20) + 32_000_000,
        "the total counts the table: {}",
        roomy.memory_bytes()
    );
}

/// `COLLECTOR_PERFMAP` makes the engine write perf's map of the JIT's code, so
/// that `perf report` names plugin functions (README, "Profiling the daemon").
#[test]
fn the_perfmap_variable_names_plugin_code_for_perf() {
    let map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()));
    // SAFETY: the other tests of this binary only read the variable, in
    // `Runtime::new`, and turning the map on for them too is harmless.
    unsafe { std::env::set_var(collector::plugin::runtime::PERFMAP_ENV, "1") };
    let rt = collector::plugin::Runtime::new(None).expect("runtime");
    let wasm = std::fs::read(plugin_path("noop.wasm")).expect("noop plugin");
    rt.compile("noop", &wasm).expect("noop compiles");
    let text = std::fs::read_to_string(&map).unwrap_or_else(|e| panic!("{}: {e}", map.display()));
    let _ = std::fs::remove_file(&map);
    // perf's format: `START SIZE NAME`, addresses in hex; a stripped plugin's
    // functions are named by index.
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("wasm[0]::function[")),
        "no line names a plugin function in {}:\n{text:.2000}",
        map.display()
    );
    for l in lines {
        let mut f = l.splitn(3, ' ');
        let (start, size) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
        assert!(
            start.starts_with("0x")
                && u64::from_str_radix(&start[2..], 16).is_ok()
                && u64::from_str_radix(size, 16).is_ok()
                && f.next().is_some_and(|name| !name.is_empty()),
            "not a perf map line: {l:?}"
        );
    }
}
