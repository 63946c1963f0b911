// UTF-8 helpers over raw memory: validation, lossy repair, comparison with an
// AssemblyScript (UTF-16) string and hashing, all without allocating.

/** Is `[ptr, ptr + len)` valid UTF-8 (the same rules as Rust's `str::from_utf8`)? */
export function utf8Valid(ptr: usize, len: usize): bool {
  // Fast path: all ASCII. OR the bytes together eight at a time (wasm loads need no
  // alignment; the last load may overlap the previous one).
  if (len >= 8) {
    let acc: u64 = 0;
    const last = ptr + len - 8;
    for (let p = ptr; p < last; p += 8) acc |= load<u64>(p);
    acc |= load<u64>(last);
    if ((acc & 0x8080808080808080) == 0) return true;
  } else {
    let acc: u32 = 0;
    for (let i: usize = 0; i < len; ++i) acc |= <u32>load<u8>(ptr + i);
    if (acc < 0x80) return true;
  }
  let p = ptr;
  const e = ptr + len;
  while (p < e) {
    if (load<u8>(p) < 0x80) {
      ++p;
      continue;
    }
    const n = utf8SeqLen(p, e);
    if (n <= 0) return false;
    p += <usize>n;
  }
  return true;
}

/**
 * Length (1 to 4) of the valid UTF-8 sequence starting at `p` (before `e`), or, if
 * there is none, minus the number of bytes to replace with one U+FFFD: the
 * longest prefix of a valid sequence, at least 1 (as Rust's `from_utf8_lossy`).
 */
export function utf8SeqLen(p: usize, e: usize): i32 {
  const b0 = <u32>load<u8>(p);
  if (b0 < 0x80) return 1;
  let need: i32;
  let lo: u32 = 0x80, hi: u32 = 0xbf; // allowed range of the second byte
  if (b0 < 0xc2) return -1;
  else if (b0 < 0xe0) need = 1;
  else if (b0 < 0xf0) {
    need = 2;
    if (b0 == 0xe0) lo = 0xa0;
    else if (b0 == 0xed) hi = 0x9f;
  } else if (b0 < 0xf5) {
    need = 3;
    if (b0 == 0xf0) lo = 0x90;
    else if (b0 == 0xf4) hi = 0x8f;
  } else return -1;
  let i: i32 = 1;
  while (i <= need) {
    const q = p + <usize>i;
    if (q >= e) return -i;
    const b = <u32>load<u8>(q);
    if (i == 1 ? (b < lo || b > hi) : (b & 0xc0) != 0x80) return -i;
    ++i;
  }
  return need + 1;
}

/** Do the UTF-8 bytes `[ptr, ptr + len)` spell exactly the string `s`? Allocates nothing. */
export function utf8EqualsString(ptr: usize, len: usize, s: string): bool {
  const n = <usize>s.length;
  // A UTF-16 unit becomes 1 to 3 UTF-8 bytes.
  if (len < n || len > n * 3) return false;
  let p = ptr;
  const e = ptr + len;
  let q = changetype<usize>(s);
  const qe = q + (n << 1);
  while (q < qe) {
    let c = <u32>load<u16>(q);
    q += 2;
    if (c < 0x80) {
      if (p >= e || <u32>load<u8>(p) != c) return false;
      ++p;
      continue;
    }
    if ((c & 0xfc00) == 0xd800 && q < qe && (<u32>load<u16>(q) & 0xfc00) == 0xdc00) {
      c = 0x10000 + ((c & 0x3ff) << 10) + (<u32>load<u16>(q) & 0x3ff);
      q += 2;
    } else if ((c & 0xf800) == 0xd800) {
      c = 0xfffd; // lone surrogate: never equal to valid UTF-8 except U+FFFD itself
    }
    if (c < 0x800) {
      if (p + 2 > e) return false;
      if (<u32>load<u8>(p) != (0xc0 | (c >> 6)) || <u32>load<u8>(p, 1) != (0x80 | (c & 0x3f))) return false;
      p += 2;
    } else if (c < 0x10000) {
      if (p + 3 > e) return false;
      if (<u32>load<u8>(p) != (0xe0 | (c >> 12)) || <u32>load<u8>(p, 1) != (0x80 | ((c >> 6) & 0x3f)) ||
          <u32>load<u8>(p, 2) != (0x80 | (c & 0x3f))) return false;
      p += 3;
    } else {
      if (p + 4 > e) return false;
      if (<u32>load<u8>(p) != (0xf0 | (c >> 18)) || <u32>load<u8>(p, 1) != (0x80 | ((c >> 12) & 0x3f)) ||
          <u32>load<u8>(p, 2) != (0x80 | ((c >> 6) & 0x3f)) || <u32>load<u8>(p, 3) != (0x80 | (c & 0x3f))) return false;
      p += 4;
    }
  }
  return p == e;
}

/** Do two byte ranges hold the same bytes? */
// @ts-ignore: decorator
@inline export function bytesEqual(a: usize, alen: usize, b: usize, blen: usize): bool {
  return alen == blen && (a == b || memory.compare(a, b, alen) == 0);
}

/** 32-bit FNV-1a hash of a byte range. */
export function fnv1a(ptr: usize, len: usize): u32 {
  let h: u32 = 0x811c9dc5;
  const e = ptr + len;
  for (let p = ptr; p < e; ++p) {
    h = (h ^ <u32>load<u8>(p)) * 0x01000193;
  }
  return h;
}

/** Number of UTF-8 bytes `s` encodes to (lone surrogates count as U+FFFD: 3 bytes). */
export function utf8Length(s: string): usize {
  return <usize>String.UTF8.byteLength(s);
}

/**
 * Encodes `s` as UTF-8 at `dst` (which must have {@link utf8Length} bytes) and returns
 * the byte count. Lone surrogates become U+FFFD.
 */
export function encodeUtf8(s: string, dst: usize): usize {
  return String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, dst, false, String.UTF8.ErrorMode.REPLACE);
}

/** Decodes UTF-8 bytes to a string; invalid sequences become U+FFFD. */
export function decodeUtf8(ptr: usize, len: usize): string {
  if (utf8Valid(ptr, len)) return String.UTF8.decodeUnsafe(ptr, len, false);
  // Repair into a temporary buffer first: decodeUnsafe assumes valid input.
  const tmp = heap.alloc(len * 3 + 4);
  let out = tmp;
  let p = ptr;
  const e = ptr + len;
  while (p < e) {
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
  const s = String.UTF8.decodeUnsafe(tmp, out - tmp, false);
  heap.free(tmp);
  return s;
}
