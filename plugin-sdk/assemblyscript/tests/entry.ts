// Test entry: a plugin built on the SDK whose dispatch writes every sample as one
// JSON line into a buffer the Node driver (tests/run.mjs) reads back, plus a few
// exports for unit tests. The driver calls it exactly as the host does.

import {
  register, setError, reject, logInfo, logError, STATUS_OK,
  Batch, JsonWriter, ByteWriter, Utf8Set, parseJson, jsonError, formatF64, writeF64,
  utf8EqualsString, utf8Valid, decodeUtf8, ValueKind, MAX_NESTING, MAX_DEPTH,
  Header, httpEncode,
} from "../assembly/index";

export { collector_abi_version_1, collector_alloc, collector_init, collector_dispatch } from "../assembly/index";

const out = new JsonWriter(1 << 16);
// [start, end) byte offsets of each sample in the last batch (for building bench batches).
const bounds = new ByteWriter(1024);

function init(config: string): bool {
  const c = parseJson(config.length == 0 ? "{}" : config);
  if (c === null) {
    setError("config: " + jsonError());
    return false;
  }
  if (!c.isObject) {
    setError("config must be a JSON object, not " + c.kindName());
    return false;
  }
  if (c.getBool("fail")) {
    setError("init failed as asked");
    return false;
  }
  return true;
}

function dispatch(batch: Batch): i32 {
  out.reset();
  bounds.reset();
  while (batch.next()) {
    const s = batch.sample;
    out.sample(s).byte(0x0a);
    const b = bounds.reserve(8);
    store<u32>(b, <u32>(s.start - batch.ptr));
    store<u32>(b, <u32>(s.end - batch.ptr), 4);
    bounds.length += 8;
  }
  if (!batch.ok) return reject(batch.errorMessage());
  return STATUS_OK;
}

register(init, dispatch);

export function out_ptr(): usize { return out.ptr; }
export function out_len(): usize { return out.length; }
export function bounds_ptr(): usize { return bounds.ptr; }
export function bounds_len(): usize { return bounds.length; }

/** Formats a float into `out` (the driver compares it with its own Rust-style formatting). */
export function format_f64(x: f64): usize {
  out.reset();
  out.float(x);
  return out.length;
}

/** Writes one JSON line per sample, reading through the lazy accessors instead of JsonWriter.sample. */
export function summarize(ptr: usize, len: usize): i32 {
  const b = new Batch(ptr, len);
  let n = 0;
  while (b.next()) {
    const s = b.sample;
    const md = s.resourceMetadata;
    if (md.isMap) {
      const it = md.entries();
      while (it.next()) {
        n += it.key.byteLength;
      }
    }
    n++;
  }
  return b.ok ? n : -1;
}

// ------------------------------------------------------------------ unit tests

// @ts-ignore: decorator
@lazy let failures = 0;

function check(ok: bool, what: string): void {
  if (!ok) {
    failures++;
    logError("unit test failed: " + what);
  }
}

