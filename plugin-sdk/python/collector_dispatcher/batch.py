"""Decoding of ABI v1 batches (docs/ABI.md, section 9) into Ceilometer's
sample dicts.

Pure Python over ``int.from_bytes`` and ``struct``: componentize-py embeds
CPython, and native extensions are not available. Every length is checked
against the bytes that remain, nesting is capped at 63 levels below a field
(``MAX_DEPTH``), and a batch must end exactly after its last sample: a
malformed batch raises :class:`DecodeError` with the byte offset.
"""

import struct

__all__ = ["DecodeError", "decode_batch", "MAX_DEPTH"]

#: Levels of lists and maps a field's value may hold (ABI v1, section 9.7).
MAX_DEPTH = 63

_F64 = struct.Struct("<d")
_from = int.from_bytes


class DecodeError(ValueError):
    """A batch that does not follow ABI v1; ``offset`` is where it went wrong."""

    def __init__(self, offset, why):
        super().__init__("at byte %d: %s" % (offset, why))
        self.offset = offset


class _Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf):
        self.buf = buf
        self.pos = 0
        self.end = len(buf)

    def fail(self, why):
        raise DecodeError(self.pos, why)

    def take(self, n):
        p = self.pos
        q = p + n
        if q > self.end:
            self.fail("%d bytes needed, %d left" % (n, self.end - p))
        self.pos = q
        return p

    def u8(self):
        p = self.take(1)
        return self.buf[p]

    def flag(self):
        b = self.u8()
        if b > 1:
            self.pos -= 1
            self.fail("flag byte %d is not 0 or 1" % b)
        return b

    def u32(self):
        p = self.take(4)
        return _from(self.buf[p : p + 4], "little")

    def u64(self):
        p = self.take(8)
        return _from(self.buf[p : p + 8], "little")

    def i64(self):
        p = self.take(8)
        return _from(self.buf[p : p + 8], "little", signed=True)

    def f64(self):
        p = self.take(8)
        return _F64.unpack_from(self.buf, p)[0]

    def length(self):
        n = self.u64()
        if n > self.end - self.pos:
            self.pos -= 8
            self.fail("length %d is more than the %d bytes left" % (n, self.end - self.pos - 8))
        return n

    def string(self):
        n = self.length()
        p = self.pos
        self.pos = p + n
        try:
            return str(self.buf[p : p + n], "utf-8")
        except UnicodeDecodeError as e:
            self.pos = p + e.start
            self.fail("invalid UTF-8")

    def number(self):
        tag = self.u32()
        if tag == 0:
            return self.i64()
        if tag == 1:
            return self.u64()
        if tag == 2:
            return self.f64()
        self.pos -= 4
        self.fail("unknown Number tag %d" % tag)

    def value(self, depth):
        tag = self.u32()
        if tag == 5:
            return self.string()
        if tag == 8:
            if depth >= MAX_DEPTH:
                self.pos -= 4
                self.fail("nested deeper than %d levels" % MAX_DEPTH)
            n = self.length()
            out = {}
            for _ in range(n):
                k = self.string()
                out[k] = self.value(depth + 1)
            return out
        if tag == 2:
            return self.i64()
        if tag == 4:
            return self.f64()
        if tag == 0:
            return None
        if tag == 1:
            return self.flag() == 1
        if tag == 3:
            return self.u64()
        if tag == 7:
            if depth >= MAX_DEPTH:
                self.pos -= 4
                self.fail("nested deeper than %d levels" % MAX_DEPTH)
            n = self.length()
            return [self.value(depth + 1) for _ in range(n)]
        if tag == 6:
            n = self.length()
            p = self.pos
            self.pos = p + n
            return bytes(self.buf[p : p + n])
        self.pos -= 4
        self.fail("unknown Value tag %d" % tag)


def _sample(r):
    s = {}
    s["source"] = r.string()
    s["counter_name"] = r.string()
    s["counter_type"] = r.string()
    s["counter_unit"] = r.string()
    s["counter_volume"] = r.number() if r.flag() else None
    for key in ("user_id", "user_name", "project_id", "project_name"):
        if r.flag():
            s[key] = r.string() if r.flag() else None
    s["resource_id"] = r.string()
    s["timestamp"] = r.string()
    if r.flag():
        s["resource_metadata"] = r.value(0)
    s["message_id"] = r.string()
    if r.flag():
        s["monotonic_time"] = r.number() if r.flag() else None
    if r.flag():
        s["message_signature"] = r.string()
    for _ in range(r.length()):
        k = r.string()
        s[k] = r.value(0)
    return s


def decode_batch(batch):
    """The samples of an ABI v1 batch, as Ceilometer's dicts.

    Each dict has Ceilometer's keys (``counter_name``, ``counter_volume``,
    ``resource_metadata``...) in the order Ceilometer builds them, then the
    extra keys in the order received. A key the publisher did not send is
    absent, ``None`` stays ``None``, integers stay ``int`` and floats ``float``.
    """
    r = _Reader(memoryview(batch) if not isinstance(batch, (bytes, bytearray)) else batch)
    count = r.u64()
    # A sample takes at least 72 bytes (section 9.3): a count beyond what the
    # bytes can hold is refused before anything is built.
    if count > (r.end - r.pos) // 72:
        r.pos = 0
        r.fail("count %d does not fit in %d bytes" % (count, r.end))
    out = [_sample(r) for _ in range(count)]
    if r.pos != r.end:
        r.fail("%d bytes after the last sample" % (r.end - r.pos))
    return out
