// Decoding of ABI v1 batches (docs/ABI.md, section 9) into Ceilometer's sample
// objects, for plugins built by componentize-js (docs/plugins-javascript.md).
//
// Plain JavaScript over a DataView: componentize-js embeds SpiderMonkey
// (StarlingMonkey) and runs it interpreted, so the decoder does little per
// byte. Every length is checked against the bytes that remain, nesting is
// capped at 63 levels below a field (MAX_DEPTH), and a batch must end exactly
// after its last sample: a malformed batch throws a DecodeError with the byte
// offset.
//
// Numbers: an integer within ±2^53 is a Number, a larger one a BigInt (exact:
// u64 and i64 extremes survive); a float is a Number. JavaScript has one
// Number type, so 512 and 512.0 look alike here.

/** Levels of lists and maps a field's value may hold (ABI v1, section 9.7). */
export const MAX_DEPTH = 63;

/** A batch that does not follow ABI v1; `offset` is where it went wrong. */
export class DecodeError extends Error {
  constructor(offset, why) {
    super(`at byte ${offset}: ${why}`);
    this.name = 'DecodeError';
    this.offset = offset;
  }
}

const TWO32 = 4294967296;
const utf8 = new TextDecoder('utf-8', { fatal: true });

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.end = bytes.byteLength;
  }

  fail(why, at = this.pos) {
    throw new DecodeError(at, why);
  }

  take(n) {
    const p = this.pos;
    if (n > this.end - p) this.fail(`${n} bytes needed, ${this.end - p} left`);
    this.pos = p + n;
    return p;
  }

  flag() {
    const p = this.take(1);
    const b = this.bytes[p];
    if (b > 1) this.fail(`flag byte ${b} is not 0 or 1`, p);
    return b === 1;
  }

  u32() {
    return this.view.getUint32(this.take(4), true);
  }

  // A u64 as a Number when it is below 2^53, else a BigInt.
  u64() {
    const p = this.take(8);
    const lo = this.view.getUint32(p, true);
    const hi = this.view.getUint32(p + 4, true);
    if (hi < 0x200000) return hi * TWO32 + lo;
    return this.view.getBigUint64(p, true);
  }

  i64() {
    const p = this.take(8);
    const lo = this.view.getUint32(p, true);
    const hi = this.view.getInt32(p + 4, true);
    if (hi >= -0x200000 && hi < 0x200000) return hi * TWO32 + lo;
    return this.view.getBigInt64(p, true);
  }

  f64() {
    return this.view.getFloat64(this.take(8), true);
  }

  // A length, checked against what is left before anything is built.
  length() {
    const at = this.pos;
    const n = this.u64();
    const left = this.end - this.pos;
    if (typeof n === 'bigint' || n > left) {
      this.fail(`length ${n} is more than the ${left} bytes left`, at);
    }
    return n;
  }

  string() {
    const n = this.length();
    const p = this.pos;
    this.pos = p + n;
    try {
      return utf8.decode(this.bytes.subarray(p, p + n));
    } catch (e) {
      return this.fail('invalid UTF-8', p);
    }
  }

  number() {
    const at = this.pos;
    const tag = this.u32();
    if (tag === 2) return this.f64();
    if (tag === 0) return this.i64();
    if (tag === 1) return this.u64();
    return this.fail(`unknown Number tag ${tag}`, at);
  }

  value(depth) {
    const at = this.pos;
    const tag = this.u32();
    switch (tag) {
      case 5:
        return this.string();
      case 4:
        return this.f64();
      case 2:
        return this.i64();
      case 8: {
        if (depth >= MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH} levels`, at);
        const n = this.length();
        const out = {};
        for (let i = 0; i < n; i++) {
          const k = this.string();
          out[k] = this.value(depth + 1);
        }
        return out;
      }
      case 0:
        return null;
      case 1:
        return this.flag();
      case 3:
        return this.u64();
      case 7: {
        if (depth >= MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH} levels`, at);
        const n = this.length();
        const out = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
        return out;
      }
      case 6: {
        const n = this.length();
        const p = this.pos;
        this.pos = p + n;
        return this.bytes.slice(p, p + n);
      }
      default:
        return this.fail(`unknown Value tag ${tag}`, at);
    }
  }

  // Absent: 00; null: 01 00; value: 01 01 <string>.
  optionalString(s, key) {
    if (this.flag()) s[key] = this.flag() ? this.string() : null;
  }
}

function sample(r) {
  const s = {};
  s.source = r.string();
  s.counter_name = r.string();
  s.counter_type = r.string();
  s.counter_unit = r.string();
  s.counter_volume = r.flag() ? r.number() : null;
  r.optionalString(s, 'user_id');
  r.optionalString(s, 'user_name');
  r.optionalString(s, 'project_id');
  r.optionalString(s, 'project_name');
  s.resource_id = r.string();
  s.timestamp = r.string();
  if (r.flag()) s.resource_metadata = r.value(0);
  s.message_id = r.string();
  if (r.flag()) s.monotonic_time = r.flag() ? r.number() : null;
  if (r.flag()) s.message_signature = r.string();
  const extra = r.length();
  for (let i = 0; i < extra; i++) {
    const k = r.string();
    s[k] = r.value(0);
  }
  return s;
}

/**
 * The samples of an ABI v1 batch (a Uint8Array), as Ceilometer's objects:
 * Ceilometer's keys (counter_name, counter_volume, resource_metadata...) in
 * the order Ceilometer builds them, then the extra keys in the order received.
 * A key the publisher did not send is absent; null stays null.
 */
export function decodeBatch(batch) {
  const r = new Reader(batch);
  const count = r.u64();
  // A sample takes at least 72 bytes (section 9.3): a count beyond what the
  // bytes can hold is refused before anything is built.
  if (typeof count === 'bigint' || count > Math.floor((r.end - r.pos) / 72)) {
    r.fail(`count ${count} does not fit in ${r.end} bytes`, 0);
  }
  const out = new Array(count);
  for (let i = 0; i < count; i++) out[i] = sample(r);
  if (r.pos !== r.end) r.fail(`${r.end - r.pos} bytes after the last sample`);
  return out;
}
