//! `collector check PLUGIN.wasm`: the ABI conformance test for a plugin in any
//! language. Compiles it, lists imports and exports, checks them against ABI v1,
//! runs `init` with a config, dispatches every golden batch and one as large as
//! `batch.max_bytes`, round-trips its state handoff, and watches memory.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::golden::GOLDEN;
use crate::plugin::conformance::check_abi;
use crate::plugin::{CallOutcome, GrantedDir, Instance, InstanceSettings, Runtime};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The plugin file (.wasm, or .wat text).
    pub plugin: PathBuf,
    /// The plugin's config as JSON, as `init` receives it.
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// A directory to grant, HOST:GUEST (read-write). Default: a scratch directory as /data.
    #[arg(long)]
    pub dir: Vec<String>,
    /// Deadline of each call.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    #[arg(long, default_value_t = 64 << 20)]
    pub memory_limit_bytes: usize,
    /// Rounds of the golden batches for the memory-stability check (0 compares
    /// the memory after the first dispatches with itself).
    #[arg(long, default_value_t = 20)]
    pub rounds: u32,
    /// Size of the largest batch dispatched, as the daemon's `batch.max_bytes`
    /// seals them (realistic samples up to this many bytes).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_bytes: usize,
    /// For a plugin that imports outbound HTTP: an endpoint name to declare
    /// (repeatable), served by a local server `check` starts, which answers 204
    /// to every request. Default: the `endpoint` key of `--config`, or `default`.
    #[arg(long)]
    pub endpoint: Vec<String>,
}

/// The server `check` points a plugin's endpoints at: it answers 204 to every
/// request and counts them.
struct LocalEndpoint {
    rt: tokio::runtime::Runtime,
    address: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl LocalEndpoint {
    fn start() -> Result<LocalEndpoint, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime for the local endpoint: {e}"))?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("cannot bind the local endpoint: {e}"))?;
        let address = listener
            .local_addr()
            .map_err(|e| format!("local endpoint: {e}"))?;
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = requests.clone();
        let app = axum::Router::new().fallback(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        });
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(LocalEndpoint {
            rt,
            address,
            requests,
        })
    }

    /// Endpoints named `names`, all pointing at this server.
    fn endpoints(&self, names: &[String]) -> Result<crate::egress::Endpoints, String> {
        let mut toml = String::from(
            "telemetry_secret = \"\"\n[[dispatchers]]\nname = \"check\"\nplugin = \"builtin:noop\"\n",
        );
        for n in names {
            toml.push_str(&format!(
                "[[dispatchers.endpoints]]\nname = \"{n}\"\nurl = \"http://{}\"\n",
                self.address
            ));
        }
        let cfg = crate::config::Config::parse(&toml, "--endpoint", std::path::Path::new("."))
            .map_err(|e| e.to_string())?;
        crate::egress::Endpoints::build(
            "check",
            &cfg.dispatchers[0].endpoints,
            None,
            crate::telemetry::Counter::default(),
        )
        .map_err(|e| e.to_string())
    }

    fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Prints one line of the report; returns whether it passed.
fn line(ok: bool, what: &str, detail: &str) -> bool {
    println!(
        "  [{}] {what}{}{detail}",
        if ok { " ok " } else { "FAIL" },
        if detail.is_empty() { "" } else { ": " }
    );
    ok
}

