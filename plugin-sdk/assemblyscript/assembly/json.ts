// Writes a sample as the JSON dict Ceilometer sent, by the rules of the Rust SDK's
// writer (plugin-sdk/src/json.rs, docs/ABI.md section 12): Ceilometer's key order,
// absent keys left out, `null` kept, integers without a decimal point, floats as
// the shortest round-trip text with a `.` or an exponent, NaN/Infinity as Python's
// json module writes them, strings escaped, invalid UTF-8 replaced with U+FFFD.

import { ByteWriter } from "./writer";
import { Sample, Value, ValueKind, Num, NumberKind, Utf8, MapIter, ListIter, Presence } from "./batch";
import { utf8SeqLen } from "./utf8";

const HEX = memory.data<u8>([0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66]);

/** 1 for bytes that need an escape in a JSON string: `"`, `\`, U+0000-U+001F, U+007F. */
const NEEDS_ESCAPE = memory.data<u8>([
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
]);

export class JsonWriter extends ByteWriter {
  private first: bool = true;

  constructor(capacity: i32 = 4096) {
    super(capacity);
  }

  /** A JSON string literal from UTF-8 bytes (escaped; invalid UTF-8 replaced with U+FFFD). */
  utf8String(ptr: usize, len: usize): JsonWriter {
    // Worst case: every byte becomes \u00XX (6 bytes) or U+FFFD (3 bytes).
    let out = this.reserve(len * 6 + 2);
    store<u8>(out++, 0x22);
    let p = ptr;
    const e = ptr + len;
    while (p < e) {
      const b = <u32>load<u8>(p);
      if (b < 0x80) {
        if (!load<u8>(NEEDS_ESCAPE + b)) {
          store<u8>(out++, <u8>b);
        } else {
          store<u8>(out++, 0x5c); // backslash
          if (b == 0x22 || b == 0x5c) store<u8>(out++, <u8>b);
          else if (b == 0x0a) store<u8>(out++, 0x6e); // n
          else if (b == 0x0d) store<u8>(out++, 0x72); // r
          else if (b == 0x09) store<u8>(out++, 0x74); // t
          else {
            store<u8>(out, 0x75); // u00XX
            store<u8>(out, 0x30, 1);
            store<u8>(out, 0x30, 2);
            store<u8>(out, load<u8>(HEX + (b >> 4)), 3);
            store<u8>(out, load<u8>(HEX + (b & 15)), 4);
            out += 5;
          }
        }
        ++p;
        continue;
      }
      const n = utf8SeqLen(p, e);
      if (n > 0) {
        memory.copy(out, p, <usize>n);
        out += <usize>n;
        p += <usize>n;
      } else {
        store<u8>(out, 0xef); store<u8>(out, 0xbf, 1); store<u8>(out, 0xbd, 2);
        out += 3;
        p += <usize>(-n);
      }
    }
    store<u8>(out++, 0x22);
    this.length = out - this.ptr;
    return this;
  }

  /** A JSON string literal from a view (written even when absent or null: check first). */
  utf8(u: Utf8): JsonWriter {
    return this.utf8String(u.ptr, u.len);
  }

