// A growable byte buffer outside the GC heap: build log lines, files or network
// payloads without allocating a string per piece. Reuse one writer (reset() it)
// instead of making a new one per batch.

import { writeF64, F64_BUFFER_BYTES } from "./ryu";
import { encodeUtf8, utf8Length } from "./utf8";

/** Digits of a u64 at `out` (at most 20); returns the count. */
function writeU64Digits(out: usize, v: u64): i32 {
  // Write backwards into a 20-byte window, then move to the front.
  let n: i32 = 0;
  const tmp = out + 20;
  do {
    const q = v / 10;
    store<u8>(tmp - <usize>(++n), <u8>(0x30 + <u32>(v - q * 10)));
    v = q;
  } while (v != 0);
  memory.copy(out, tmp - <usize>n, <usize>n);
  return n;
}

export class ByteWriter {
  /** Start of the bytes written so far (moves when the buffer grows). */
  ptr: usize = 0;
  /** Bytes written so far. */
  length: usize = 0;
  /** Bytes the buffer holds before it must grow. */
  capacity: usize = 0;

  constructor(capacity: i32 = 256) {
    const cap = <usize>max(capacity, 64);
    this.ptr = heap.alloc(cap);
    this.capacity = cap;
  }

  /** Forgets the content, keeps the buffer. */
  reset(): this {
    this.length = 0;
    return this;
  }

  /** Makes room for `n` more bytes and returns where they go (valid until the next write). */
  reserve(n: usize): usize {
    const need = this.length + n;
    if (need > this.capacity) {
      let cap = this.capacity << 1;
      if (cap < need) cap = need;
      this.ptr = heap.realloc(this.ptr, cap);
      this.capacity = cap;
    }
    return this.ptr + this.length;
  }

  /** Appends one byte. */
  byte(b: u32): this {
    store<u8>(this.reserve(1), <u8>b);
    this.length += 1;
    return this;
  }

  /** Appends `len` raw bytes from `src`. */
  bytes(src: usize, len: usize): this {
    memory.copy(this.reserve(len), src, len);
    this.length += len;
    return this;
  }

  /** Appends `s` as UTF-8, unescaped (lone surrogates become U+FFFD). */
  text(s: string): this {
    const p = this.reserve(utf8Length(s));
    this.length += encodeUtf8(s, p);
    return this;
  }

  /** Appends a signed integer in decimal. */
  int(v: i64): this {
    const p = this.reserve(21);
    let n: i32 = 0;
    if (v < 0) {
      store<u8>(p, 0x2d);
      n = 1 + writeU64Digits(p + 1, <u64>(-v)); // -i64.MIN wraps to 2^63 as u64: correct
    } else {
      n = writeU64Digits(p, <u64>v);
    }
    this.length += <usize>n;
    return this;
  }

  /** Appends an unsigned integer in decimal. */
  uint(v: u64): this {
    this.length += <usize>writeU64Digits(this.reserve(20), v);
    return this;
  }

  /**
   * Appends a float as the shortest text that reads back as the same f64, always
   * with a `.` or an exponent: `512.0`, `-0.0`, `0.1`, `1e-5`, `1e16` (Rust's `{:?}`);
   * `NaN`, `Infinity`, `-Infinity` for non-finite values.
   */
  float(v: f64): this {
    this.length += <usize>writeF64(this.reserve(<usize>F64_BUFFER_BYTES), v);
    return this;
  }

  /** Appends `true` or `false`. */
  bool(v: bool): this {
    return this.text(v ? "true" : "false");
  }

  /** The content decoded as a string (allocates). */
  toString(): string {
    return String.UTF8.decodeUnsafe(this.ptr, this.length, false);
  }

  /** Frees the buffer; the writer must not be used afterwards. */
  dispose(): void {
    heap.free(this.ptr);
    this.ptr = 0;
    this.length = 0;
    this.capacity = 0;
  }
}

/** Formats a float as {@link ByteWriter.float} does (allocates a string). */
export function formatF64(v: f64): string {
  const buf = memory.data(48);
  const n = writeF64(buf, v);
  return String.UTF8.decodeUnsafe(buf, <usize>n, false);
}
