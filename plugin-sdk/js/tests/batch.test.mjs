// The SDK's decoder on every golden vector (docs/ABI.md, section 11), in Node
// on the build machine: the same code runs inside the component.
//
// Run: node --test tests/

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { DecodeError, decodeBatch } from '../src/batch.js';
import { toJson } from '../src/json.js';

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'golden');

// JSON as the decoder's numbers: an integer beyond ±2^53 a BigInt (JSON.parse
// would round it), every other number a Number.
function parseExact(text) {
  let i = 0;
  const ws = () => {
    while (' \t\n\r'.includes(text[i])) i++;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const o = {};
      ws();
      if (text[i] === '}') return i++, o;
      for (;;) {
        ws();
        const k = value();
        ws();
        assert.equal(text[i++], ':');
        o[k] = value();
        ws();
        if (text[i++] === '}') return o;
      }
    }
    if (c === '[') {
      i++;
      const a = [];
      ws();
      if (text[i] === ']') return i++, a;
      for (;;) {
        a.push(value());
        ws();
        if (text[i++] === ']') return a;
      }
    }
    if (c === '"') {
      const start = i;
      i++;
      while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
      return JSON.parse(text.slice(start, i));
    }
    const m = /^(?:-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null|NaN|-?Infinity)/.exec(text.slice(i));
    assert.ok(m, `a JSON value at ${i}`);
    i += m[0].length;
    const t = m[0];
    if (t === 'true' || t === 'false' || t === 'null') return JSON.parse(t);
    if (t === 'NaN') return NaN;
    if (t.endsWith('Infinity')) return t.startsWith('-') ? -Infinity : Infinity;
    if (m[1] === undefined && m[2] === undefined) {
      const n = BigInt(t);
      return n >= -(2n ** 53n) && n < 2n ** 53n ? Number(n) : n;
    }
    return Number(t);
  };
  return value();
}

function vectors() {
  const found = readdirSync(GOLDEN)
    .filter((f) => f.endsWith('.bin'))
    .sort();
  assert.ok(found.length >= 5, `golden vectors in ${GOLDEN}`);
  return found.map((f) => ({
    name: f,
    data: new Uint8Array(readFileSync(join(GOLDEN, f))),
    want: parseExact(readFileSync(join(GOLDEN, f.replace(/\.bin$/, '.json')), 'utf8')),
  }));
}

// Equal, with -0 and 0 apart, NaN equal to NaN, BigInt and Number apart; with
// `zeroSign` false (values written by toJson and read back), -0 is 0 and a
// BigInt equals the integral Number of the same value.
function same(a, b, where = '$', zeroSign = true) {
  if (!zeroSign && typeof a !== typeof b && Number.isInteger(typeof a === 'number' ? a : b)) {
    // An integral float from 2^53 up is written as digits and read back as a BigInt.
    assert.equal(BigInt(a), BigInt(b), where);
    return;
  }
  assert.equal(typeof a, typeof b, `${where}: ${String(a)} vs ${String(b)}`);
  if (typeof a === 'number') {
    assert.ok(Object.is(a, b) || (!zeroSign && a === b), `${where}: ${a} vs ${b}`);
  } else if (a instanceof Uint8Array || Array.isArray(a)) {
    assert.equal(a.length, b.length, `${where}: length`);
    for (let i = 0; i < a.length; i++) same(a[i], b[i], `${where}[${i}]`, zeroSign);
  } else if (a !== null && typeof a === 'object') {
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${where}: keys`);
    for (const k of Object.keys(a)) same(a[k], b[k], `${where}.${k}`, zeroSign);
  } else {
    assert.equal(a, b, where);
  }
}

test('every vector decodes to its JSON', () => {
  for (const { name, data, want } of vectors()) {
    same(decodeBatch(data), want, name);
  }
});

test('every strict prefix fails with a DecodeError', () => {
  for (const { name, data } of vectors()) {
    for (let cut = 0; cut < data.length; cut++) {
      assert.throws(() => decodeBatch(data.subarray(0, cut)), DecodeError, `${name} cut at ${cut}`);
    }
  }
});

test('trailing and bad bytes are refused with the offset', () => {
  const data = new Uint8Array(readFileSync(join(GOLDEN, '002-minimal.bin')));
  const longer = new Uint8Array(data.length + 1);
  longer.set(data);
  assert.throws(() => decodeBatch(longer), (e) => e instanceof DecodeError && e.offset === data.length);
  // The counter_volume flag (after the count and four strings) set to 2.
  const bad = data.slice();
  const view = new DataView(bad.buffer);
  let at = 8;
  for (let i = 0; i < 4; i++) at += 8 + Number(view.getBigUint64(at, true));
  bad[at] = 2;
  assert.throws(
    () => decodeBatch(bad),
    (e) => e instanceof DecodeError && e.offset === at && e.message.includes('flag byte 2'),
  );
});

test('a huge count or length is refused before allocating', () => {
  const huge = new Uint8Array(108);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, true);
  assert.throws(() => decodeBatch(huge), DecodeError);
  const long = new Uint8Array(16 + 72);
  new DataView(long.buffer).setBigUint64(0, 1n, true);
  new DataView(long.buffer).setBigUint64(8, 2n ** 64n - 1n, true);
  assert.throws(() => decodeBatch(long), DecodeError);
});

test('toJson writes BigInts as their digits and everything else as JSON.stringify does', () => {
  // JSON.stringify writes -0 as 0, and an integral float from 2^53 up as digits
  // that read back as an integer: the values that do not come back the same.
  for (const { data } of vectors()) {
    for (const s of decodeBatch(data)) {
      same(parseExact(toJson(s)), s, '$', false);
    }
  }
  assert.equal(toJson({ a: 18446744073709551615n, b: [1.5, 'x'] }), '{"a":18446744073709551615,"b":[1.5,"x"]}');
  assert.equal(toJson({ a: 1, b: null }), JSON.stringify({ a: 1, b: null }));
});
