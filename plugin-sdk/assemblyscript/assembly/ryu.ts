// Shortest round-trip f64 -> decimal: a port of Ryu's d2s (Ulf Adams, PLDI 2018,
// github.com/ulfjack/ryu, Apache-2.0/BSL-1.0), with Rust's tie rule (an exact tie
// rounds up), then laid out as Rust's `{:?}` does: the same text as the Rust SDK's
// JSON writer (plugin-sdk/src/json.rs). Checked against rustc's output.
//
// AssemblyScript's own f64.toString() is Grisu2: it round-trips but often does not
// pick the closest shortest digits (about a quarter of random doubles differ in the
// last digit), uses JavaScript's exponent rules (`1e+21`) and loses the sign of -0.

import { DOUBLE_POW5_INV_SPLIT, DOUBLE_POW5_SPLIT } from "./ryu_tables";

const DOUBLE_MANTISSA_BITS: i32 = 52;
const DOUBLE_BIAS: i32 = 1023;
const DOUBLE_POW5_INV_BITCOUNT: i32 = 125;
const DOUBLE_POW5_BITCOUNT: i32 = 125;

/** Decimal digits of the last {@link d2d} result and its base-10 exponent. */
// @ts-ignore: decorator
@lazy let fdMantissa: u64 = 0;
// @ts-ignore: decorator
@lazy let fdExponent: i32 = 0;

// @ts-ignore: decorator
@inline function pow5bits(e: i32): i32 {
  return <i32>(((<u32>e * 1217359) >>> 19) + 1);
}

// @ts-ignore: decorator
@inline function log10Pow2(e: i32): u32 {
  return (<u32>e * 78913) >>> 18;
}

// @ts-ignore: decorator
@inline function log10Pow5(e: i32): u32 {
  return (<u32>e * 732923) >>> 20;
}

function pow5Factor(value: u64): u32 {
  let count: u32 = 0;
  while (true) {
    const q = value / 5;
    const r = <u32>value - 5 * <u32>q;
    if (r != 0) break;
    value = q;
    ++count;
  }
  return count;
}

// @ts-ignore: decorator
@inline function multipleOfPowerOf5(value: u64, p: u32): bool {
  return pow5Factor(value) >= p;
}

// @ts-ignore: decorator
@inline function multipleOfPowerOf2(value: u64, p: u32): bool {
  return (value & ((<u64>1 << p) - 1)) == 0;
}

/** (m * mul) >> j for the 128-bit table entry at `mul`; 64 < j < 128, m < 2^55. */
function mulShift64(m: u64, mul: usize, j: i32): u64 {
  const lo = load<u64>(mul);
  const hi = load<u64>(mul, 8);
  // high 64 bits of m * lo
  const m0 = m & 0xffffffff, m1 = m >>> 32;
  const l0 = lo & 0xffffffff, l1 = lo >>> 32;
  const h0 = hi & 0xffffffff, h1 = hi >>> 32;

  let t = m0 * l0;
  let mid = m1 * l0 + (t >>> 32);
  let mid2 = m0 * l1 + (mid & 0xffffffff);
  const high0 = m1 * l1 + (mid >>> 32) + (mid2 >>> 32);

  // full 128 bits of m * hi
  t = m0 * h0;
  mid = m1 * h0 + (t >>> 32);
  mid2 = m0 * h1 + (mid & 0xffffffff);
  let high1 = m1 * h1 + (mid >>> 32) + (mid2 >>> 32);
  const low1 = (mid2 << 32) | (t & 0xffffffff);

  const sum = high0 + low1;
  if (sum < high0) ++high1;
  const dist = <u64>(j - 64);
  return (high1 << (64 - dist)) | (sum >>> dist);
}

