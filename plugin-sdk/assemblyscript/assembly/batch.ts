// Zero-copy reader of an ABI v1 batch (docs/ABI.md section 9), the AssemblyScript
// counterpart of the Rust SDK's `codec::BatchView`. Views point into the batch
// bytes; strings become AssemblyScript strings only when toString() is called.
//
// Every read is bounds-checked: malformed input gives an error (Batch.error), never
// a trap. Batch.next() checks one sample's structure (lengths, flag bytes, tags,
// nesting depth) and the UTF-8 of its top-level strings; strings inside metadata and
// extra values are checked when they are read (the host always sends valid UTF-8).

import { utf8Valid, utf8EqualsString, bytesEqual, fnv1a, decodeUtf8 } from "./utf8";

/**
 * Deepest nesting of one sample, in levels of dicts and lists, the sample dict itself
 * counting as level 1: the ABI's one nesting limit (docs/ABI.md section 9.7, the Rust
 * SDK's `collector_sdk::abi::MAX_NESTING`).
 */
export const MAX_NESTING: i32 = 64;

/**
 * Levels of lists and maps a sample field's value (`resource_metadata`, or an extra
 * key's value) may hold: MAX_NESTING less the sample dict itself (63, the Rust SDK's
 * `codec::MAX_DEPTH`). The field's own value, if a list or map, is level 1; empty
 * lists and maps count. In `Value.depth` terms: a list or map at depth >= MAX_DEPTH
 * is refused ("values nested too deeply"); a scalar may sit at depth MAX_DEPTH.
 */
export const MAX_DEPTH: i32 = MAX_NESTING - 1;

/** Whether an optional key was in the sample dict. */
export enum Presence {
  /** The key was not in the dict. */
  Absent = 0,
  /** The key was there with the value `null`. */
  Null = 1,
  /** The key was there with a value. */
  Present = 2,
}

/** Number tags (`counter_volume`, `monotonic_time`): section 9.5. */
export enum NumberKind {
  Int = 0,
  UInt = 1,
  Float = 2,
}

/** Value tags (`resource_metadata`, extra keys): section 9.6. */
export enum ValueKind {
  Null = 0,
  Bool = 1,
  Int = 2,
  UInt = 3,
  Float = 4,
  Str = 5,
  Bytes = 6,
  List = 7,
  Map = 8,
}

// ------------------------------------------------------------------ decoding core
// Functions take a position and the end of the readable range and return the new
// position, or 0 on failure (a batch never starts at address 0) after recording
// the reason and position in the two globals below.

// @ts-ignore: decorator
@lazy let failReason: string = "";
// @ts-ignore: decorator
@lazy let failAt: usize = 0;

function fail(at: usize, reason: string): usize {
  failAt = at;
  failReason = reason;
  return 0;
}

/** Reads a u64 length at p and checks that that many bytes follow it. Returns the length or -1. */
// @ts-ignore: decorator
@inline function lengthAt(p: usize, end: usize): i64 {
  if (end - p < 8) {
    fail(p, "unexpected end of batch");
    return -1;
  }
  const n = load<u64>(p);
  if (n > <u64>(end - p - 8)) {
    fail(p, n > 0xffffffff ? "length too large" : "unexpected end of batch");
    return -1;
  }
  return <i64>n;
}

/** A String at p: sets u (if given) and returns the position after it. */
function readStr(p: usize, end: usize, u: Utf8 | null, validate: bool): usize {
  const n = lengthAt(p, end);
  if (n < 0) return 0;
  const start = p + 8;
  if (validate && !utf8Valid(start, <usize>n)) return fail(p, "string is not UTF-8");
  if (u) {
    u.ptr = start;
    u.len = <usize>n;
    u.presence = Presence.Present;
  }
  return start + <usize>n;
}

/** An Option / Field flag byte at p: 0, 1, or -1 after fail(). */
// @ts-ignore: decorator
@inline function flagAt(p: usize, end: usize): i32 {
  if (p >= end) {
    fail(p, "unexpected end of batch");
    return -1;
  }
  const b = <i32>load<u8>(p);
  if (b > 1) {
    fail(p, "option tag is not 0 or 1");
    return -1;
  }
  return b;
}

