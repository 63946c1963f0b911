// `npm test`: builds tests/entry.ts against the SDK with each AssemblyScript runtime
// and checks it the way docs/ABI.md section 11 asks every SDK to:
//   - every plugin-sdk/golden/*.bin decodes, and its JSON lines pass compare.py;
//   - every strict prefix (and a trailing extra byte) is an error status, never a trap;
// plus float formatting against Rust's `{:?}` rules, Bytes/NaN/Infinity values,
// random corruption (no traps), init errors, memory stability and SDK unit tests.
// Ends with "N passed, N failed"; exit status 1 on any failure.

import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Plugin, splitBatch, joinBatch } from "./harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const goldenDir = path.resolve(root, "..", "golden");
const buildDir = path.join(root, "build");
const asc = path.join(root, "node_modules", ".bin", "asc");
const RUNTIMES = (process.env.AS_RUNTIMES || "minimal,incremental,stub").split(",");

let passed = 0, failed = 0;
function ok(cond, name, detail = "") {
  if (cond) { passed++; console.log(`ok - ${name}`); }
  else { failed++; console.log(`not ok - ${name}${detail ? `: ${detail}` : ""}`); }
  return cond;
}

// ------------------------------------------------------------------ build
fs.mkdirSync(buildDir, { recursive: true });
const wasmFor = {};
for (const rt of RUNTIMES) {
  const out = path.join(buildDir, `test-${rt}.wasm`);
  const t0 = Date.now();
  execFileSync(asc, ["tests/entry.ts", "--runtime", rt, "--use", "abort=", "-O3", "--noAssert", "-o", out],
    { cwd: root, stdio: "inherit" });
  console.log(`# built ${path.relative(root, out)} (${fs.statSync(out).size} bytes, ${Date.now() - t0} ms)`);
  wasmFor[rt] = out;
}

// ------------------------------------------------------------------ helpers
const golden = fs.readdirSync(goldenDir).filter((f) => f.endsWith(".bin")).sort();
ok(golden.length >= 4, `found ${golden.length} golden vectors in ${path.relative(root, goldenDir)}`);

function outputText(p) {
  const e = p.exports;
  return Buffer.from(e.memory.buffer, e.out_ptr() >>> 0, e.out_len() >>> 0).toString("utf8");
}

// Fifteen sample keys in Ceilometer's order (docs/ABI.md 9.3).
const ORDER = ["source", "counter_name", "counter_type", "counter_unit", "counter_volume", "user_id", "user_name",
  "project_id", "project_name", "resource_id", "timestamp", "resource_metadata", "message_id", "monotonic_time",
  "message_signature"];

// Rust's `{:?}` for f64. Digits: the shortest that read back as x, the closest of
// them; JavaScript rounds an exact tie to even, Rust away from zero
// (1216082608967510.25 is ...510.2 in JavaScript, ...510.3 in Rust), so an exact
// tie is redone here with BigInt.
function shortestDigits(x) {
  const [m, e] = x.toExponential().split("e");
  let digits = m.replace(".", "");
  let sci = parseInt(e, 10);
  // The exact binary value: x = mant * 2^exp2.
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, x);
  const bits = dv.getBigUint64(0);
  const be = Number((bits >> 52n) & 0x7ffn);
  let mant = bits & ((1n << 52n) - 1n);
  let exp2 = be === 0 ? -1074 : be - 1075;
  if (be !== 0) mant |= 1n << 52n;
  // exact = ed * 10^eexp
  let ed, eexp;
  if (exp2 >= 0) { ed = mant << BigInt(exp2); eexp = 0; } else { ed = mant * 5n ** BigInt(-exp2); eexp = exp2; }
  const es = ed.toString();
  const n = digits.length;
  if (es.length > n) {
    const keep = BigInt(es.slice(0, n));
    const rest = es.slice(n);
    const half = "5" + "0".repeat(rest.length - 1);
    if (rest === half) { // exact tie: Rust takes the upper candidate if it reads back as x
      let up = (keep + 1n).toString();
      let upSci = eexp + es.length - 1;
      if (up.length > n) { upSci += 1; }
      const text = `${up[0]}.${up.slice(1)}e${upSci}`;
      if (Number(text) === x) { digits = up.replace(/0+$/, "") || "0"; sci = upSci; }
    }
  }
  return [digits.replace(/0+$/, "") || "0", sci];
}

