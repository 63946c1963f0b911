// JSON text for decoded samples. JSON.stringify refuses BigInt (the integers
// beyond ±2^53 that decodeBatch keeps exact), so a value holding one is
// written by hand, with the BigInt as its digits; everything else goes through
// the engine's JSON.stringify. Bytes (Uint8Array) are written as a list of
// numbers. As with JSON.stringify, -0 is written 0, and NaN and the
// infinities null.

function write(v, out) {
  switch (typeof v) {
    case 'bigint':
      out.push(v.toString());
      return;
    case 'object':
      if (v === null) {
        out.push('null');
      } else if (Array.isArray(v) || v instanceof Uint8Array) {
        out.push('[');
        for (let i = 0; i < v.length; i++) {
          if (i > 0) out.push(',');
          write(v[i], out);
        }
        out.push(']');
      } else {
        out.push('{');
        let first = true;
        for (const k of Object.keys(v)) {
          if (!first) out.push(',');
          first = false;
          out.push(JSON.stringify(k), ':');
          write(v[k], out);
        }
        out.push('}');
      }
      return;
    default:
      out.push(JSON.stringify(v) ?? 'null');
  }
}

function plain(key, v) {
  if (typeof v === 'bigint') throw new TypeError('bigint');
  if (v instanceof Uint8Array) return Array.from(v);
  return v;
}

/** `value` as JSON text; BigInts as their digits, bytes as lists of numbers. */
export function toJson(value) {
  try {
    return JSON.stringify(value, plain);
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
    const out = [];
    write(value, out);
    return out.join('');
  }
}