/** A `Field<String>` at p (absent / null / value). */
function readFieldStr(p: usize, end: usize, u: Utf8): usize {
  const f = flagAt(p, end);
  if (f < 0) return 0;
  if (f == 0) {
    u.presence = Presence.Absent;
    u.ptr = p; u.len = 0;
    return p + 1;
  }
  const g = flagAt(p + 1, end);
  if (g < 0) return 0;
  if (g == 0) {
    u.presence = Presence.Null;
    u.ptr = p; u.len = 0;
    return p + 2;
  }
  return readStr(p + 2, end, u, true);
}

/** A Number (u32 tag + 8 bytes) at p. */
function readNumber(p: usize, end: usize, n: Num): usize {
  if (end - p < 12) return fail(p, "unexpected end of batch");
  const t = load<u32>(p);
  if (t > 2) return fail(p, "unknown number tag");
  n.kind = <NumberKind>t;
  n.bits = load<u64>(p, 4);
  n.presence = Presence.Present;
  return p + 12;
}

// Saved state of the outer open lists/maps of skipValue: entries left, and whether
// it is a map (whose entries start with an untagged key string).
const SKIP_LEFT = memory.data(8 * (MAX_DEPTH + 2));
const SKIP_IS_MAP = memory.data(MAX_DEPTH + 2);

/**
 * Steps over one Value at p (at nesting `depth`), checking its structure and bounds
 * (no list or map at depth MAX_DEPTH or deeper) but not the UTF-8 of nested strings.
 * Iterative, with the innermost list/map in locals: metadata is mostly flat maps of
 * strings, and a loop over them costs less than a call per value. At most
 * MAX_DEPTH - 1 outer lists/maps are saved below.
 */
function skipValue(p: usize, end: usize, depth: i32): usize {
  let level: i32 = 0; // open lists/maps around the value at p
  let left: u64 = 0;  // values still to read in the innermost one
  let isMap = false;
  while (true) {
    if (end - p < 4) return fail(p, "unexpected end of batch");
    const t = load<u32>(p);
    p += 4;
    if (t == ValueKind.Str || t == ValueKind.Bytes) {
      if (end - p < 8) return fail(p, "unexpected end of batch");
      const n = load<u64>(p);
      if (n > <u64>(end - p - 8)) return fail(p, n > 0xffffffff ? "length too large" : "unexpected end of batch");
      p += 8 + <usize>n;
    } else if (t == ValueKind.Null) {
      // no payload
    } else if (t == ValueKind.Int || t == ValueKind.UInt || t == ValueKind.Float) {
      if (end - p < 8) return fail(p, "unexpected end of batch");
      p += 8;
    } else if (t == ValueKind.Bool) {
      if (p >= end) return fail(p, "unexpected end of batch");
      if (load<u8>(p) > 1) return fail(p, "bool is not 0 or 1");
      p += 1;
    } else if (t == ValueKind.List || t == ValueKind.Map) {
      // level depth + level + 1 below the field: refused even when empty
      if (depth + level >= MAX_DEPTH) return fail(p, "values nested too deeply");
      if (end - p < 8) return fail(p, "unexpected end of batch");
      const count = load<u64>(p);
      p += 8;
      if (count != 0) {
        if (level > 0) {
          store<u64>(SKIP_LEFT + (<usize>(level - 1) << 3), left);
          store<u8>(SKIP_IS_MAP + <usize>(level - 1), u8(isMap));
        }
        ++level;
        left = count;
        isMap = t == ValueKind.Map;
      }
    } else {
      return fail(p - 4, "unknown value tag");
    }
    // Move to the next value: close finished lists/maps, then step over a map key.
    while (left == 0) {
      if (level <= 1) return p;
      --level;
      left = load<u64>(SKIP_LEFT + (<usize>(level - 1) << 3));
      isMap = load<u8>(SKIP_IS_MAP + <usize>(level - 1)) != 0;
    }
    --left;
    if (isMap) {
      if (end - p < 8) return fail(p, "unexpected end of batch");
      const n = load<u64>(p);
      if (n > <u64>(end - p - 8)) return fail(p, n > 0xffffffff ? "length too large" : "unexpected end of batch");
      p += 8 + <usize>n;
    }
  }
}

