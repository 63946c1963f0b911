//! The command line: `check` as the conformance test, configuration errors (exit
//! 64, naming the field) and plugins that cannot start.

use collector_e2e::{collector, plugin, root};

fn write_config(dir: &std::path::Path, toml: &str) -> String {
    let p = dir.join("c.toml");
    std::fs::write(&p, toml).expect("write config");
    p.display().to_string()
}

#[test]
fn check_passes_the_bundled_plugins() {
    for p in ["file.wasm", "noop.wasm", "misbehave.wasm"] {
        let (status, out, err) = collector(&["check", &plugin(p)], &root());
        assert!(status.success(), "{p}:\n{out}{err}");
        assert!(out.contains("PASS"), "{out}");
        assert!(out.contains("memory stable"), "{out}");
    }
}

#[test]
fn check_names_a_missing_export() {
    let (status, out, _) = collector(&["check", &plugin("missing-export.wat")], &root());
    assert!(!status.success());
    assert!(
        out.contains("does not export `collector_dispatch`"),
        "{out}"
    );
}

#[test]
fn check_fails_a_plugin_that_traps_on_a_golden_batch() {
    let cfg = r#"{"mode":"trap","trigger_meter":"cpu"}"#;
    let (status, out, _) = collector(
        &["check", &plugin("misbehave.wasm"), "--config", cfg],
        &root(),
    );
    assert!(!status.success(), "{out}");
    assert!(out.contains("FAIL") && out.contains("trapped"), "{out}");
}

/// Starts the daemon with one dispatcher `name` on `plugin_file`, expecting it to
/// refuse to start (status 1); returns what it printed.
fn startup_error(name: &str, plugin_file: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[dispatchers]]\nname = '{name}'\nplugin = '{}'\n",
            plugin(plugin_file)
        ),
    );
    let (status, _, err) = collector(&["run", "--config", &cfg], dir.path());
    assert_eq!(status.code(), Some(1), "{err}");
    err
}

#[test]
fn startup_names_the_missing_export() {
    let err = startup_error("broken", "missing-export.wat");
    assert!(
        err.contains("broken") && err.contains("`collector_dispatch`"),
        "{err}"
    );
}

#[test]
fn bad_config_exits_64_and_names_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "[[dispatchers]]\nname='a'\nplugin='builtin:noop'\ntimeout_ms = 0\n",
            "dispatchers[0].timeout_ms",
        ),
        (
            "[batch]\nmax_delay = 3\n[[dispatchers]]\nname='a'\nplugin='builtin:noop'\n",
            "max_delay",
        ),
        (
            "[sources.udp]\naddress = 'localhost'\n[[dispatchers]]\nname='a'\nplugin='builtin:noop'\n",
            "address",
        ),
    ];
    for (toml, field) in cases {
        let cfg = write_config(dir.path(), toml);
        let (status, _, err) = collector(&["run", "--config", &cfg], dir.path());
        assert_eq!(status.code(), Some(64), "{toml}\n{err}");
        assert!(err.contains(field), "{field} not named in: {err}");
    }
    let (status, _, err) = collector(&["run", "--config", "/nonexistent/c.toml"], dir.path());
    assert_eq!(status.code(), Some(64), "{err}");
}

#[test]
fn check_refuses_a_plugin_with_several_memories() {
    let (status, out, _) = collector(&["check", &plugin("multi-memory.wat")], &root());
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("FAIL") && out.contains("multiple memories"),
        "{out}"
    );
    assert!(!out.contains("memory stable"), "{out}");
}

#[test]
fn check_fails_a_component_without_the_world_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("component.wasm");
    // The preamble of a component (layer 1) alone: a valid component exporting nothing.
    std::fs::write(&path, b"\0asm\x0d\x00\x01\x00").unwrap();
    collector_e2e::assert_check_fails(
        &path,
        "does not export the world collector:dispatcher@1.0.0",
    );
}

#[test]
fn check_counts_tables_in_the_memory_cap() {
    let (status, out, _) = collector(&["check", &plugin("table-hog.wat")], &root());
    assert!(!status.success(), "{out}");
    assert!(out.contains("memory refused"), "{out}");
}

