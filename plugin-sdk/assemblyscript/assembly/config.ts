// A small JSON parser for the dispatcher's config (the text collector_init gets).
// Config is parsed once per instance, so this favours simplicity over speed.

export enum JsonKind {
  Null = 0,
  Bool = 1,
  Number = 2,
  String = 3,
  Array = 4,
  Object = 5,
}

/** A parsed JSON value. Object keys keep their order; duplicates are kept (get() finds the first). */
export class JsonNode {
  kind: JsonKind = JsonKind.Null;
  bool: bool = false;
  /** The number's value (Number only). */
  num: f64 = 0;
  /** The number had no `.`, `e` or `E` (Number only). */
  isInteger: bool = false;
  /** The string's value (String), or the number's text as written (Number). */
  str: string = "";
  /** Array items, or object values in the order of `keys`. */
  items: Array<JsonNode> = [];
  /** Object keys. */
  keys: Array<string> = [];

  get isNull(): bool { return this.kind == JsonKind.Null; }
  get isBool(): bool { return this.kind == JsonKind.Bool; }
  get isNumber(): bool { return this.kind == JsonKind.Number; }
  get isString(): bool { return this.kind == JsonKind.String; }
  get isArray(): bool { return this.kind == JsonKind.Array; }
  get isObject(): bool { return this.kind == JsonKind.Object; }

  /** The value under `key` of an object, or null (also for non-objects). */
  get(key: string): JsonNode | null {
    if (this.kind != JsonKind.Object) return null;
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) return this.items[i];
    }
    return null;
  }
  has(key: string): bool {
    return this.get(key) !== null;
  }
  /** The string under `key`, or `fallback` when missing or not a string. */
  getString(key: string, fallback: string = ""): string {
    const v = this.get(key);
    return v !== null && v.kind == JsonKind.String ? v.str : fallback;
  }
  /** The number under `key`, or `fallback` when missing or not a number. */
  getNumber(key: string, fallback: f64 = 0): f64 {
    const v = this.get(key);
    return v !== null && v.kind == JsonKind.Number ? v.num : fallback;
  }
  /** The boolean under `key`, or `fallback` when missing or not a boolean. */
  getBool(key: string, fallback: bool = false): bool {
    const v = this.get(key);
    return v !== null && v.kind == JsonKind.Bool ? v.bool : fallback;
  }
  /** A short name of the kind, for error messages ("a string", "an object", ...). */
  kindName(): string {
    switch (this.kind) {
      case JsonKind.Null: return "null";
      case JsonKind.Bool: return "a boolean";
      case JsonKind.Number: return "a number";
      case JsonKind.String: return "a string";
      case JsonKind.Array: return "an array";
      default: return "an object";
    }
  }
}

const MAX_JSON_DEPTH = 64;

class Parser {
  pos: i32 = 0;
  error: string = "";
  constructor(public text: string) {}

  fail(reason: string): JsonNode | null {
    if (this.error.length == 0) this.error = "invalid JSON at character " + this.pos.toString() + ": " + reason;
    return null;
  }

  ws(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
  }

  lit(word: string): bool {
    if (this.text.substr(this.pos, word.length) != word) return false;
    this.pos += word.length;
    return true;
  }

  value(depth: i32): JsonNode | null {
    if (depth > MAX_JSON_DEPTH) return this.fail("nested too deeply");
    this.ws();
    if (this.pos >= this.text.length) return this.fail("unexpected end");
    const c = this.text.charCodeAt(this.pos);
    const n = new JsonNode();
    if (c == 0x7b) { // {
      n.kind = JsonKind.Object;
      this.pos++;
      this.ws();
      if (this.pos < this.text.length && this.text.charCodeAt(this.pos) == 0x7d) { this.pos++; return n; }
      while (true) {
        this.ws();
        if (this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x22) return this.fail("expected a key");
        const k = this.string();
        if (k === null) return null;
        this.ws();
        if (this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x3a) return this.fail("expected ':'");
        this.pos++;
        const v = this.value(depth + 1);
        if (v === null) return null;
        n.keys.push(k);
        n.items.push(v);
        this.ws();
        if (this.pos >= this.text.length) return this.fail("unexpected end");
        const d = this.text.charCodeAt(this.pos++);
        if (d == 0x7d) return n;
        if (d != 0x2c) { this.pos--; return this.fail("expected ',' or '}'"); }
      }
    }
    if (c == 0x5b) { // [
      n.kind = JsonKind.Array;
      this.pos++;
      this.ws();
      if (this.pos < this.text.length && this.text.charCodeAt(this.pos) == 0x5d) { this.pos++; return n; }
      while (true) {
        const v = this.value(depth + 1);
        if (v === null) return null;
        n.items.push(v);
        this.ws();
        if (this.pos >= this.text.length) return this.fail("unexpected end");
        const d = this.text.charCodeAt(this.pos++);
        if (d == 0x5d) return n;
        if (d != 0x2c) { this.pos--; return this.fail("expected ',' or ']'"); }
      }
    }
    if (c == 0x22) {
      const s = this.string();
      if (s === null) return null;
      n.kind = JsonKind.String;
      n.str = s;
      return n;
    }
    if (this.lit("true")) { n.kind = JsonKind.Bool; n.bool = true; return n; }
    if (this.lit("false")) { n.kind = JsonKind.Bool; return n; }
    if (this.lit("null")) return n;
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.number(n);
    return this.fail("unexpected character");
  }