/** Steps over a u64 count of (String key, Value) entries at p, the values at nesting `itemDepth`. */
function skipEntries(p: usize, end: usize, itemDepth: i32): usize {
  if (end - p < 8) return fail(p, "unexpected end of batch");
  let count = load<u64>(p);
  p += 8;
  while (count--) {
    if (end - p < 8) return fail(p, "unexpected end of batch");
    const n = load<u64>(p);
    if (n > <u64>(end - p - 8)) return fail(p, n > 0xffffffff ? "length too large" : "unexpected end of batch");
    p += 8 + <usize>n;
    p = skipValue(p, end, itemDepth);
    if (!p) return 0;
  }
  return p;
}

/** Reads one Value at p into v (its payload stays in place; lists and maps are skipped over). */
function readValue(p: usize, end: usize, depth: i32, v: Value): usize {
  const after = skipValue(p, end, depth);
  if (!after) return 0;
  v.kind = <ValueKind>load<u32>(p);
  v.presence = Presence.Present;
  v.payload = p + 4;
  v.end = after;
  v.depth = depth;
  return after;
}

// ------------------------------------------------------------------ views

/**
 * A UTF-8 string inside the batch (`[ptr, ptr + len)`), with the presence of its key
 * for the optional fields. Valid while the batch is: copy it (toString()) to keep it.
 */
export class Utf8 {
  ptr: usize = 0;
  len: usize = 0;
  presence: Presence = Presence.Present;

  /** The key was there with a string value. */
  get isPresent(): bool { return this.presence == Presence.Present; }
  /** The key was there with `null`. */
  get isNull(): bool { return this.presence == Presence.Null; }
  /** The key was not in the sample. */
  get isAbsent(): bool { return this.presence == Presence.Absent; }
  /** Length in bytes (0 when absent or null). */
  get byteLength(): i32 { return <i32>this.len; }

  /** Decodes to an AssemblyScript string (allocates); "" when absent or null. */
  toString(): string {
    return this.len == 0 ? "" : decodeUtf8(this.ptr, this.len);
  }
  /** Same bytes as the UTF-8 encoding of `s`? Allocates nothing. False when absent or null. */
  equals(s: string): bool {
    return this.presence == Presence.Present && utf8EqualsString(this.ptr, this.len, s);
  }
  /** Same bytes as `[ptr, ptr + len)`? */
  equalsBytes(ptr: usize, len: usize): bool {
    return this.presence == Presence.Present && bytesEqual(this.ptr, this.len, ptr, len);
  }
  /** Same presence and bytes as another view? */
  equalsUtf8(other: Utf8): bool {
    return this.presence == other.presence && bytesEqual(this.ptr, this.len, other.ptr, other.len);
  }
  /** Starts with the UTF-8 encoding of `prefix`? */
  startsWith(prefix: string): bool {
    const n = <usize>String.UTF8.byteLength(prefix);
    return n <= this.len && utf8EqualsString(this.ptr, n, prefix);
  }
  /** 32-bit FNV-1a hash of the bytes. */
  hash(): u32 { return fnv1a(this.ptr, this.len); }
  /** Is the content valid UTF-8? (Checked by Batch.next() for the top-level fields.) */
  isValidUtf8(): bool { return utf8Valid(this.ptr, this.len); }
  /** A new view of the same bytes (for keeping past the next Batch.next()). */
  clone(): Utf8 {
    const u = new Utf8();
    u.ptr = this.ptr; u.len = this.len; u.presence = this.presence;
    return u;
  }
}

