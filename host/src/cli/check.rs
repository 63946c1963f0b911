//! `collector check PLUGIN.wasm`: the ABI conformance test for a plugin in any
//! language. Compiles it, lists imports and exports, checks them against ABI v1,
//! runs `init` with a config and dispatches every golden batch, watching memory.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::golden::GOLDEN;
use crate::plugin::{CallOutcome, Instance, InstanceSettings, Runtime, runtime::check_abi};

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
            println!("PASS: the plugin conforms to ABI v1");
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
    let runtime = Runtime::new(None).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let module = match wasmtime::Module::new(runtime_engine(&runtime), &wasm) {
        Ok(m) => m,
        Err(e) => {
            line(false, "compile", &format!("{e:#}"));
            return Ok(false);
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
    if !report.problems.is_empty() {
        for p in &report.problems {
            line(false, "ABI v1", p);
        }
        return Ok(false);
    }
    line(true, "ABI v1 imports and exports", "");

    let name = args
        .plugin
        .file_stem()
        .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned());
    let compiled = runtime.compile(&name, &wasm).map_err(|e| e.to_string())?;
    let scratch =
        tempfile::tempdir().map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let mut dirs = Vec::new();
    if args.dir.is_empty() {
        dirs.push((scratch.path().to_path_buf(), "/data".to_owned(), true));
    }
    for d in &args.dir {
        let (host, guest) = d
            .split_once(':')
            .ok_or_else(|| format!("--dir {d}: expected HOST:GUEST"))?;
        dirs.push((PathBuf::from(host), guest.to_owned(), true));
    }
    let settings = InstanceSettings {
        timeout: Duration::from_millis(args.timeout_ms),
        memory_limit_bytes: args.memory_limit_bytes,
        dirs,
        config_json: args.config.clone(),
        log: crate::plugin::runtime::LogPolicy::unlimited(),
    };
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
            CallOutcome::Reject(m) => line(
                true,
                &format!("dispatch {gname}"),
                &format!("answered reject ({m}), {took}"),
            ),
            CallOutcome::Failed(f) => {
                line(false, &format!("dispatch {gname}"), &f.to_string());
                return Ok(false);
            }
        };
    }
    // Memory must settle: after a warm-up half, the second half may not grow it.
    let half = args.rounds / 2;
    // Until round `half` runs, the memory after the golden batches above counts.
    let mut settled = inst.memory_bytes();
    for round in 0..args.rounds {
        if round == half {
            settled = inst.memory_bytes();
        }
        for (gname, bytes, _) in GOLDEN {
            if let CallOutcome::Failed(f) = inst.dispatch(bytes, settings.timeout) {
                line(
                    false,
                    &format!("round {round}: dispatch {gname}"),
                    &f.to_string(),
                );
                return Ok(false);
            }
        }
    }
    let end = inst.memory_bytes();
    ok &= line(
        end <= settled,
        &format!(
            "memory stable over {} rounds of the golden batches",
            args.rounds
        ),
        &format!("{settled} bytes after round {half}, {end} bytes at the end"),
    );
    Ok(ok)
}

fn runtime_engine(rt: &Runtime) -> &wasmtime::Engine {
    rt.engine()
}