  /** A JSON string literal from an AssemblyScript string. */
  string(s: string): JsonWriter {
    // Encode to UTF-8 at the end of the buffer, then escape it into place.
    const n = <usize>String.UTF8.byteLength(s);
    this.reserve(n * 7 + 2);
    const tmp = this.ptr + this.capacity - n;
    String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, tmp, false, String.UTF8.ErrorMode.REPLACE);
    // The escaped text (at most 6 bytes per input byte + 2 quotes) ends before tmp.
    return this.utf8String(tmp, n);
  }

  /** `null`. */
  null(): JsonWriter {
    this.text("null");
    return this;
  }

  /** A number as its tag says (integers without a decimal point); `null` when null or absent. */
  number(n: Num): JsonWriter {
    if (n.presence != Presence.Present) return this.null();
    if (n.kind == NumberKind.Int) { this.int(<i64>n.bits); return this; }
    if (n.kind == NumberKind.UInt) { this.uint(n.bits); return this; }
    this.float(reinterpret<f64>(n.bits));
    return this;
  }

  /** A metadata value, recursively; `null` when absent. */
  value(v: Value): JsonWriter {
    if (v.presence != Presence.Present) return this.null();
    switch (v.kind) {
      case ValueKind.Null: return this.null();
      case ValueKind.Bool: { this.bool(load<u8>(v.payload) != 0); return this; }
      case ValueKind.Int: { this.int(load<i64>(v.payload)); return this; }
      case ValueKind.UInt: { this.uint(load<u64>(v.payload)); return this; }
      case ValueKind.Float: { this.float(load<f64>(v.payload)); return this; }
      case ValueKind.Str:
      case ValueKind.Bytes: return this.utf8String(v.payload + 8, <usize>load<u64>(v.payload));
      case ValueKind.List: {
        this.byte(0x5b);
        const it: ListIter = v.items();
        while (it.next()) {
          if (it.index > 0) this.byte(0x2c);
          this.value(it.value);
        }
        this.byte(0x5d);
        return this;
      }
      case ValueKind.Map: {
        this.byte(0x7b);
        const it: MapIter = v.entries();
        while (it.next()) {
          if (it.index > 0) this.byte(0x2c);
          this.utf8(it.key);
      this.byte(0x3a);
          this.value(it.value);
        }
        this.byte(0x7d);
        return this;
      }
      default: return this.null();
    }
  }

  // Object helpers: beginObject(), key(...) + a value, ..., endObject().
  beginObject(): JsonWriter {
    this.first = true;
    this.byte(0x7b);
    return this;
  }
  /** Writes `,"name":` (without the comma for the first key of the object). */
  key(name: string): JsonWriter {
    if (!this.first) this.byte(0x2c);
    this.first = false;
    this.string(name);
    this.byte(0x3a);
    return this;
  }
  endObject(): JsonWriter {
    this.first = false;
    this.byte(0x7d);
    return this;
  }

  /** `,"name":` for a name that needs no escaping (the sample's own keys). */
  private plainKey(name: string): JsonWriter {
    if (!this.first) this.byte(0x2c);
    this.first = false;
    this.byte(0x22).text(name).byte(0x22).byte(0x3a);
    return this;
  }

  private strField(name: string, u: Utf8): void {
    if (u.presence == Presence.Absent) return;
    this.plainKey(name);
    if (u.presence == Presence.Null) this.null();
    else this.utf8(u);
  }

  /** One sample as a JSON object (no newline), keys in Ceilometer's order. */
  sample(s: Sample): JsonWriter {
    this.beginObject();
    this.strField("source", s.source);
    this.strField("counter_name", s.counterName);
    this.strField("counter_type", s.counterType);
    this.strField("counter_unit", s.counterUnit);
    this.plainKey("counter_volume").number(s.counterVolume);
    this.strField("user_id", s.userId);
    this.strField("user_name", s.userName);
    this.strField("project_id", s.projectId);
    this.strField("project_name", s.projectName);
    this.strField("resource_id", s.resourceId);
    this.strField("timestamp", s.timestamp);
    if (s.resourceMetadata.presence == Presence.Present) this.plainKey("resource_metadata").value(s.resourceMetadata);
    this.strField("message_id", s.messageId);
    if (s.monotonicTime.presence != Presence.Absent) this.plainKey("monotonic_time").number(s.monotonicTime);
    this.strField("message_signature", s.messageSignature);
    const it = s.extra.entries();
    while (it.next()) {
      if (!this.first) this.byte(0x2c);
      this.first = false;
      this.utf8(it.key);
      this.byte(0x3a);
      this.value(it.value);
    }
    return this.endObject();
  }
}