/** A tagged number: `counter_volume` (null or present) or `monotonic_time` (absent, null or present). */
export class Num {
  presence: Presence = Presence.Present;
  kind: NumberKind = NumberKind.Int;
  /** The 8 payload bytes: i64, u64 or f64 bits according to `kind`. */
  bits: u64 = 0;

  get isPresent(): bool { return this.presence == Presence.Present; }
  get isNull(): bool { return this.presence == Presence.Null; }
  get isAbsent(): bool { return this.presence == Presence.Absent; }
  /** An integer that fits i64 (`Int`). */
  get isInt(): bool { return this.kind == NumberKind.Int; }
  /** An integer above i64.MAX_VALUE (`UInt`). */
  get isUInt(): bool { return this.kind == NumberKind.UInt; }
  /** A float, even with an integral value such as 512.0 (`Float`). */
  get isFloat(): bool { return this.kind == NumberKind.Float; }

  /** The value as f64 (integers converted, rounding above 2^53); NaN when null or absent. */
  toF64(): f64 {
    if (this.presence != Presence.Present) return NaN;
    if (this.kind == NumberKind.Float) return reinterpret<f64>(this.bits);
    if (this.kind == NumberKind.UInt) return <f64>this.bits;
    return <f64><i64>this.bits;
  }
  /** The value as i64 (an `Int` exactly; a float truncated; a `UInt` wraps); 0 when null or absent. */
  toI64(): i64 {
    if (this.presence != Presence.Present) return 0;
    if (this.kind == NumberKind.Float) return <i64>reinterpret<f64>(this.bits);
    return <i64>this.bits;
  }
  /** The value as u64 (a `UInt` exactly); 0 when null or absent. */
  toU64(): u64 {
    if (this.presence != Presence.Present) return 0;
    if (this.kind == NumberKind.Float) return <u64>reinterpret<f64>(this.bits);
    return this.bits;
  }
}

/**
 * A metadata or extra value inside the batch. Scalars are read from the batch when
 * asked for; lists and maps are iterated lazily (items(), entries()) or searched
 * (at(), get()). `presence` is Absent only for a sample without `resource_metadata`.
 */
export class Value {
  presence: Presence = Presence.Present;
  kind: ValueKind = ValueKind.Null;
  /** First byte after the u32 tag. */
  payload: usize = 0;
  /** First byte after the whole value. */
  end: usize = 0;
  /**
   * Nesting depth: 0 for a sample field's value (resource_metadata or an extra key's),
   * d + 1 for the items of a list or map at depth d. `Sample.extra` (the sample dict's
   * own entries) is -1, so that its values are at 0.
   */
  depth: i32 = 0;

  get isPresent(): bool { return this.presence == Presence.Present; }
  get isAbsent(): bool { return this.presence == Presence.Absent; }
  /** The value `null` (not the same as an absent key). */
  get isNull(): bool { return this.presence == Presence.Present && this.kind == ValueKind.Null; }
  get isBool(): bool { return this.present(ValueKind.Bool); }
  /** Int, UInt or Float. */
  get isNumber(): bool {
    return this.presence == Presence.Present && this.kind >= ValueKind.Int && this.kind <= ValueKind.Float;
  }
  get isInt(): bool { return this.present(ValueKind.Int); }
  get isUInt(): bool { return this.present(ValueKind.UInt); }
  get isFloat(): bool { return this.present(ValueKind.Float); }
  get isStr(): bool { return this.present(ValueKind.Str); }
  get isBytes(): bool { return this.present(ValueKind.Bytes); }
  get isList(): bool { return this.present(ValueKind.List); }
  get isMap(): bool { return this.present(ValueKind.Map); }

  private present(k: ValueKind): bool {
    return this.presence == Presence.Present && this.kind == k;
  }

  /** Items of a list, entries of a map, bytes of a Str/Bytes; 0 otherwise. */
  get length(): i32 {
    if (this.presence != Presence.Present) return 0;
    switch (this.kind) {
      case ValueKind.Str:
      case ValueKind.Bytes:
      case ValueKind.List:
      case ValueKind.Map: return <i32>load<u64>(this.payload);
      default: return 0;
    }
  }

