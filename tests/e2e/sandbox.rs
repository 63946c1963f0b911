//! Misbehaving dispatchers (infinite loop, trap, memory hog, retries) run beside
//! the file dispatcher, which receives every batch all along.

use std::time::Duration;

use collector_e2e::{ConfigBuilder, Daemon, plugin};

const SECRET: &[u8] = b"sandbox-secret";

/// `n` signed datagrams; those at `poison` carry the misbehave fixture's trigger meter.
fn datagrams(n: u64, poison: &[u64]) -> Vec<Vec<u8>> {
    collector_e2e::poisoned_datagrams(n, 99, SECRET, poison)
}

/// Adds a misbehave dispatcher with `extra` dispatcher keys and `config` plugin keys.
fn misbehaving(b: ConfigBuilder, name: &str, config: &str, extra: &str) -> ConfigBuilder {
    b.dispatcher(name, &plugin("misbehave.wasm"), extra, config)
}

#[test]
fn misbehaving_plugins_fail_only_their_batches_and_the_file_dispatcher_gets_everything() {
    let mut b = ConfigBuilder::udp_to_file("sandbox-secret", "max_samples = 20\nmax_delay_ms = 50");
    b = misbehaving(
        b,
        "looping",
        "mode = 'loop'",
        "timeout_ms = 300\nqueue_batches = 64",
    );
    b = misbehaving(b, "trapping", "mode = 'trap'", "");
    b = misbehaving(b, "hog", "mode = 'hog'", "memory_limit_bytes = 16777216");
    b = misbehaving(
        b,
        "flaky",
        "fail_first = 3",
        "retry_backoff_ms = 10\nmax_retries = 5",
    );
    let toml = b.build();
    let d = Daemon::start(&toml);
    let poison = [5, 70, 150];
    let n = 200;
    let grams = datagrams(n, &poison);
    d.send_udp_in_groups_to_file(&grams);
    // The slow one needs 3 × 300 ms for its poisoned batches; give it time to finish.
    std::thread::sleep(Duration::from_secs(2));
    let stopped = d.stop();
    let log = &stopped.log;
    assert!(stopped.status.success(), "{log}");
    assert_eq!(stopped.source("udp", "samples_received"), n);

    for (name, counter) in [
        ("looping", "plugin_timeouts"),
        ("trapping", "plugin_traps"),
        ("hog", "plugin_memory_refusals"),
    ] {
        assert_eq!(stopped.dispatcher(name, counter), 3, "{name}: {log}");
        assert_eq!(stopped.dispatcher(name, "batches_failed"), 3, "{name}");
        assert!(
            stopped.dispatcher(name, "batches_ok") >= 7,
            "{name} did not serve the batches after the poison ones"
        );
        assert_eq!(
            stopped.dispatcher(name, "samples_ok") + stopped.dispatcher(name, "samples_failed"),
            n,
            "{name}"
        );
    }
    assert_eq!(stopped.dispatcher("file", "samples_ok"), n);
    assert_eq!(stopped.dispatcher("file", "batches_failed"), 0);
    assert_eq!(stopped.dispatcher("flaky", "plugin_retries"), 3);
    assert_eq!(
        stopped.dispatcher("flaky", "samples_ok"),
        n,
        "retries lost nothing"
    );
    assert!(
        log.contains("memory_limit_bytes is 16777216"),
        "the memory refusal is explained:\n{log}"
    );
    assert!(
        log.contains("timeout_ms (300 ms)"),
        "the timeout is explained:\n{log}"
    );
}
