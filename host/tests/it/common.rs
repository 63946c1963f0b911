//! Shared plugin modules and batches for the integration tests.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use collector::cli::samples::{Rng, realistic};
use collector::plugin::{InstanceSettings, PluginModule, Runtime};
use collector_sdk::codec::encode_batch;

/// The files of a folder of the repository whose names `keep` accepts, in name order.
pub fn repo_files(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| keep(&p.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("readable"))
        .collect()
}

pub fn plugin_path(file: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(file);
    assert!(
        p.exists(),
        "{} is missing: run `make plugins` (or `make test`) first",
        p.display()
    );
    p
}

pub fn runtime() -> Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(None).expect("wasm runtime"))
        .clone()
}

/// Compiles each plugin once per test binary (a debug host JITs slowly).
pub fn module(file: &'static str) -> PluginModule {
    static CACHE: OnceLock<std::sync::Mutex<Vec<(&'static str, PluginModule)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().expect("cache lock");
    if let Some((_, m)) = c.iter().find(|(f, _)| *f == file) {
        return m.clone();
    }
    let bytes = std::fs::read(plugin_path(file)).expect("plugin file");
    let m = runtime()
        .compile(file, &bytes)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    c.push((file, m.clone()));
    m
}

pub fn settings(config_json: &str, timeout_ms: u64) -> InstanceSettings {
    InstanceSettings::unlimited_log(
        Duration::from_millis(timeout_ms),
        16 << 20,
        vec![],
        config_json,
    )
}

/// A batch of `n` realistic signed samples; with `poison`, the first one is a
/// `poison` meter (the misbehave fixture's trigger).
pub fn batch(n: u64, poison: bool) -> Vec<u8> {
    let mut rng = Rng::new(7);
    let mut samples: Vec<_> = (0..n).map(|i| realistic(i, &mut rng, b"s")).collect();
    if poison && let Some(first) = samples.first_mut() {
        first.counter_name = "poison".into();
    }
    encode_batch(&samples)
}