function bytesOf(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

/** Runs the unit tests; returns the number of failures (each one logged at ERROR). */
export function unit_tests(): i32 {
  failures = 0;

  // utf8EqualsString
  const cases = ["", "cpu", "José 🚀", "値", "«»", "a\u0000b"];
  for (let i = 0; i < cases.length; i++) {
    const b = bytesOf(cases[i]);
    for (let j = 0; j < cases.length; j++) {
      check(utf8EqualsString(changetype<usize>(b), b.byteLength, cases[j]) == (i == j), "utf8EqualsString " + i.toString() + "/" + j.toString());
    }
  }
  const cpuX = bytesOf("cpux");
  check(!utf8EqualsString(changetype<usize>(cpuX), 3 + 1, "cpu"), "prefix is not equal");

  // UTF-8 validation (Rust's rules): overlong, surrogate, > U+10FFFF, truncated
  const bad: u8[][] = [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80], [0xff]];
  for (let i = 0; i < bad.length; i++) {
    const a = bad[i];
    check(!utf8Valid(a.dataStart, a.length), "invalid UTF-8 case " + i.toString());
  }
  const good = bytesOf("ok é 値 🚀 long ascii run here");
  check(utf8Valid(changetype<usize>(good), good.byteLength), "valid UTF-8");
  const lossy: u8[] = [0x66, 0xff, 0x6f, 0xe2, 0x82];
  check(decodeUtf8(lossy.dataStart, lossy.length) == "f\uFFFDo\uFFFD", "lossy decode");

  // Utf8Set
  const set = new Utf8Set(2);
  const words = bytesOf("cpu memory cpu disk.read memory cpu x y z w v u t s r q p");
  const base = changetype<usize>(words);
  let start = 0;
  let added = 0;
  for (let i = 0; i <= words.byteLength; i++) {
    if (i == words.byteLength || load<u8>(base + <usize>i) == 0x20) {
      if (set.add(base + <usize>start, <usize>(i - start))) added++;
      start = i + 1;
    }
  }
  check(set.size == 14 && added == 14, "Utf8Set distinct count " + set.size.toString());
  check(set.has(base, 3) && !set.has(base, 2), "Utf8Set has");
  set.clear();
  check(set.size == 0 && !set.has(base, 3), "Utf8Set clear");

  // ByteWriter numbers
  const w = new ByteWriter(8);
  w.int(i64.MIN_VALUE).byte(0x20).int(i64.MAX_VALUE).byte(0x20).uint(u64.MAX_VALUE).byte(0x20).int(0).byte(0x20).int(-7);
  check(w.toString() == "-9223372036854775808 9223372036854775807 18446744073709551615 0 -7", "ByteWriter ints: " + w.toString());
  w.reset().float(512.0).byte(0x20).float(-0.0).byte(0x20).float(1e-5).byte(0x20).float(1e16).byte(0x20).float(NaN).byte(0x20).float(-Infinity);
  check(w.toString() == "512.0 -0.0 1e-5 1e16 NaN -Infinity", "ByteWriter floats: " + w.toString());
  check(formatF64(0.30000000000000004) == "0.30000000000000004", "formatF64");

  // JsonWriter.string escapes
  const j = new JsonWriter(4);
  j.string("q\"b\\n\n\r\t\u0001\u007f é 🚀");
  check(j.toString() == "\"q\\\"b\\\\n\\n\\r\\t\\u0001\\u007f é 🚀\"", "JsonWriter.string: " + j.toString());

  // parseJson
  const c = parseJson(" {\"meter\": \"cpu\", \"n\": 5, \"f\": 1.5e3, \"b\": true, \"z\": null, \"a\": [1, \"\\u00e9\\ud83d\\ude80\"], \"o\": {}} ");
  check(c !== null, "parseJson ok: " + jsonError());
  if (c !== null) {
    check(c.getString("meter") == "cpu", "getString");
    check(c.getNumber("n") == 5 && c.get("n")!.isInteger, "getNumber int");
    check(c.getNumber("f") == 1500 && !c.get("f")!.isInteger, "getNumber float");
    check(c.getBool("b") && c.get("z")!.isNull && c.get("o")!.isObject, "bool/null/object");
    check(c.get("a")!.items[1].str == "é🚀", "unicode escapes");
    check(c.get("missing") === null && c.getString("missing", "d") == "d", "missing key");
  }
  const badJson = ["", "{", "{\"a\"}", "{\"a\":1,}", "[1 2]", "01", "\"\\x\"", "{} x", "tru", "\"a\u0001\""];
  for (let i = 0; i < badJson.length; i++) {
    check(parseJson(badJson[i]) === null && jsonError().length > 0, "parseJson must fail: " + badJson[i]);
  }

  // A hand-made batch: one sample with Bytes, NaN and infinities in its extra keys.
  // (Built by the driver; see run.mjs. Here: ValueKind constants match the ABI.)
  check(<i32>ValueKind.Bytes == 6 && <i32>ValueKind.Map == 8, "ValueKind tags");
  // The nesting limit of docs/ABI.md 9.7 (abi::MAX_NESTING; the boundaries: run.mjs).
  check(MAX_NESTING == 64 && MAX_DEPTH == 63, "MAX_NESTING 64, MAX_DEPTH 63");

  // writeF64 never writes more than F64_MAX_CHARS
  const buf = memory.data(64);
  check(writeF64(buf, -1.2345678901234567e-308) <= 24, "F64_MAX_CHARS");

  logInfo("unit tests done");
  return failures;
}

// The request encoding of collector.http_send (ABI 17.2), for run.mjs to compare.
const encoded = new ByteWriter(64);
export function http_encoded_ptr(): usize {
  encoded.reset();
  const body = new ByteWriter(8);
  body.text("xy");
  httpEncode(encoded, "e", "GET", "/", [new Header("a", "b")], body.ptr, body.length);
  body.dispose();
  return encoded.ptr;
}
export function http_encoded_len(): usize { return encoded.length; }
