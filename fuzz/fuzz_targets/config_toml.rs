//! A configuration file: parsing and validation never panic; a config that is
//! accepted has the invariants validation promises the rest of the daemon.
#![no_main]

use collector_config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = Config::parse(text, "fuzz.toml", std::path::Path::new("/base")) else {
        return;
    };
    assert!(!cfg.dispatchers.is_empty());
    assert!(cfg.batch.max_samples >= 1 && !cfg.batch.max_delay.is_zero());
    for d in &cfg.dispatchers {
        assert!(!d.timeout.is_zero() && d.instances >= 1 && d.queue_batches >= 1);
        let _ = d.config_json();
    }
    if let Some(a) = &cfg.sources.amqp
        && let Some(url) = &a.url
    {
        let _ = collector_config::redact_url(url);
    }
});