  asBool(): bool {
    return this.present(ValueKind.Bool) && load<u8>(this.payload) != 0;
  }
  /** Int exactly, UInt wrapped, Float truncated; 0 for other kinds. */
  asI64(): i64 {
    if (!this.isNumber) return 0;
    if (this.kind == ValueKind.Float) return <i64>load<f64>(this.payload);
    return load<i64>(this.payload);
  }
  /** UInt exactly, Int wrapped, Float truncated; 0 for other kinds. */
  asU64(): u64 {
    if (!this.isNumber) return 0;
    if (this.kind == ValueKind.Float) return <u64>load<f64>(this.payload);
    return load<u64>(this.payload);
  }
  /** Any number as f64; NaN for other kinds. */
  asF64(): f64 {
    if (!this.isNumber) return NaN;
    if (this.kind == ValueKind.Float) return load<f64>(this.payload);
    if (this.kind == ValueKind.UInt) return <f64>load<u64>(this.payload);
    return <f64>load<i64>(this.payload);
  }
  /** A view of a Str or Bytes value's bytes (a new Utf8 object); null for other kinds. */
  asUtf8(): Utf8 | null {
    if (this.presence != Presence.Present || (this.kind != ValueKind.Str && this.kind != ValueKind.Bytes)) return null;
    const u = new Utf8();
    u.ptr = this.payload + 8;
    u.len = <usize>load<u64>(this.payload);
    return u;
  }
  /** Does this Str value equal `s`? Allocates nothing. */
  equals(s: string): bool {
    return this.present(ValueKind.Str) && utf8EqualsString(this.payload + 8, <usize>load<u64>(this.payload), s);
  }
  /** The text of a Str or Bytes value (invalid UTF-8 replaced); "" for other kinds. */
  toString(): string {
    if (this.presence != Presence.Present || (this.kind != ValueKind.Str && this.kind != ValueKind.Bytes)) return "";
    return decodeUtf8(this.payload + 8, <usize>load<u64>(this.payload));
  }

  /** Iterates the items of a list (an empty iterator for other kinds). */
  items(): ListIter {
    const it = new ListIter();
    if (this.present(ValueKind.List)) {
      it.pos = this.payload + 8;
      it.end = this.end;
      it.left = <i32>load<u64>(this.payload);
      it.depth = this.depth + 1;
    }
    return it;
  }
  /** Iterates the entries of a map in the order received (an empty iterator for other kinds). */
  entries(): MapIter {
    const it = new MapIter();
    if (this.present(ValueKind.Map)) {
      it.pos = this.payload + 8;
      it.end = this.end;
      it.left = <i32>load<u64>(this.payload);
      it.depth = this.depth + 1;
    }
    return it;
  }
  /** The list item at `index`, or null. */
  at(index: i32): Value | null {
    if (index < 0) return null;
    const it = this.items();
    let i = 0;
    while (it.next()) {
      if (i++ == index) return it.value;
    }
    return null;
  }
  /** The value of the first entry whose key equals `key`, or null (also for non-maps). */
  get(key: string): Value | null {
    const it = this.entries();
    while (it.next()) {
      if (it.key.equals(key)) return it.value;
    }
    return null;
  }
}

/** Iterator over a list: `while (it.next()) use(it.value)`. `it.value` is reused: clone what you keep. */
export class ListIter {
  value: Value = new Value();
  index: i32 = -1;
  /** Set when an item could not be read (never for batches from the host). */
  failed: bool = false;
  pos: usize = 0;
  end: usize = 0;
  left: i32 = 0;
  depth: i32 = 0;

  next(): bool {
    if (this.left <= 0 || this.failed) return false;
    const p = readValue(this.pos, this.end, this.depth, this.value);
    if (!p) {
      this.failed = true;
      return false;
    }
    this.pos = p;
    this.left--;
    this.index++;
    return true;
  }
}

