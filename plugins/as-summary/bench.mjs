// ns per sample of as-summary at batches of 1000 samples, in Node.js (V8), calling
// the plugin as the host does: collector_alloc + copy of the batch + collector_dispatch.
// The batch cycles through every sample of plugin-sdk/golden/*.bin (realistic
// compute-agent samples with nested metadata, plus the edge-value ones).
//
//   node bench.mjs [path/to/as-summary.wasm] [--batch N] [--calls N] [--runs N]
//   (config: {"meter":"cpu"}, or BENCH_CONFIG='{...}' for another plugin's)
//
// Prints median and minimum over runs of `calls` dispatches each, with and without
// the copy, as CPU time and as wall time per sample.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Plugin, splitBatch, joinBatch } from "../../plugin-sdk/assemblyscript/tests/harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt; };
const wasm = args.find((a, i) => !a.startsWith("--") && !(i > 0 && args[i - 1].startsWith("--")))
  ?? path.join(here, "..", "..", "target", "plugins", "as-summary.wasm");
const BATCH = opt("--batch", 1000);
const CALLS = opt("--calls", 2000);

const goldenDir = path.join(here, "..", "..", "plugin-sdk", "golden");
const samples = fs.readdirSync(goldenDir).filter((f) => f.endsWith(".bin")).sort()
  .flatMap((f) => splitBatch(fs.readFileSync(path.join(goldenDir, f))));
const batch = joinBatch(Array.from({ length: BATCH }, (_, i) => samples[i % samples.length]));

const p = await Plugin.load(wasm);
let lines = 0, last = "";
p.onLog = (_level, line) => { lines++; last = line; };
const r = p.init(process.env.BENCH_CONFIG ?? `{"meter":"cpu"}`);
if (r.status !== 0) throw new Error(`init: ${JSON.stringify(r)}`);

// Returns [wall ns/sample, CPU ns/sample]. On a shared, loaded machine wall time
// includes time spent waiting for a core; CPU time (user + sys of this process) does not.
function run(withCopy) {
  const e = p.exports;
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  if (withCopy) {
    for (let i = 0; i < CALLS; i++) {
      const ptr = e.collector_alloc(batch.length) >>> 0;
      new Uint8Array(e.memory.buffer, ptr, batch.length).set(batch);
      if (e.collector_dispatch(ptr, batch.length) !== 0) throw new Error(p.error);
    }
  } else {
    // The buffer keeps the batch between calls (the SDK reuses it), so this is decode only.
    const ptr = e.collector_alloc(batch.length) >>> 0;
    new Uint8Array(e.memory.buffer, ptr, batch.length).set(batch);
    for (let i = 0; i < CALLS; i++) {
      if (e.collector_alloc(batch.length) >>> 0 !== ptr) throw new Error("buffer moved");
      if (e.collector_dispatch(ptr, batch.length) !== 0) throw new Error(p.error);
    }
  }
  const wall = Number(process.hrtime.bigint() - t0);
  const c = process.cpuUsage(c0);
  return [wall / (CALLS * BATCH), ((c.user + c.system) * 1000) / (CALLS * BATCH)];
}

const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
const fmt = (xs) => `median ${median(xs).toFixed(1)}, min ${Math.min(...xs).toFixed(1)}`;
run(true); run(false); // warm up (tier-up to optimized code)
const RUNS = opt("--runs", 9);
const copy = [], nocopy = [];
for (let k = 0; k < RUNS; k++) { copy.push(run(true)); nocopy.push(run(false)); }
const load = fs.existsSync("/proc/loadavg") ? fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0] : "?";
console.log(`${path.basename(wasm)}: batch ${BATCH} samples, ${batch.length} bytes (${(batch.length / BATCH).toFixed(0)} B/sample), ${RUNS} runs of ${CALLS} calls, node ${process.version}, load average ${load}`);
console.log(`  alloc + copy + dispatch: CPU ${fmt(copy.map((x) => x[1]))} ns/sample; wall ${fmt(copy.map((x) => x[0]))}`);
console.log(`  dispatch only:           CPU ${fmt(nocopy.map((x) => x[1]))} ns/sample; wall ${fmt(nocopy.map((x) => x[0]))}`);
console.log(`  last log line: ${last}`);