/** Sets fdMantissa/fdExponent to the shortest decimal that reads back as the value. */
function d2d(ieeeMantissa: u64, ieeeExponent: u32): void {
  let e2: i32;
  let m2: u64;
  if (ieeeExponent == 0) {
    e2 = 1 - DOUBLE_BIAS - DOUBLE_MANTISSA_BITS - 2;
    m2 = ieeeMantissa;
  } else {
    e2 = <i32>ieeeExponent - DOUBLE_BIAS - DOUBLE_MANTISSA_BITS - 2;
    m2 = (<u64>1 << DOUBLE_MANTISSA_BITS) | ieeeMantissa;
  }
  const acceptBounds = (m2 & 1) == 0;

  const mv = 4 * m2;
  const mmShift: u32 = u32(ieeeMantissa != 0 || ieeeExponent <= 1);

  let vr: u64, vp: u64, vm: u64;
  let e10: i32;
  let vmIsTrailingZeros = false;
  let vrIsTrailingZeros = false;
  if (e2 >= 0) {
    const q = log10Pow2(e2) - u32(e2 > 3);
    e10 = <i32>q;
    const k = DOUBLE_POW5_INV_BITCOUNT + pow5bits(<i32>q) - 1;
    const i = -e2 + <i32>q + k;
    const mul = DOUBLE_POW5_INV_SPLIT + (<usize>q << 4);
    vr = mulShift64(4 * m2, mul, i);
    vp = mulShift64(4 * m2 + 2, mul, i);
    vm = mulShift64(4 * m2 - 1 - mmShift, mul, i);
    if (q <= 21) {
      const mvMod5 = <u32>mv - 5 * <u32>(mv / 5);
      if (mvMod5 == 0) {
        vrIsTrailingZeros = multipleOfPowerOf5(mv, q);
      } else if (acceptBounds) {
        vmIsTrailingZeros = multipleOfPowerOf5(mv - 1 - mmShift, q);
      } else {
        vp -= u64(multipleOfPowerOf5(mv + 2, q));
      }
    }
  } else {
    const q = log10Pow5(-e2) - u32(-e2 > 1);
    e10 = <i32>q + e2;
    const i = -e2 - <i32>q;
    const k = pow5bits(i) - DOUBLE_POW5_BITCOUNT;
    const j = <i32>q - k;
    const mul = DOUBLE_POW5_SPLIT + (<usize>i << 4);
    vr = mulShift64(4 * m2, mul, j);
    vp = mulShift64(4 * m2 + 2, mul, j);
    vm = mulShift64(4 * m2 - 1 - mmShift, mul, j);
    if (q <= 1) {
      vrIsTrailingZeros = true;
      if (acceptBounds) {
        vmIsTrailingZeros = mmShift == 1;
      } else {
        --vp;
      }
    } else if (q < 63) {
      vrIsTrailingZeros = multipleOfPowerOf2(mv, q);
    }
  }

  let removed: i32 = 0;
  let lastRemovedDigit: u32 = 0;
  let output: u64;
  if (vmIsTrailingZeros || vrIsTrailingZeros) {
    // General case (~0.7%).
    while (true) {
      const vpDiv10 = vp / 10;
      const vmDiv10 = vm / 10;
      if (vpDiv10 <= vmDiv10) break;
      const vmMod10 = <u32>vm - 10 * <u32>vmDiv10;
      const vrDiv10 = vr / 10;
      const vrMod10 = <u32>vr - 10 * <u32>vrDiv10;
      vmIsTrailingZeros = vmIsTrailingZeros && vmMod10 == 0;
      vrIsTrailingZeros = vrIsTrailingZeros && lastRemovedDigit == 0;
      lastRemovedDigit = vrMod10;
      vr = vrDiv10; vp = vpDiv10; vm = vmDiv10;
      ++removed;
    }
    if (vmIsTrailingZeros) {
      while (true) {
        const vmDiv10 = vm / 10;
        const vmMod10 = <u32>vm - 10 * <u32>vmDiv10;
        if (vmMod10 != 0) break;
        const vpDiv10 = vp / 10;
        const vrDiv10 = vr / 10;
        const vrMod10 = <u32>vr - 10 * <u32>vrDiv10;
        vrIsTrailingZeros = vrIsTrailingZeros && lastRemovedDigit == 0;
        lastRemovedDigit = vrMod10;
        vr = vrDiv10; vp = vpDiv10; vm = vmDiv10;
        ++removed;
      }
    }
    // An exact tie (the removed digits are exactly 50...0) rounds up, as Rust's
    // shortest formatting does (Ryu itself, JavaScript and Python round it to even:
    // 1216082608967510.25 is ...510.3 in Rust, ...510.2 in JavaScript).
    output = vr + u64((vr == vm && (!acceptBounds || !vmIsTrailingZeros)) || lastRemovedDigit >= 5);
  } else {
    // Common case (~99.3%).
    let roundUp = false;
    const vpDiv100 = vp / 100;
    const vmDiv100 = vm / 100;
    if (vpDiv100 > vmDiv100) {
      const vrDiv100 = vr / 100;
      const vrMod100 = <u32>vr - 100 * <u32>vrDiv100;
      roundUp = vrMod100 >= 50;
      vr = vrDiv100; vp = vpDiv100; vm = vmDiv100;
      removed += 2;
    }
    while (true) {
      const vpDiv10 = vp / 10;
      const vmDiv10 = vm / 10;
      if (vpDiv10 <= vmDiv10) break;
      const vrDiv10 = vr / 10;
      const vrMod10 = <u32>vr - 10 * <u32>vrDiv10;
      roundUp = vrMod10 >= 5;
      vr = vrDiv10; vp = vpDiv10; vm = vmDiv10;
      ++removed;
    }
    output = vr + u64(vr == vm || roundUp);
  }
  fdMantissa = output;
  fdExponent = e10 + removed;
}