/** Iterator over a map: `while (it.next()) use(it.key, it.value)`. Views are reused per step. */
export class MapIter {
  key: Utf8 = new Utf8();
  value: Value = new Value();
  index: i32 = -1;
  /** Set when an entry could not be read (never for batches from the host). */
  failed: bool = false;
  pos: usize = 0;
  end: usize = 0;
  left: i32 = 0;
  depth: i32 = 0;

  next(): bool {
    if (this.left <= 0 || this.failed) return false;
    let p = readStr(this.pos, this.end, this.key, false);
    if (p) p = readValue(p, this.end, this.depth, this.value);
    if (!p) {
      this.failed = true;
      return false;
    }
    this.pos = p;
    this.left--;
    this.index++;
    return true;
  }
}

/**
 * One sample, viewed in place: the sixteen fields of section 9.3 in their order.
 * The same Sample object is refilled by every Batch.next(): copy what you keep.
 */
export class Sample {
  source: Utf8 = new Utf8();
  counterName: Utf8 = new Utf8();
  counterType: Utf8 = new Utf8();
  counterUnit: Utf8 = new Utf8();
  /** Never absent: `null` (isNull) or a number. */
  counterVolume: Num = new Num();
  userId: Utf8 = new Utf8();
  userName: Utf8 = new Utf8();
  projectId: Utf8 = new Utf8();
  projectName: Utf8 = new Utf8();
  resourceId: Utf8 = new Utf8();
  timestamp: Utf8 = new Utf8();
  /** Absent, or a Value (normally a Map; `null` is a Value of kind Null). */
  resourceMetadata: Value = new Value();
  messageId: Utf8 = new Utf8();
  monotonicTime: Num = new Num();
  /** Absent or a string (never null). */
  messageSignature: Utf8 = new Utf8();
  /**
   * Every other top-level key, in the order received: always a Map (maybe empty), at
   * depth -1: its values are sample fields, at depth 0 like resource_metadata's.
   */
  extra: Value = new Value();
  /** Index of the sample in its batch. */
  index: i32 = -1;
  /** The sample's encoded bytes: `[start, end)` inside the batch. */
  start: usize = 0;
  end: usize = 0;
}

function readSample(p: usize, end: usize, s: Sample): usize {
  s.start = p;
  p = readStr(p, end, s.source, true); if (!p) return 0;
  p = readStr(p, end, s.counterName, true); if (!p) return 0;
  p = readStr(p, end, s.counterType, true); if (!p) return 0;
  p = readStr(p, end, s.counterUnit, true); if (!p) return 0;
  let f = flagAt(p, end); if (f < 0) return 0;
  p++;
  if (f == 0) {
    s.counterVolume.presence = Presence.Null;
  } else {
    p = readNumber(p, end, s.counterVolume); if (!p) return 0;
  }
  p = readFieldStr(p, end, s.userId); if (!p) return 0;
  p = readFieldStr(p, end, s.userName); if (!p) return 0;
  p = readFieldStr(p, end, s.projectId); if (!p) return 0;
  p = readFieldStr(p, end, s.projectName); if (!p) return 0;
  p = readStr(p, end, s.resourceId, true); if (!p) return 0;
  p = readStr(p, end, s.timestamp, true); if (!p) return 0;
  f = flagAt(p, end); if (f < 0) return 0;
  p++;
  if (f == 0) {
    s.resourceMetadata.presence = Presence.Absent;
    s.resourceMetadata.kind = ValueKind.Null;
    s.resourceMetadata.payload = p;
    s.resourceMetadata.end = p;
  } else {
    p = readValue(p, end, 0, s.resourceMetadata); if (!p) return 0;
  }
  p = readStr(p, end, s.messageId, true); if (!p) return 0;
  f = flagAt(p, end); if (f < 0) return 0;
  p++;
  if (f == 0) {
    s.monotonicTime.presence = Presence.Absent;
  } else {
    f = flagAt(p, end); if (f < 0) return 0;
    p++;
    if (f == 0) s.monotonicTime.presence = Presence.Null;
    else { p = readNumber(p, end, s.monotonicTime); if (!p) return 0; }
  }
  f = flagAt(p, end); if (f < 0) return 0;
  p++;
  if (f == 0) {
    s.messageSignature.presence = Presence.Absent;
    s.messageSignature.ptr = p;
    s.messageSignature.len = 0;
  } else {
    p = readStr(p, end, s.messageSignature, true); if (!p) return 0;
  }
  // Extra keys: a map without a tag; the view points its payload at the count. They
  // are the sample dict's own entries: their values are fields, at depth 0.
  const e = skipEntries(p, end, 0); if (!e) return 0;
  s.extra.presence = Presence.Present;
  s.extra.kind = ValueKind.Map;
  s.extra.payload = p;
  s.extra.end = e;
  s.extra.depth = -1;
  s.end = e;
  return e;
}