#[test]
fn an_admin_address_in_use_is_named_as_such() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        dir.path(),
        &format!(
            "[admin]\naddress = '{addr}'\n[sources.udp]\naddress = '127.0.0.1:0'\n\
             [[dispatchers]]\nname = 'n'\nplugin = '{}'\n",
            plugin("noop.wasm")
        ),
    );
    let (status, _, err) = collector(&["run", "--config", &cfg], dir.path());
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot bind the admin endpoint {addr}")),
        "{err}"
    );
    assert!(!err.contains("cannot bind UDP"), "{err}");
}

#[test]
fn an_admin_endpoint_beyond_loopback_is_warned_about() {
    let port = collector_e2e::free_port();
    let d = collector_e2e::Daemon::start(&format!(
        "[admin]\naddress = '0.0.0.0:{port}'\n[[dispatchers]]\nname = 'n'\nplugin = '{}'\n",
        plugin("noop.wasm")
    ));
    let stopped = d.stop();
    assert!(stopped.status.success(), "{}", stopped.log);
    let warning = stopped
        .log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("no authentication"))
        .unwrap_or_else(|| panic!("no warning:\n{}", stopped.log));
    assert!(warning.contains(&format!("0.0.0.0:{port}")), "{warning}");
    // On loopback, no such warning.
    let d = collector_e2e::Daemon::start(&format!(
        "[admin]\naddress = '127.0.0.1:{}'\n[[dispatchers]]\nname = 'n'\nplugin = '{}'\n",
        collector_e2e::free_port(),
        plugin("noop.wasm")
    ));
    let stopped = d.stop();
    assert!(
        !stopped.log.contains("no authentication"),
        "{}",
        stopped.log
    );
}

#[test]
fn startup_refuses_a_plugin_with_several_memories() {
    let err = startup_error("greedy", "multi-memory.wat");
    assert!(
        err.contains("greedy") && err.contains("multiple memories"),
        "{err}"
    );
}

/// `collector check FILE` (no extra flags): (passed, stdout).
fn check(file: &str) -> (bool, String) {
    let (status, out, _) = collector(&["check", &plugin(file)], &root());
    (status.success(), out)
}

#[test]
fn check_fails_an_initialize_of_the_wrong_type_and_so_does_startup() {
    let (ok, out) = check("bad-initialize.wat");
    assert!(!ok, "{out}");
    assert!(
        out.contains("exports `_initialize` as (func (param i32))"),
        "{out}"
    );
    let err = startup_error("reactor", "bad-initialize.wat");
    assert!(
        err.contains("reactor") && err.contains("_initialize"),
        "{err}"
    );
}

#[test]
fn check_names_both_types_of_a_wrongly_typed_import() {
    let (ok, out) = check("bad-import.wat");
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "imports `collector.log` as (func (param i32 i32)), but the host provides it as \
             (func (param i32 i32 i32))"
        ),
        "{out}"
    );
}

#[test]
fn check_dispatches_a_batch_as_large_as_max_bytes() {
    // Fine for the golden batches, out of memory for a real one.
    let (ok, out) = check("small-alloc.wat");
    assert!(!ok, "{out}");
    assert!(
        out.contains("[FAIL] dispatch a batch of") && out.contains("outside memory"),
        "{out}"
    );
    for p in ["file.wasm", "noop.wasm"] {
        let (ok, out) = check(p);
        assert!(ok, "{p}: {out}");
        assert!(out.contains("[ ok ] dispatch a batch of"), "{p}: {out}");
    }
}

#[test]
fn check_round_trips_the_state_handoff() {
    let (ok, out) = check("tagger.wasm");
    assert!(ok, "{out}");
    assert!(
        out.contains("[ ok ] state handoff: a 8-byte snapshot restored into a new instance"),
        "{out}"
    );
    let (ok, out) = check("snapshot-garbage.wat");
    assert!(!ok, "{out}");
    assert!(out.contains("[FAIL] collector_snapshot"), "{out}");
}

#[test]
fn check_warns_about_a_plugin_that_rejects_every_golden_batch() {
    let (ok, out) = check("reject-all.wat");
    assert!(ok, "it conforms: {out}");
    assert!(
        out.contains("[warn] the plugin rejected every golden batch"),
        "{out}"
    );
    let (_, out) = check("noop.wasm");
    assert!(!out.contains("[warn]"), "{out}");
}