function decimalLength17(v: u64): i32 {
  if (v >= 10000000000000000) return 17;
  if (v >= 1000000000000000) return 16;
  if (v >= 100000000000000) return 15;
  if (v >= 10000000000000) return 14;
  if (v >= 1000000000000) return 13;
  if (v >= 100000000000) return 12;
  if (v >= 10000000000) return 11;
  if (v >= 1000000000) return 10;
  if (v >= 100000000) return 9;
  if (v >= 10000000) return 8;
  if (v >= 1000000) return 7;
  if (v >= 100000) return 6;
  if (v >= 10000) return 5;
  if (v >= 1000) return 4;
  if (v >= 100) return 3;
  if (v >= 10) return 2;
  return 1;
}

/** Longest text {@link writeF64} produces (`-1.2345678901234567e-308`). */
export const F64_MAX_CHARS: i32 = 24;
/** Bytes {@link writeF64} may use at `out`: the text plus 17 bytes of scratch after it. */
export const F64_BUFFER_BYTES: i32 = 48;

/**
 * Writes `value` at `out` as ASCII and returns the number of bytes (at most
 * {@link F64_MAX_CHARS}; `out` must have {@link F64_BUFFER_BYTES} writable): the shortest text that reads back as the same f64, in
 * Rust's `{:?}` format: always with a `.` or an exponent (`512.0`, `-0.0`,
 * `209.767`, `1e-5`, `1e16`, `1.5e300`), scientific below 1e-4 and from 1e16 on.
 * NaN and infinities are written `NaN`, `Infinity`, `-Infinity`.
 */
export function writeF64(out: usize, value: f64): i32 {
  const bits = reinterpret<u64>(value);
  const sign = (bits >>> 63) != 0;
  const ieeeMantissa = bits & ((<u64>1 << DOUBLE_MANTISSA_BITS) - 1);
  const ieeeExponent = <u32>((bits >>> DOUBLE_MANTISSA_BITS) & 0x7ff);
  let p = out;
  if (ieeeExponent == 0x7ff) {
    if (ieeeMantissa != 0) {
      store<u8>(p, 0x4e); store<u8>(p, 0x61, 1); store<u8>(p, 0x4e, 2); // NaN
      return 3;
    }
    if (sign) { store<u8>(p, 0x2d); ++p; }
    // "Infinity"
    store<u64>(p, 0x7974696e69666e49);
    return <i32>(p + 8 - out);
  }
  if (sign) { store<u8>(p, 0x2d); ++p; }
  if (ieeeExponent == 0 && ieeeMantissa == 0) {
    store<u8>(p, 0x30); store<u8>(p, 0x2e, 1); store<u8>(p, 0x30, 2); // 0.0
    return <i32>(p + 3 - out);
  }
  d2d(ieeeMantissa, ieeeExponent);
  let mantissa = fdMantissa;
  const exp = fdExponent;
  const olength = decimalLength17(mantissa);
  // value = 0.d1d2...dn * 10^(olength + exp) = d1.d2...dn * 10^sci
  const sci = olength - 1 + exp;

  // Digits into a scratch area right after the longest possible output, then placed.
  const digits = out + F64_MAX_CHARS;
  for (let i = olength - 1; i >= 0; --i) {
    const q = mantissa / 10;
    store<u8>(digits + i, <u8>(0x30 + <u32>(mantissa - q * 10)));
    mantissa = q;
  }

  if (sci < -4 || sci >= 16) {
    store<u8>(p++, load<u8>(digits));
    if (olength > 1) {
      store<u8>(p++, 0x2e);
      memory.copy(p, digits + 1, olength - 1);
      p += olength - 1;
    }
    store<u8>(p++, 0x65); // e
    let e = sci;
    if (e < 0) { store<u8>(p++, 0x2d); e = -e; }
    if (e >= 100) { store<u8>(p++, <u8>(0x30 + e / 100)); e %= 100; store<u8>(p++, <u8>(0x30 + e / 10)); }
    else if (e >= 10) { store<u8>(p++, <u8>(0x30 + e / 10)); }
    store<u8>(p++, <u8>(0x30 + e % 10));
    return <i32>(p - out);
  }
  if (exp >= 0) {
    // integral: digits, exp zeros, ".0"
    memory.copy(p, digits, olength);
    p += olength;
    memory.fill(p, 0x30, exp);
    p += exp;
    store<u8>(p++, 0x2e);
    store<u8>(p++, 0x30);
    return <i32>(p - out);
  }
  const point = olength + exp; // digits before the point
  if (point > 0) {
    memory.copy(p, digits, point);
    p += point;
    store<u8>(p++, 0x2e);
    memory.copy(p, digits + point, olength - point);
    p += olength - point;
  } else {
    store<u8>(p++, 0x30);
    store<u8>(p++, 0x2e);
    memory.fill(p, 0x30, -point);
    p += -point;
    memory.copy(p, digits, olength);
    p += olength;
  }
  return <i32>(p - out);
}