function rustDebug(x) {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [d, sci] = shortestDigits(Math.abs(x));
  if (sci < -4 || sci >= 16) return `${sign}${d[0]}${d.length > 1 ? "." + d.slice(1) : ""}e${sci}`;
  const exp = sci - (d.length - 1);
  if (exp >= 0) return `${sign}${d}${"0".repeat(exp)}.0`;
  const point = d.length + exp;
  if (point > 0) return `${sign}${d.slice(0, point)}.${d.slice(point)}`;
  return `${sign}0.${"0".repeat(-point)}${d}`;
}

// Deterministic PRNG (xorshift32) so failures can be reproduced.
function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
}

function u64le(n) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; }
function str(s) { const b = Buffer.from(s, "utf8"); return Buffer.concat([u64le(b.length), b]); }
function tag(t) { const b = Buffer.alloc(4); b.writeUInt32LE(t); return b; }
function f64(x) { const b = Buffer.alloc(8); b.writeDoubleLE(x); return b; }

// ------------------------------------------------------------------ per runtime
for (const rt of RUNTIMES) {
  console.log(`# runtime ${rt}`);
  const p = await Plugin.load(wasmFor[rt]);
  const imports = WebAssembly.Module.imports(p.module).map((i) => `${i.module}.${i.name}`);
  ok(imports.every((i) => i === "collector.log" || i === "collector.set_error"),
    `[${rt}] imports only collector.* (${imports.join(", ") || "none"})`);

  // unit tests inside the wasm
  const failures = p.exports.unit_tests();
  ok(failures === 0, `[${rt}] SDK unit tests`, p.logs.filter(([l]) => l === 1).map(([, m]) => m).join("; "));

  // dispatch before init is refused, not a trap
  let r = p.dispatch(fs.readFileSync(path.join(goldenDir, golden[1])));
  ok(r.status === 2 && /before a successful collector_init/.test(r.error), `[${rt}] dispatch before init is refused`, JSON.stringify(r));

  // init: errors, then success
  r = p.init(Buffer.from([0x7b, 0xff, 0x7d]));
  ok(r.status === 2 && r.error === "plugin config is not UTF-8", `[${rt}] config that is not UTF-8`, JSON.stringify(r));
  r = p.init("{not json");
  ok(r.status === 2 && /^config: invalid JSON at character 1/.test(r.error), `[${rt}] config that is not JSON`, JSON.stringify(r));
  r = p.init('{"fail": true}');
  ok(r.status === 2 && r.error === "init failed as asked", `[${rt}] init returning false`, JSON.stringify(r));
  r = p.init("");
  ok(r.status === 0, `[${rt}] empty config (collector check --config '')`, JSON.stringify(r));
  r = p.init("{}");
  ok(r.status === 0, `[${rt}] init {}`, JSON.stringify(r));

  // golden vectors
  for (const bin of golden) {
    const name = bin.replace(/\.bin$/, "");
    const bytes = fs.readFileSync(path.join(goldenDir, bin));
    const expected = JSON.parse(fs.readFileSync(path.join(goldenDir, `${name}.json`), "utf8"));
    r = p.dispatch(bytes);
    if (!ok(r.status === 0, `[${rt}] ${name}: dispatch OK`, JSON.stringify(r))) continue;
    const text = outputText(p);
    const cmp = spawnSync("python3", [path.join(goldenDir, "compare.py"), path.join(goldenDir, `${name}.json`)],
      { input: text, encoding: "utf8" });
    ok(cmp.status === 0, `[${rt}] ${name}: compare.py (${cmp.stdout.trim()})`, cmp.stderr);
    // Key order: Ceilometer's fifteen, then the extra keys as received.
    const lines = text.split("\n").filter((l) => l.length);
    const orderOk = lines.every((line, i) => {
      const keys = Object.keys(JSON.parse(line));
      const exp = ORDER.filter((k) => k in expected[i]).concat(Object.keys(expected[i]).filter((k) => !ORDER.includes(k)));
      return JSON.stringify(keys) === JSON.stringify(exp);
    });
    ok(orderOk, `[${rt}] ${name}: keys in Ceilometer's order, extra keys as received`);
    // The decoder's sample boundaries agree with an independent walker, and end at the last byte.
    const e = p.exports;
    const bounds = new Uint32Array(e.memory.buffer.slice(e.bounds_ptr() >>> 0, (e.bounds_ptr() >>> 0) + (e.bounds_len() >>> 0)));
    const js = splitBatch(bytes).map((s) => [s.byteOffset - bytes.byteOffset, s.byteOffset - bytes.byteOffset + s.length]);
    ok(JSON.stringify(Array.from(bounds)) === JSON.stringify(js.flat()) && (js.length === 0 || js.at(-1)[1] === bytes.length),
      `[${rt}] ${name}: ${js.length} samples, decoding ends at byte ${bytes.length}`);

    // Every strict prefix fails with an error status and a decode message.
    let bad = null;
    for (let cut = 0; cut < bytes.length && !bad; cut++) {
      try {
        const rr = p.dispatch(bytes.subarray(0, cut));
        if (rr.status !== 2 || !/^batch decode error at byte \d+: /.test(rr.error ?? "")) bad = `cut ${cut}: ${JSON.stringify(rr)}`;
      } catch (err) {
        bad = `cut ${cut}: trap ${err.message}`;
        await p.instantiate();
        p.init("{}");
      }
    }
    ok(!bad, `[${rt}] ${name}: all ${bytes.length} truncations give REJECT with a decode error`, bad);
    r = p.dispatch(Buffer.concat([bytes, Buffer.from([0])]));
    ok(r.status === 2 && /trailing bytes after the batch/.test(r.error), `[${rt}] ${name}: a trailing byte is an error`, JSON.stringify(r));
  }

  // Exact text of the edge values (the Rust writer's rules).
  r = p.dispatch(fs.readFileSync(path.join(goldenDir, "004-edge-values.bin")));
  const edge = outputText(p);
  for (const want of ['"counter_volume":18446744073709551615', '"user_id":null', '"neg":-9223372036854775808',
    '"zero_f":-0.0', '"tiny":1e-5', '"big":1e16', '"int_like_float":512.0', '"counter_volume":0.30000000000000004',
    '"quote\\"key":"line\\nbreak\\ttab\\\\ \\u0001"', '"monotonic_time":12345', '"monotonic_time":null',
    '"list":["a",1,2.5,null,[true,{"k":"v"}]]', '"сервер":"値"', '"user_name":"José 🚀"']) {
    ok(edge.includes(want), `[${rt}] 004 output contains ${want}`);
  }

  // Values JSON cannot carry in the golden files: Bytes (valid and not UTF-8), NaN, ±Infinity.
  const [minimal] = splitBatch(fs.readFileSync(path.join(goldenDir, "002-minimal.bin")));
  const special = Buffer.concat([
    minimal.subarray(0, minimal.length - 8),
    u64le(5),
    str("nan"), tag(4), f64(NaN),
    str("inf"), tag(4), f64(Infinity),
    str("ninf"), tag(4), f64(-Infinity),
    str("bytes"), tag(6), u64le(5), Buffer.from([0x66, 0xff, 0x6f, 0xe2, 0x82]),
    str("bytes_ok"), tag(6), str("héllo"),
  ]);
  r = p.dispatch(joinBatch([special]));
  const sp = outputText(p).trim();
  ok(r.status === 0 && sp.endsWith('"nan":NaN,"inf":Infinity,"ninf":-Infinity,"bytes":"f\uFFFDo\uFFFD","bytes_ok":"héllo"}'),
    `[${rt}] Bytes, NaN and infinities are written as Python's json reads them`, sp.slice(-120));

  // Nesting limit, the ABI's one (docs/ABI.md 9.7, abi::MAX_NESTING = 64 levels with the
  // sample dict): a resource_metadata or extra key's value holds at most 63 levels of
  // lists/maps (depths 0..62), empty ones included; 64 are refused.
  {
    // k nested lists (maps of one key "k" at odd levels when `maps`), the innermost
    // empty or holding one null.
    const nested = (k, withNull = false, maps = false) => Buffer.concat([
      ...Array.from({ length: k }, (_, i) => {
        const isMap = maps && i % 2 === 1, n = i + 1 < k || withNull ? 1 : 0;
        return Buffer.concat([tag(isMap ? 8 : 7), u64le(n), isMap && n ? str("k") : Buffer.alloc(0)]);
      }),
      withNull ? tag(0) : Buffer.alloc(0)]);
    const metaAt = 0x6a - 8; // resource_metadata flag of 002-minimal's sample (docs/ABI.md section 10)
    const withMeta = (v) => joinBatch([Buffer.concat([minimal.subarray(0, metaAt), Buffer.from([1]), v, minimal.subarray(metaAt + 1)])]);
    const withExtra = (v) => joinBatch([Buffer.concat([minimal.subarray(0, minimal.length - 8), u64le(1), str("deep"), v])]);
    const deep = (k, inner = "") => "[".repeat(k) + inner + "]".repeat(k);
    for (const [where, build, key] of [["resource_metadata", withMeta, "resource_metadata"], ["an extra key", withExtra, "deep"]]) {
      let a = p.dispatch(build(nested(63)));
      ok(a.status === 0 && JSON.parse(outputText(p))[key] !== undefined && outputText(p).includes(`"${key}":${deep(63)}`),
        `[${rt}] ${where} with 63 nested lists (the innermost empty) decodes and is written in full`, JSON.stringify(a));
      a = p.dispatch(build(nested(63, true)));
      ok(a.status === 0 && outputText(p).includes(`"${key}":${deep(63, "null")}`),
        `[${rt}] ${where} with 63 nested lists and a null in the innermost decodes`, JSON.stringify(a));
      a = p.dispatch(build(nested(63, true, true)));
      ok(a.status === 0 && JSON.parse(outputText(p))[key] !== undefined,
        `[${rt}] ${where} with 63 levels alternating list/map decodes`, JSON.stringify(a));
      a = p.dispatch(build(nested(64)));
      ok(a.status === 2 && /values nested too deeply/.test(a.error), `[${rt}] ${where} with 64 nested lists (the innermost empty) is refused`, JSON.stringify(a));
      a = p.dispatch(build(nested(64, true)));
      ok(a.status === 2 && /values nested too deeply/.test(a.error), `[${rt}] ${where} with 64 nested lists and a null is refused`, JSON.stringify(a));
      a = p.dispatch(build(nested(64, false, true)));
      ok(a.status === 2 && /values nested too deeply/.test(a.error), `[${rt}] ${where} with 64 levels alternating list/map is refused`, JSON.stringify(a));
    }
  }

  // Float formatting: Rust `{:?}` rules with the shortest round-trip digits.
  {
    const rand = rng(12345);
    const dv = new DataView(new ArrayBuffer(8));
    let bad = 0, first = "";
    // Fixed cases (from rustc's output), then random ones against rustDebug.
    const fixed = [[1216082608967510.25, "1216082608967510.3"], [-20792659952177.0625, "-20792659952177.063"],
      [0.30000000000000004, "0.30000000000000004"], [1e-5, "1e-5"], [1e16, "1e16"], [9999999999999998, "9999999999999998.0"],
      [1e-4, "0.0001"], [9.999999999999999e-5, "9.999999999999999e-5"], [5e-324, "5e-324"], [1.7976931348623157e308, "1.7976931348623157e308"],
      [18446744073709551615, "1.8446744073709552e19"], [6500439589507.512, "6500439589507.512"], [-0, "-0.0"], [100, "100.0"]];
    for (const [x, want] of fixed) {
      const n = p.exports.format_f64(x);
      const got = Buffer.from(p.exports.memory.buffer, p.exports.out_ptr() >>> 0, n).toString("latin1");
      if (got !== want || rustDebug(x) !== want) { if (!bad++) first = `${x}: got ${got}, reference ${rustDebug(x)}, want ${want}`; }
    }
    const N = 200000;
    for (let i = 0; i < N; i++) {
      let x;
      if (i % 4 === 3) x = Math.floor(rand() * 2 ** 50) / [2, 4, 8, 16, 32][i % 5]; // many exact ties
      else if (i % 3 === 0) { dv.setUint32(0, (rand() * 2 ** 32) >>> 0); dv.setUint32(4, (rand() * 2 ** 32) >>> 0); x = dv.getFloat64(0); }
      else if (i % 3 === 1) x = Math.round(rand() * 1e6) / 10 ** (i % 7);
      else x = (rand() - 0.5) * 10 ** (Math.floor(rand() * 44) - 22);
      const n = p.exports.format_f64(x);
      const got = Buffer.from(p.exports.memory.buffer, p.exports.out_ptr() >>> 0, n).toString("latin1");
      const want = rustDebug(x);
      if (got !== want && !(Number.isNaN(x) && got === "NaN")) { if (!bad++) first = `${x}: got ${got}, want ${want}`; }
    }
    ok(bad === 0, `[${rt}] ${fixed.length} fixed and ${N} random floats formatted as Rust's {:?}`, `${bad} mismatches, first ${first}`);
  }

  // Random corruption: never a trap.
  {
    const rand = rng(777);
    const sources = golden.map((g) => fs.readFileSync(path.join(goldenDir, g))).filter((b) => b.length > 8);
    let traps = 0, statuses = { 0: 0, 2: 0 }, first = "";
    for (let i = 0; i < 3000; i++) {
      const src = sources[i % sources.length];
      const b = Buffer.from(src);
      const flips = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < flips; k++) {
        const at = Math.floor(rand() * b.length);
        b[at] = rand() < 0.5 ? Math.floor(rand() * 256) : b[at] ^ (1 << Math.floor(rand() * 8));
      }
      try {
        const rr = p.dispatch(b);
        statuses[rr.status] = (statuses[rr.status] ?? 0) + 1;
      } catch (err) {
        if (!traps++) first = err.message;
        await p.instantiate();
        p.init("{}");
      }
    }
    ok(traps === 0, `[${rt}] 3000 corrupted batches: no trap (OK ${statuses[0]}, REJECT ${statuses[2]})`, first);
  }

  // Memory does not grow with the number of batches.
  {
    const batches = golden.map((g) => fs.readFileSync(path.join(goldenDir, g)));
    const big = joinBatch(Array.from({ length: 1000 }, (_, i) => splitBatch(batches[2])[i % 5]));
    const round = () => { for (const b of [...batches, big]) p.dispatch(b); };
    for (let i = 0; i < 50; i++) round();
    const mid = p.memoryBytes();
    for (let i = 0; i < 50; i++) round();
    const end = p.memoryBytes();
    if (rt === "stub") {
      // The stub runtime never frees: every iterator object (JsonWriter walks maps
      // with them) stays allocated. Plugins must use minimal or incremental.
      console.log(`# [stub] memory ${mid} -> ${end} bytes over 50 more rounds (stub never frees; not supported for plugins)`);
    } else {
      ok(end === mid, `[${rt}] memory stable over 100 rounds (${mid} -> ${end} bytes)`);
    }
  }
}