/**
 * A batch (section 9.2) viewed in place. Iterate with
 * `while (batch.next()) { const s = batch.sample; ... }`, then check `batch.error`:
 * next() returns false both at the end and on malformed input (including bytes left
 * over after the last sample).
 */
export class Batch {
  /** The batch bytes: `[ptr, ptr + byteLength)`. */
  ptr: usize = 0;
  byteLength: usize = 0;
  /** The sample count from the header (0 when the header itself is cut short). */
  count: u64 = 0;
  /** The current sample (refilled by next()). */
  readonly sample: Sample = new Sample();
  /** Why decoding stopped, or null. */
  error: string | null = null;
  /** Byte offset (from the start of the batch) where decoding stopped. */
  errorOffset: i32 = 0;
  private pos: usize = 0;
  private end: usize = 0;
  private left: u64 = 0;

  constructor(ptr: usize = 0, len: usize = 0) {
    this.reset(ptr, len);
  }

  /** Points this view at other bytes (the SDK reuses one Batch for every call). */
  reset(ptr: usize, len: usize): void {
    this.ptr = ptr;
    this.byteLength = len;
    this.end = ptr + len;
    this.rewind();
  }

  /** Starts the iteration over (for a second pass over the same batch). */
  rewind(): void {
    this.error = null;
    this.errorOffset = 0;
    this.sample.index = -1;
    if (this.byteLength < 8) {
      this.count = 0;
      this.left = 0;
      this.pos = this.ptr;
      this.setError(this.ptr + this.byteLength, "unexpected end of batch");
      return;
    }
    this.count = load<u64>(this.ptr);
    this.left = this.count;
    this.pos = this.ptr + 8;
  }

  /** Number of samples the header announces, as i32 (saturated). */
  get length(): i32 {
    return this.count > <u64>i32.MAX_VALUE ? i32.MAX_VALUE : <i32>this.count;
  }

  /** No error so far. */
  get ok(): bool { return this.error === null; }

  /** Advances to the next sample; false at the end or on an error (see `error`). */
  next(): bool {
    if (this.error !== null) return false;
    if (this.left == 0) {
      if (this.pos != this.end) this.setError(this.pos, "trailing bytes after the batch");
      this.pos = this.end;
      return false;
    }
    const p = readSample(this.pos, this.end, this.sample);
    if (!p) {
      this.setError(failAt, failReason);
      return false;
    }
    this.pos = p;
    this.left--;
    this.sample.index++;
    return true;
  }

  /** Reads every sample once to check the whole batch, then rewinds. True when it is valid. */
  validate(): bool {
    this.rewind();
    while (this.next()) {}
    const ok = this.error === null;
    const err = this.error;
    const off = this.errorOffset;
    this.rewind();
    if (!ok) {
      this.error = err;
      this.errorOffset = off;
    }
    return ok;
  }

  /** "batch decode error at byte N: REASON" (allocates), or "" without an error. */
  errorMessage(): string {
    const e = this.error;
    if (e === null) return "";
    return "batch decode error at byte " + this.errorOffset.toString() + ": " + e;
  }

  private setError(at: usize, reason: string): void {
    this.error = reason;
    this.errorOffset = <i32>(at - this.ptr);
  }
}