  number(n: JsonNode): JsonNode | null {
    const t = this.text;
    const start = this.pos;
    let integer = true;
    if (t.charCodeAt(this.pos) == 0x2d) this.pos++;
    const digitsStart = this.pos;
    while (this.pos < t.length && isDigit(t.charCodeAt(this.pos))) this.pos++;
    if (this.pos == digitsStart) return this.fail("expected a digit");
    if (t.charCodeAt(digitsStart) == 0x30 && this.pos - digitsStart > 1) return this.fail("leading zero");
    if (this.pos < t.length && t.charCodeAt(this.pos) == 0x2e) {
      integer = false;
      this.pos++;
      const f = this.pos;
      while (this.pos < t.length && isDigit(t.charCodeAt(this.pos))) this.pos++;
      if (this.pos == f) return this.fail("expected a digit");
    }
    if (this.pos < t.length && (t.charCodeAt(this.pos) | 0x20) == 0x65) {
      integer = false;
      this.pos++;
      if (this.pos < t.length && (t.charCodeAt(this.pos) == 0x2b || t.charCodeAt(this.pos) == 0x2d)) this.pos++;
      const f = this.pos;
      while (this.pos < t.length && isDigit(t.charCodeAt(this.pos))) this.pos++;
      if (this.pos == f) return this.fail("expected a digit");
    }
    n.kind = JsonKind.Number;
    n.str = t.substring(start, this.pos);
    n.num = parseFloat(n.str);
    n.isInteger = integer;
    return n;
  }

  /** A string literal at pos (which holds the opening quote). */
  string(): string | null {
    const t = this.text;
    this.pos++;
    let out = "";
    let run = this.pos;
    while (true) {
      if (this.pos >= t.length) { this.fail("unterminated string"); return null; }
      const c = t.charCodeAt(this.pos);
      if (c == 0x22) {
        out += t.substring(run, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) { this.fail("control character in string"); return null; }
      if (c != 0x5c) { this.pos++; continue; }
      out += t.substring(run, this.pos);
      this.pos++;
      if (this.pos >= t.length) { this.fail("unterminated string"); return null; }
      const e = t.charCodeAt(this.pos++);
      if (e == 0x22) out += "\"";
      else if (e == 0x5c) out += "\\";
      else if (e == 0x2f) out += "/";
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x6e) out += "\n";
      else if (e == 0x72) out += "\r";
      else if (e == 0x74) out += "\t";
      else if (e == 0x75) {
        let u: i32 = 0;
        for (let i = 0; i < 4; i++) {
          if (this.pos >= t.length) { this.fail("bad \\u escape"); return null; }
          const h = hexValue(t.charCodeAt(this.pos++));
          if (h < 0) { this.fail("bad \\u escape"); return null; }
          u = (u << 4) | h;
        }
        out += String.fromCharCode(u); // surrogate pairs arrive as two escapes and join up
      } else { this.pos--; this.fail("bad escape"); return null; }
      run = this.pos;
    }
  }
}

function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  c |= 0x20;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

// @ts-ignore: decorator
@lazy let lastError: string = "";

/** Parses JSON text; null on error (see {@link jsonError}). Trailing non-space text is an error. */
export function parseJson(text: string): JsonNode | null {
  const p = new Parser(text);
  const v = p.value(0);
  if (v !== null) {
    p.ws();
    if (p.pos != text.length) {
      p.fail("unexpected text after the value");
      lastError = p.error;
      return null;
    }
    lastError = "";
    return v;
  }
  lastError = p.error;
  return null;
}

/** Why the last {@link parseJson} failed ("" after a success). */
export function jsonError(): string {
  return lastError;
}
