// as-summary: an example dispatcher plugin in AssemblyScript. Per batch it logs one
// INFO line
//   as-summary samples=<n> meters=<distinct counter_name> volume_sum=<sum>
// and, when configured with {"meter": "NAME"}, a second one
//   as-summary meter=NAME count=<samples of that meter> sum=<their volume sum>
// Sums add counter_volume as f64 in batch order, skipping null volumes, and are
// written as the shortest text that reads back as the same f64, always with a `.`
// or an exponent (Rust's `{:?}`: 0.0, 6500439588218.5, 1e16, 1e-5).
//
// The batch is read in place: counter names are compared and counted as raw UTF-8
// bytes, so a batch costs no allocation.

import {
  collector_abi_version_1, collector_alloc, collector_init, collector_dispatch,
  register, setError, reject, logWriter, LOG_INFO, STATUS_OK,
  Batch, ByteWriter, Utf8Set, parseJson, jsonError, encodeUtf8, utf8Length,
} from "collector-plugin-sdk";

// The four ABI exports must be exported by the entry file. (Import, then export:
// asc does not resolve a package name in `export { ... } from "package"`.)
export { collector_abi_version_1, collector_alloc, collector_init, collector_dispatch };

/** The configured meter, as a string (for the log line) and as UTF-8 bytes (to compare). */
let meter: string | null = null;
let meterPtr: usize = 0;
let meterLen: usize = 0;

const meters = new Utf8Set(64);
const line = new ByteWriter(256);

function init(config: string): bool {
  const c = parseJson(config.length == 0 ? "{}" : config);
  if (c === null) {
    setError("as-summary: config: " + jsonError());
    return false;
  }
  if (!c.isObject) {
    setError("as-summary: config must be a JSON object, not " + c.kindName());
    return false;
  }
  for (let i = 0; i < c.keys.length; i++) {
    if (c.keys[i] != "meter") {
      setError("as-summary: unknown config key \"" + c.keys[i] + "\" (known: meter)");
      return false;
    }
  }
  meter = null;
  const m = c.get("meter");
  if (m !== null) {
    if (!m.isString) {
      setError("as-summary: config key \"meter\" must be a string, not " + m.kindName());
      return false;
    }
    meter = m.str;
    if (meterPtr) heap.free(meterPtr);
    meterLen = utf8Length(m.str);
    meterPtr = heap.alloc(max<usize>(meterLen, 1));
    encodeUtf8(m.str, meterPtr);
  }
  return true;
}

function dispatch(batch: Batch): i32 {
  const hasMeter = meter !== null;
  let samples: i64 = 0;
  let volumeSum: f64 = 0.0;
  let meterCount: i64 = 0;
  let meterSum: f64 = 0.0;
  meters.clear();

  const s = batch.sample;
  while (batch.next()) {
    samples++;
    const name = s.counterName;
    meters.add(name.ptr, name.len);
    const v = s.counterVolume;
    const present = v.isPresent;
    const x = present ? v.toF64() : 0.0;
    if (present) volumeSum += x;
    if (hasMeter && name.equalsBytes(meterPtr, meterLen)) {
      meterCount++;
      if (present) meterSum += x;
    }
  }
  if (!batch.ok) return reject("as-summary: " + batch.errorMessage());

  line.reset().text("as-summary samples=").int(samples)
    .text(" meters=").int(meters.size)
    .text(" volume_sum=").float(volumeSum);
  logWriter(LOG_INFO, line);
  if (hasMeter) {
    line.reset().text("as-summary meter=").text(meter!)
      .text(" count=").int(meterCount)
      .text(" sum=").float(meterSum);
    logWriter(LOG_INFO, line);
  }
  return STATUS_OK;
}

register(init, dispatch);