// ------------------------------------------------------------------ outbound HTTP
{
  // The encoding, as the Rust SDK and the host read it.
  const p = await Plugin.load(wasmFor[RUNTIMES[0]]);
  const e = p.exports;
  const ptr = e.http_encoded_ptr() >>> 0;
  const got = Buffer.from(e.memory.buffer, ptr, e.http_encoded_len() >>> 0);
  const want = Buffer.from([1, 0, 0, 0, 0x65, 3, 0, 0, 0, 0x47, 0x45, 0x54, 1, 0, 0, 0, 0x2f, 1, 0, 0, 0,
    1, 0, 0, 0, 0x61, 1, 0, 0, 0, 0x62, 2, 0, 0, 0, 0x78, 0x79]);
  ok(got.equals(want), "http request encoding (ABI 17.2)", got.toString("hex"));
  // The binding on the real host: `collector check` serves the endpoint and counts requests.
  const collector = path.resolve(root, "..", "..", "target", "debug", "collector");
  const out = path.join(buildDir, "http-plugin.wasm");
  execFileSync(asc, ["tests/http_plugin.ts", "--runtime", "incremental", "--use", "abort=", "-O3", "--noAssert", "-o", out],
    { cwd: root, stdio: "inherit" });
  if (ok(fs.existsSync(collector), `the daemon is built (${path.relative(root, collector)}; run make build)`)) {
    const r = spawnSync(collector, ["check", out, "--endpoint", "target"], { encoding: "utf8" });
    ok(r.status === 0 && /requests reached the local endpoint/.test(r.stdout),
      "collector check: the plugin's requests reached the local endpoint", r.stdout + r.stderr);
  }
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
