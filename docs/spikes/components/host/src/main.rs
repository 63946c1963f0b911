use wasmtime::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "dispatcher",
});

impl collector::dispatcher::types::Host for State {}

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Tracker,
    log_count: u64,
    last_log: String,
}

struct Tracker {
    inner: StoreLimits,
    peak_mem: usize,
    memories: usize,
    denied: Option<(usize, usize)>,
}

impl wasmtime::ResourceLimiter for Tracker {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if current == 0 { self.memories += 1; }
        if ok { self.peak_mem = self.peak_mem.max(desired); } else { self.denied = Some((current, desired)); }
        Ok(ok)
    }
    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl DispatcherImports for State {
    fn log(&mut self, level: u8, msg: String) {
        self.log_count += 1;
        self.last_log = format!("[{level}] {msg}");
    }
}

const EPOCH_TICK: Duration = Duration::from_millis(10);

fn new_store(engine: &Engine, mem_cap: usize) -> Store<State> {
    // Nothing granted: no preopened dirs, no env, no args, no network.
    let wasi = WasiCtxBuilder::new().build();
    let limits = Tracker { inner: StoreLimitsBuilder::new().memory_size(mem_cap).trap_on_grow_failure(false).build(), peak_mem: 0, memories: 0, denied: None };
    let mut store = Store::new(
        engine,
        State { wasi, table: ResourceTable::new(), limits, log_count: 0, last_log: String::new() },
    );
    store.limiter(|s| &mut s.limits);
    // 1 tick = 10ms; generous deadline for normal calls (10s)
    store.set_epoch_deadline(1000);
    store
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn make_batch(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample {
            counter_name: "cpu_util".to_string(),
            counter_type: "gauge".to_string(),
            counter_unit: "%".to_string(),
            counter_volume: i as f64 * 0.5,
            resource_id: format!("3b2c6d1e-8f4a-4c2e-9d1b-{:012}", i),
            timestamp: "2026-12-02T15:09:03.123456+00:00".to_string(),
            message_id: format!("a1b2c3d4-0000-4000-8000-{:012}", i),
        })
        .collect()
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn run(engine: &Engine, linker: &Linker<State>, path: &str) -> Result<()> {
    println!("=== {path} ===");
    let size = std::fs::metadata(path)?.len();
    println!("file size: {} bytes ({:.2} MiB)", size, size as f64 / 1048576.0);

    let t = Instant::now();
    let component = Component::from_file(engine, path)?;
    println!("cold compile (Component::from_file): {}", ms(t.elapsed()));

    let t = Instant::now();
    let bytes = component.serialize()?;
    println!("serialize: {} ({} bytes, {:.2} MiB)", ms(t.elapsed()), bytes.len(), bytes.len() as f64 / 1048576.0);
    let mut des = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let c = unsafe { Component::deserialize(engine, &bytes)? };
        des.push(t.elapsed());
        drop(c);
    }
    println!("Component::deserialize (median of 5): {}  all={:?}", ms(median(des.clone())), des);
    let component = unsafe { Component::deserialize(engine, &bytes)? };

    // imports
    let ty = component.component_type();
    println!("component imports:");
    for (name, _item) in ty.imports(engine) {
        println!("  import {name}");
    }
    println!("component exports:");
    for (name, _item) in ty.exports(engine) {
        println!("  export {name}");
    }

    // memory cap probe: instantiate, init, dispatch(1000 samples), dispatch-bytes(1 MB)
    let probe_batch = make_batch(1000);
    let probe_bytes = vec![7u8; 1_000_000];
    for cap_mib in [1usize, 2, 4, 8, 16, 32, 64, 128, 256] {
        let mut store = new_store(engine, cap_mib << 20);
        let mut stage = "instantiate";
        let r: Result<()> = (|| {
            let inst = Dispatcher::instantiate(&mut store, &component, linker)?;
            stage = "init";
            inst.call_init(&mut store, "probe")?.map_err(|e| wasmtime::Error::msg(e))?;
            stage = "dispatch(1000)";
            let o = inst.call_dispatch(&mut store, &probe_batch)?;
            if !matches!(o, Outcome::Ok) { return Err(wasmtime::Error::msg(format!("{o:?}"))); }
            stage = "dispatch-bytes(1MB)";
            let o = inst.call_dispatch_bytes(&mut store, &probe_bytes)?;
            if !matches!(o, Outcome::Ok) { return Err(wasmtime::Error::msg(format!("{o:?}"))); }
            stage = "done";
            Ok(())
        })();
        let d = &store.data().limits;
        match r {
            Ok(()) => println!("mem cap {cap_mib:>3} MiB: all stages OK; memories={} peak single-memory size={:.2} MiB", d.memories, d.peak_mem as f64 / 1048576.0),
            Err(e) => println!("mem cap {cap_mib:>3} MiB: FAILED at {stage}: {}; memories={} peak={:.2} MiB denied(cur,desired)={:?}", format!("{:#}", e).lines().last().unwrap_or(""), d.memories, d.peak_mem as f64 / 1048576.0, d.denied),
        }
    }

    let pre = linker.instantiate_pre(&component)?;
    let pre = DispatcherPre::new(pre)?;
    let mut inst_times = Vec::new();
    for _ in 0..10 {
        let mut store = new_store(engine, 256 << 20);
        let t = Instant::now();
        let inst = pre.instantiate(&mut store)?;
        inst_times.push(t.elapsed());
        drop(inst);
    }
    println!("instantiate (pre-linked, fresh store, median of 10): {}  first={}", ms(median(inst_times.clone())), ms(inst_times[0]));

    let mut store = new_store(engine, 256 << 20);
    let t = Instant::now();
    let inst = Dispatcher::instantiate(&mut store, &component, linker)?;
    println!("instantiate (Dispatcher::instantiate incl. linking): {}", ms(t.elapsed()));

    let t = Instant::now();
    let r = inst.call_init(&mut store, "{\"target\":\"test\"}")?;
    println!("init call: {} -> {:?}", ms(t.elapsed()), r);

    // correctness
    let b = make_batch(3);
    let o = inst.call_dispatch(&mut store, &b)?;
    println!("dispatch(3) -> {:?}; log_count={} last_log={:?}", o, store.data().log_count, store.data().last_log);
    let o = inst.call_dispatch_bytes(&mut store, &[])?;
    println!("dispatch-bytes(0 bytes) -> {:?}", o);
    let o = inst.call_dispatch_bytes(&mut store, &[1, 2, 3])?;
    println!("dispatch-bytes(3 bytes) -> {:?}; last_log={:?}", o, store.data().last_log);

    let n = 1000;
    let batch = make_batch(n);
    let mut times = Vec::new();
    for i in 0..25 {
        store.set_epoch_deadline(1000);
        let t = Instant::now();
        let o = inst.call_dispatch(&mut store, &batch)?;
        let e = t.elapsed();
        if i >= 5 { times.push(e); }
        if i == 0 { println!("dispatch(1000) -> {:?} last_log={:?}", o, store.data().last_log); }
    }
    let m = median(times.clone());
    println!("dispatch list<sample> x{n}: median {} = {:.0} ns/sample (min {}, max {})", ms(m), m.as_nanos() as f64 / n as f64, ms(*times.iter().min().unwrap()), ms(*times.iter().max().unwrap()));

    let bytes_batch: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut times = Vec::new();
    for i in 0..25 {
        store.set_epoch_deadline(1000);
        let t = Instant::now();
        let o = inst.call_dispatch_bytes(&mut store, &bytes_batch)?;
        let e = t.elapsed();
        if i >= 5 { times.push(e); }
        if i == 0 { println!("dispatch-bytes(1MB) -> {:?} last_log={:?}", o, store.data().last_log); }
    }
    let m = median(times.clone());
    println!("dispatch-bytes list<u8> 1,000,000 bytes (=1000 samples x 1000 B): median {} = {:.0} ns/sample, {:.0} MB/s (min {}, max {})", ms(m), m.as_nanos() as f64 / n as f64, 1.0 / m.as_secs_f64(), ms(*times.iter().min().unwrap()), ms(*times.iter().max().unwrap()));

    // also a realistic size: 1000 samples serialized ~ JSON lines
    let json: String = batch.iter().map(|s| format!("{{\"counter_name\":\"{}\",\"counter_type\":\"{}\",\"counter_unit\":\"{}\",\"counter_volume\":{},\"resource_id\":\"{}\",\"timestamp\":\"{}\",\"message_id\":\"{}\"}}\n", s.counter_name, s.counter_type, s.counter_unit, s.counter_volume, s.resource_id, s.timestamp, s.message_id)).collect();
    let jb = json.into_bytes();
    let mut times = Vec::new();
    for i in 0..25 {
        store.set_epoch_deadline(1000);
        let t = Instant::now();
        inst.call_dispatch_bytes(&mut store, &jb)?;
        if i >= 5 { times.push(t.elapsed()); }
    }
    let m = median(times);
    println!("dispatch-bytes list<u8> {} bytes (1000 samples as JSON lines): median {} = {:.0} ns/sample", jb.len(), ms(m), m.as_nanos() as f64 / n as f64);

    // memory used after all this
    println!("log_count total = {}", store.data().log_count);

    // epoch trap test: init with "loop" makes dispatch spin forever
    let mut store = new_store(engine, 256 << 20);
    let inst = pre.instantiate(&mut store)?;
    let r = inst.call_init(&mut store, "loop")?;
    println!("init(loop) -> {:?}", r);
    store.set_epoch_deadline(50); // 50 ticks * 10ms = ~500ms
    let t = Instant::now();
    let r = inst.call_dispatch(&mut store, &make_batch(1));
    match r {
        Ok(o) => println!("EPOCH TEST: dispatch returned normally?! {:?} after {}", o, ms(t.elapsed())),
        Err(e) => {
            let trap = e.downcast_ref::<wasmtime::Trap>().copied();
            println!("EPOCH TEST: dispatch trapped after {} trap={:?} err={:#}", ms(t.elapsed()), trap, e);
        }
    }
    // After a trap the instance must not be reused; check what happens
    store.set_epoch_deadline(1000);
    match inst.call_dispatch_bytes(&mut store, &[1]) {
        Ok(o) => println!("call after trap: {:?}", o),
        Err(e) => println!("call after trap: ERR {:#}", e),
    }
    println!();
    Ok(())
}

fn main() -> Result<()> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    let engine = Engine::new(&config)?;

    let stop = Arc::new(AtomicBool::new(false));
    let e2 = engine.clone();
    let s2 = stop.clone();
    let ticker = std::thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            std::thread::sleep(EPOCH_TICK);
            e2.increment_epoch();
        }
    });

    let mut linker: Linker<State> = Linker::new(&engine);
    if std::env::var_os("NO_WASI").is_none() {
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    } else {
        println!("NO_WASI set: WASI p2 NOT added to linker");
    }
    Dispatcher::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;

    let args: Vec<String> = std::env::args().skip(1).collect();
    for p in &args {
        if let Err(e) = run(&engine, &linker, p) {
            println!("FAILED {p}: {:#}", e);
        }
    }
    stop.store(true, Ordering::Relaxed);
    ticker.join().unwrap();
    Ok(())
}