pub fn main(args: &CheckArgs) -> ExitCode {
    println!("collector check {}", args.plugin.display());
    match check(args) {
        Ok(true) => {
            let component =
                std::fs::read(&args.plugin).is_ok_and(|w| crate::plugin::runtime::is_component(&w));
            if component {
                println!("PASS: the component conforms to the world collector:dispatcher@1.0.0");
            } else {
                println!("PASS: the plugin conforms to ABI v1");
            }
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("FAIL: see the lines marked FAIL above");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &CheckArgs) -> Result<bool, String> {
    let wasm = std::fs::read(&args.plugin)
        .map_err(|e| format!("cannot read {}: {e}", args.plugin.display()))?;
    line(
        true,
        "read",
        &format!(
            "{} bytes, version {}",
            wasm.len(),
            crate::plugin::short_hash(&wasm)
        ),
    );
    // The daemon's compiled-module cache: a component compiles in seconds, and
    // `check` after a deploy then costs the daemon nothing.
    let cache = crate::plugin::cache::default_dir();
    let runtime = Runtime::new(cache.as_deref()).map_err(|e| e.to_string())?;
    let name = args
        .plugin
        .file_stem()
        .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned());
    let t = Instant::now();
    let (compiled, http_imports) = if crate::plugin::runtime::is_component(&wasm) {
        match check_component(&runtime, &name, &wasm, t) {
            Some(checked) => checked,
            None => return Ok(false),
        }
    } else {
        match check_core(&runtime, &name, &wasm, t)? {
            Some(checked) => checked,
            None => return Ok(false),
        }
    };
    let scratch =
        tempfile::tempdir().map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let mut dirs = Vec::new();
    if args.dir.is_empty() {
        dirs.push(GrantedDir {
            host: scratch.path().to_path_buf(),
            guest: "/data".to_owned(),
            writable: true,
        });
    }
    for d in &args.dir {
        let (host, guest) = d
            .split_once(':')
            .ok_or_else(|| format!("--dir {d}: expected HOST:GUEST"))?;
        dirs.push(GrantedDir {
            host: PathBuf::from(host),
            guest: guest.to_owned(),
            writable: true,
        });
    }
    let mut settings = InstanceSettings::unlimited_log(
        Duration::from_millis(args.timeout_ms),
        args.memory_limit_bytes,
        dirs,
        &args.config,
    );
    // A plugin that sends HTTP gets endpoints on a local server of check's own.
    let local = if http_imports.is_empty() {
        None
    } else {
        let names = if !args.endpoint.is_empty() {
            args.endpoint.clone()
        } else {
            let from_config = serde_json::from_str::<serde_json::Value>(&args.config)
                .ok()
                .and_then(|v| v["endpoint"].as_str().map(str::to_owned));
            vec![from_config.unwrap_or_else(|| "default".into())]
        };
        let local = LocalEndpoint::start()?;
        settings.endpoints = local.endpoints(&names)?;
        line(
            true,
            "local endpoint",
            &format!("http://{} as {}", local.address, names.join(", ")),
        );
        Some(local)
    };
    let _runtime = local.as_ref().map(|l| l.rt.enter());
    let mut inst = match Instance::new(&compiled, &settings) {
        Ok(i) => i,
        Err(e) => {
            line(false, "instantiate and init", &e.to_string());
            return Ok(false);
        }
    };
    line(
        true,
        "instantiate and init",
        &format!("config {}", args.config),
    );

    let mut ok = true;
    let mut rejected = 0;
    for (gname, bytes, _) in GOLDEN {
        let t = Instant::now();
        let outcome = inst.dispatch(bytes, settings.timeout);
        let took = format!("{:.2} ms", t.elapsed().as_secs_f64() * 1000.0);
        ok &= match outcome {
            CallOutcome::Ok => line(true, &format!("dispatch {gname}"), &took),
            CallOutcome::Retry(m) => line(
                true,
                &format!("dispatch {gname}"),
                &format!("answered retry ({m}), {took}"),
            ),
            CallOutcome::Reject(m) => {
                rejected += 1;
                line(
                    true,
                    &format!("dispatch {gname}"),
                    &format!("answered reject ({m}), {took}"),
                )
            }
            CallOutcome::Failed(f) => {
                line(false, &format!("dispatch {gname}"), &f.to_string());
                return Ok(false);
            }
        };
    }
    // The empty batch may be refused by a plugin with nothing to do; the others not.
    if rejected >= GOLDEN.len() - 1 {
        println!(
            "  [warn] the plugin rejected every golden batch: in the daemon it would lose every \
             sample (check its config, or that it reads the batch layout right)"
        );
    }
    let big = big_batch(args.max_bytes);
    let t = Instant::now();
    let what = format!(
        "dispatch a batch of {} samples, {} bytes (batch.max_bytes)",
        big.samples,
        big.bytes.len()
    );
    match inst.dispatch(&big.bytes, settings.timeout) {
        CallOutcome::Failed(f) => {
            line(false, &what, &f.to_string());
            return Ok(false);
        }
        CallOutcome::Ok => {
            line(
                true,
                &what,
                &format!("{:.1} ms", t.elapsed().as_secs_f64() * 1000.0),
            );
        }
        CallOutcome::Retry(m) | CallOutcome::Reject(m) => {
            line(true, &what, &format!("answered {m}"));
        }
    }
    if !handoff(&compiled, &settings, &mut inst) {
        return Ok(false);
    }
    // Memory must settle: after a warm-up half, a window of the other half's
    // rounds may not grow it. A garbage-collected runtime (Go) may take one
    // more step of its heap late, so a window that grew is followed by up to
    // `EXTRA_WINDOWS` more; a leak grows in every one of them.
    const EXTRA_WINDOWS: u32 = 2;
    let half = args.rounds / 2;
    let window = args.rounds - half;
    let run_rounds = |inst: &mut Instance, from: u32, n: u32| -> bool {
        for round in from..from + n {
            for (gname, bytes, _) in GOLDEN {
                if let CallOutcome::Failed(f) = inst.dispatch(bytes, settings.timeout) {
                    line(
                        false,
                        &format!("round {round}: dispatch {gname}"),
                        &f.to_string(),
                    );
                    return false;
                }
            }
        }
        true
    };
    if !run_rounds(&mut inst, 0, half) {
        return Ok(false);
    }
    let mut done = half;
    let mut settled = inst.memory_bytes();
    let mut end;
    let mut windows = 0;
    loop {
        if !run_rounds(&mut inst, done, window) {
            return Ok(false);
        }
        done += window;
        end = inst.memory_bytes();
        if end <= settled || windows == EXTRA_WINDOWS {
            break;
        }
        windows += 1;
        settled = end;
    }
    ok &= line(
        end <= settled,
        &format!("memory stable over {done} rounds of the golden batches"),
        &format!(
            "{settled} bytes after round {}, {end} bytes at the end",
            done - window
        ),
    );
    if let Some(l) = &local {
        let n = l.requests();
        if n == 0 {
            println!(
                "  [warn] the plugin imports outbound HTTP but sent no request for the golden \
                 batches (is its endpoint named {:?}? pass --endpoint)",
                args.endpoint
            );
        } else {
            line(
                true,
                "outbound HTTP",
                &format!("{n} requests reached the local endpoint, each answered 204"),
            );
        }
    }
    Ok(ok)
}

/// Compiles a core module and checks its imports and exports against ABI v1:
/// the compiled plugin and the HTTP imports it has, or `None` after a FAIL line.
fn check_core(
    runtime: &Runtime,
    name: &str,
    wasm: &[u8],
    t: Instant,
) -> Result<Option<(crate::plugin::PluginModule, Vec<String>)>, String> {
    let module = match wasmtime::Module::new(runtime.engine(), wasm) {
        Ok(m) => m,
        Err(e) => {
            line(false, "compile", &format!("{e:#}"));
            return Ok(None);
        }
    };
    line(
        true,
        "compile",
        &format!("{:.0} ms", t.elapsed().as_secs_f64() * 1000.0),
    );
    let report = check_abi(&module);
    println!(
        "  imports: {}",
        if report.imports.is_empty() {
            "(none)".into()
        } else {
            report.imports.join(", ")
        }
    );
    println!("  exports: {}", report.exports.join(", "));
    let http_imports: Vec<String> = report
        .imports
        .iter()
        .filter(|i| i.starts_with("collector.http_"))
        .cloned()
        .collect();
    let wasi = report
        .imports
        .iter()
        .any(|i| i.starts_with("wasi_snapshot_preview1."));
    println!(
        "  capabilities: {}",
        match (wasi, http_imports.is_empty()) {
            (false, true) => "none beyond the ABI (no files, no network)".to_owned(),
            (true, true) => "WASI (files in the granted directories, clocks, random)".to_owned(),
            (w, false) => format!(
                "{}outbound HTTP to declared endpoints ({} imports)",
                if w { "WASI, " } else { "" },
                http_imports.len()
            ),
        }
    );
    if !report.problems.is_empty() {
        for p in &report.problems {
            line(false, "ABI v1", p);
        }
        return Ok(None);
    }
    line(true, "ABI v1 imports and exports", "");

    let compiled = runtime.compile(name, wasm).map_err(|e| e.to_string())?;
    Ok(Some((compiled, http_imports)))
}

/// Compiles a component and checks it against the world
/// `collector:dispatcher@1.0.0`: the compiled plugin and its `wasi:http`
/// imports, or `None` after a FAIL line.
fn check_component(
    runtime: &Runtime,
    name: &str,
    wasm: &[u8],
    t: Instant,
) -> Option<(crate::plugin::PluginModule, Vec<String>)> {
    let compiled = match runtime.compile(name, wasm) {
        Ok(m) => m,
        Err(e) => {
            line(false, "compile and link the component", &e.to_string());
            return None;
        }
    };
    line(
        true,
        "compile (a component)",
        &format!("{:.0} ms", t.elapsed().as_secs_f64() * 1000.0),
    );
    let mut http_imports = Vec::new();
    if let Some(component) = compiled.component() {
        let (imports, exports) = component.imports_and_exports();
        println!("  imports: {}", imports.join(", "));
        println!("  exports: {}", exports.join(", "));
        http_imports = imports
            .into_iter()
            .filter(|i| i.starts_with("wasi:http/outgoing-handler"))
            .collect();
    }
    println!(
        "  capabilities: WASI 0.2 (files in the granted directories, clocks, random; \
         sockets linked but refused; wasi:http to the dispatcher's declared endpoints only)"
    );
    line(
        true,
        "world collector:dispatcher@1.0.0 imports and exports",
        "",
    );
    Some((compiled, http_imports))
}

/// Realistic samples up to `max_bytes` of batch, sealed as the daemon would (the
/// one that does not fit starts the next batch, which is not sent).
fn big_batch(max_bytes: usize) -> crate::batch::Sealed {
    let cfg = crate::config::BatchConfig {
        max_samples: usize::MAX,
        max_bytes,
        max_delay: Duration::from_millis(1000),
    };
    let mut b = crate::batch::Batcher::<crate::batch::SystemClock>::new(&cfg);
    let mut rng = super::samples::Rng::new(11);
    let mut i = 0;
    loop {
        // Realistic in size and shape, under a meter name no plugin acts on.
        let mut s = super::samples::realistic(i, &mut rng, b"check");
        s.counter_name = "collector.check.large_batch".into();
        i += 1;
        if let Some(sealed) = b.push(&s) {
            return sealed;
        }
    }
}

/// State handoff (ABI §5.7–5.8), when the plugin exports it: a snapshot of this
/// instance is restored into a new one, which then takes a batch.
fn handoff(
    module: &crate::plugin::PluginModule,
    settings: &InstanceSettings,
    inst: &mut Instance,
) -> bool {
    let state = match inst.snapshot(settings.timeout) {
        Ok(None) => return true,
        Ok(Some(state)) => state,
        Err(f) => return line(false, "collector_snapshot", &f.to_string()),
    };
    let mut next = match Instance::new(module, settings) {
        Ok(i) => i,
        Err(e) => {
            return line(
                false,
                "a second instance for the state handoff",
                &e.to_string(),
            );
        }
    };
    let what = format!(
        "state handoff: a {}-byte snapshot restored into a new instance",
        state.len()
    );
    match next.restore(&state, settings.timeout) {
        CallOutcome::Ok => {}
        CallOutcome::Retry(m) | CallOutcome::Reject(m) => {
            println!(
                "  [warn] {what}: collector_restore refused it ({m}); the state would be lost"
            );
        }
        CallOutcome::Failed(f) => return line(false, &what, &f.to_string()),
    }
    match GOLDEN
        .get(1)
        .map(|(_, b, _)| next.dispatch(b, settings.timeout))
    {
        Some(CallOutcome::Failed(f)) => line(false, &what, &format!("then dispatch: {f}")),
        _ => line(true, &what, ""),
    }
}
