// Node.js stand-in for the collector host, for tests and benchmarks of wasm plugins:
// instantiates a module with the host's imports (collector.log, collector.set_error;
// no WASI), and calls collector_alloc + collector_init / collector_dispatch exactly
// as docs/ABI.md describes. Also a JS batch walker that finds sample boundaries
// (independently of the wasm decoder) to assemble large batches from golden ones.

import fs from "node:fs";

const utf8 = new TextDecoder("utf-8");

export class Plugin {
  /** @param {string} wasmPath */
  static async load(wasmPath) {
    const p = new Plugin();
    p.module = await WebAssembly.compile(fs.readFileSync(wasmPath));
    for (const imp of WebAssembly.Module.imports(p.module)) {
      if (imp.module !== "collector" || !["log", "set_error"].includes(imp.name)) {
        throw new Error(`${wasmPath}: import ${imp.module}.${imp.name} is not allowed by ABI v1`);
      }
    }
    const exports = WebAssembly.Module.exports(p.module).map((e) => `${e.name}:${e.kind}`);
    for (const need of ["memory:memory", "collector_abi_version_1:function", "collector_alloc:function",
      "collector_init:function", "collector_dispatch:function"]) {
      if (!exports.includes(need)) throw new Error(`${wasmPath}: missing export ${need}`);
    }
    await p.instantiate();
    return p;
  }

  async instantiate() {
    this.logs = [];
    this.error = null;
    this.onLog = null;
    const read = (ptr, len) => {
      const mem = new Uint8Array(this.exports.memory.buffer);
      ptr >>>= 0; len >>>= 0;
      if (ptr + Math.min(len, 1 << 20) > mem.length) throw new Error("plugin passed a buffer outside its memory");
      return utf8.decode(mem.subarray(ptr, ptr + Math.min(len, 1 << 20)));
    };
    const instance = await WebAssembly.instantiate(this.module, {
      collector: {
        log: (level, ptr, len) => {
          const line = read(ptr, len);
          if (this.onLog) this.onLog(level, line);
          else this.logs.push([level, line]);
        },
        set_error: (ptr, len) => { this.error = read(ptr, len); },
      },
    });
    this.exports = instance.exports;
  }

  /** One host call: alloc, copy, call `fn`; returns {status, error}. Throws on a trap. */
  call(fn, bytes) {
    this.error = null;
    const e = this.exports;
    const ptr = e.collector_alloc(bytes.length) >>> 0;
    if (bytes.length > 0 && ptr === 0) throw new Error(`collector_alloc returned 0 for ${bytes.length} bytes`);
    if (ptr + bytes.length > e.memory.buffer.byteLength) throw new Error("collector_alloc returned a buffer outside memory");
    new Uint8Array(e.memory.buffer, ptr, bytes.length).set(bytes);
    const status = e[fn](ptr, bytes.length);
    return { status, error: this.error };
  }

  init(config) {
    const bytes = typeof config === "string" ? Buffer.from(config, "utf8") : config;
    return this.call("collector_init", bytes);
  }

  dispatch(bytes) {
    return this.call("collector_dispatch", bytes);
  }

  memoryBytes() {
    return this.exports.memory.buffer.byteLength;
  }
}

// ------------------------------------------------------------------ batch walking

const NUM = 12;

class Walker {
  constructor(buf) { this.b = buf; this.p = 0; this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength); }
  need(n) { if (this.p + n > this.b.length) throw new Error(`truncated at ${this.p}`); }
  u8() { this.need(1); return this.b[this.p++]; }
  u32() { this.need(4); const v = this.dv.getUint32(this.p, true); this.p += 4; return v; }
  u64() { this.need(8); const v = this.dv.getBigUint64(this.p, true); this.p += 8; return Number(v); }
  str() { const n = this.u64(); this.need(n); this.p += n; }
  skip(n) { this.need(n); this.p += n; }
  value() {
    const t = this.u32();
    if (t === 0) return;
    if (t === 1) return this.skip(1);
    if (t >= 2 && t <= 4) return this.skip(8);
    if (t === 5 || t === 6) return this.str();
    if (t === 7) { for (let n = this.u64(); n > 0; n--) this.value(); return; }
    if (t === 8) { for (let n = this.u64(); n > 0; n--) { this.str(); this.value(); } return; }
    throw new Error(`bad value tag ${t}`);
  }
  field(inner) { if (this.u8()) { if (this.u8()) inner(); } }
  sample() {
    for (let i = 0; i < 4; i++) this.str();
    if (this.u8()) this.skip(NUM);
    for (let i = 0; i < 4; i++) this.field(() => this.str());
    this.str(); this.str();
    if (this.u8()) this.value();
    this.str();
    this.field(() => this.skip(NUM));
    if (this.u8()) this.str();
    for (let n = this.u64(); n > 0; n--) { this.str(); this.value(); }
  }
}

/** The encoded bytes of each sample of a batch (Buffers viewing `batch`). */
export function splitBatch(batch) {
  const w = new Walker(batch);
  const count = w.u64();
  const out = [];
  for (let i = 0; i < count; i++) {
    const start = w.p;
    w.sample();
    out.push(batch.subarray(start, w.p));
  }
  if (w.p !== batch.length) throw new Error("trailing bytes");
  return out;
}

/** A batch of `samples` (Buffers of encoded samples). */
export function joinBatch(samples) {
  const header = Buffer.alloc(8);
  header.writeBigUInt64LE(BigInt(samples.length));
  return Buffer.concat([header, ...samples]);
}
