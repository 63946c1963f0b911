//! Zig SDK for `collector` dispatcher plugins, plugin ABI v1 (docs/ABI.md).
//!
//! Built and tested with Zig 0.17.1 (PyPI `ziglang==0.17.1`). One file, no
//! dependencies beyond `std`. What it gives a plugin:
//!
//! * the host imports `collector.log` / `collector.set_error` ([`raw`]) and
//!   wrappers ([`log`], [`logf`], [`info`], ..., [`setError`], [`setErrorf`]);
//! * a zero-copy, bounds-checked batch reader ([`Batch`], [`SampleIterator`],
//!   [`Sample`], [`Value`], [`Map`], [`List`]): strings are slices into the batch,
//!   absent/null/value is kept ([`Field`]), numbers keep int/uint/float apart
//!   ([`Number`]), metadata maps and lists are iterated lazily, and malformed
//!   input gives a [`DecodeError`], never a crash;
//! * a JSON writer ([`json`]) that follows the Rust SDK's rules
//!   (`plugin-sdk/src/json.rs`, ABI.md section 12) byte for byte;
//! * [`exportPlugin`]: defines the ABI exports around the plugin's own
//!   `init(config: []const u8) !void` and `dispatch(batch: Batch) Outcome`;
//! * on wasm32-wasi, [`wasi.AppendFile`]: append to a file in a granted directory.
//!
//! Minimal plugin (see plugins/zig-forwarder/forwarder.zig for a complete one):
//!
//! ```zig
//! const collector = @import("collector");
//! pub const panic = collector.panic;              // panics: logged, then trap
//! comptime { collector.exportPlugin(@This()); }  // the ABI exports
//!
//! pub fn init(config: []const u8) !void { _ = config; }
//! pub fn dispatch(batch: collector.Batch) collector.Outcome {
//!     var it = batch.iterator();
//!     while (it.next() catch |e| return .rejectf("bad batch: {t}", .{e})) |s| {
//!         _ = s.counter_name;
//!     }
//!     return .ok;
//! }
//! ```

const std = @import("std");
const builtin = @import("builtin");
const Writer = std.Io.Writer;

/// The ABI version this SDK implements (the `collector_abi_version_1` marker).
pub const abi_version: u32 = 1;

const is_wasm = builtin.cpu.arch.isWasm();

/// The allocator plugins should use: `std.heap.wasm_allocator` on wasm, the
/// page allocator elsewhere (native tests).
pub const allocator: std.mem.Allocator = if (is_wasm) std.heap.wasm_allocator else std.heap.page_allocator;

// ====================================================================== status, log

/// Status codes returned by `collector_init` / `collector_dispatch` (ABI.md section 7).
pub const Status = enum(i32) {
    ok = 0,
    retry = 1,
    reject = 2,
};

/// Log levels of `collector.log` (ABI.md section 6.1).
pub const Level = enum(i32) {
    err = 1,
    warn = 2,
    info = 3,
    debug = 4,
    trace = 5,
};

/// The raw host imports. Prefer the wrappers below.
pub const raw = struct {
    /// `collector.log(level, ptr, len)`: one UTF-8 log line (at most 1 MiB is read).
    pub extern "collector" fn log(level: i32, ptr: [*]const u8, len: usize) void;
    /// `collector.set_error(ptr, len)`: the message explaining a non-OK status of the current call.
    pub extern "collector" fn set_error(ptr: [*]const u8, len: usize) void;
};

/// Writes one line to the daemon's log. Synchronous: do not log per sample above `.trace`.
/// Off wasm (native tests) it prints to stderr.
pub fn log(level: Level, msg: []const u8) void {
    if (is_wasm) {
        raw.log(@backingInt(level), msg.ptr, msg.len);
    } else {
        std.debug.print("[{t}] {s}\n", .{ level, msg });
    }
}

/// Longest message [`logf`], [`setErrorf`], [`Outcome.retryf`] and [`Outcome.rejectf`]
/// format; longer ones are cut and end with "...".
pub const max_message_len = 2048;

/// Holds the message of [`Outcome.retryf`] / [`Outcome.rejectf`] until the SDK hands
/// it to the host (logging does not use it).
var message_buf: [max_message_len]u8 = undefined;

/// Formats into `buf`, cutting long messages with "...".
fn formatInto(buf: *[max_message_len]u8, comptime fmt: []const u8, args: anytype) []const u8 {
    var w: Writer = .fixed(buf);
    w.print(fmt, args) catch {
        @memcpy(buf[max_message_len - 3 ..], "...");
        return buf;
    };
    return w.buffered();
}

/// [`log`] with `std.fmt` formatting (`{s}`, `{d}`, `{t}` for error/enum names, ...).
pub fn logf(level: Level, comptime fmt: []const u8, args: anytype) void {
    var buf: [max_message_len]u8 = undefined;
    log(level, formatInto(&buf, fmt, args));
}

pub fn err(comptime fmt: []const u8, args: anytype) void {
    logf(.err, fmt, args);
}
pub fn warn(comptime fmt: []const u8, args: anytype) void {
    logf(.warn, fmt, args);
}
pub fn info(comptime fmt: []const u8, args: anytype) void {
    logf(.info, fmt, args);
}
pub fn debug(comptime fmt: []const u8, args: anytype) void {
    logf(.debug, fmt, args);
}
pub fn trace(comptime fmt: []const u8, args: anytype) void {
    logf(.trace, fmt, args);
}

/// True when [`setError`] was called during the current export call.
var error_set: bool = false;
/// Off wasm: the last message given to [`setError`] (for tests).
var last_error_buf: [max_message_len]u8 = undefined;
var last_error_len: usize = 0;

/// Sets the message that explains a non-OK status of the current call (the last one wins).
/// The host copies it during the call.
pub fn setError(msg: []const u8) void {
    error_set = true;
    if (is_wasm) {
        raw.set_error(msg.ptr, msg.len);
    } else {
        last_error_len = @min(msg.len, last_error_buf.len);
        @memcpy(last_error_buf[0..last_error_len], msg[0..last_error_len]);
    }
}

/// [`setError`] with `std.fmt` formatting.
pub fn setErrorf(comptime fmt: []const u8, args: anytype) void {
    var buf: [max_message_len]u8 = undefined;
    setError(formatInto(&buf, fmt, args));
}

/// Off wasm: the last message passed to [`setError`] (native tests only).
pub fn lastError() []const u8 {
    return last_error_buf[0..last_error_len];
}

/// A panic handler for plugins: `pub const panic = collector.panic;` in the root
/// file. The panic message goes to the daemon's log at ERROR, then the call traps
/// (the host discards the instance and re-creates it for the next batch).
pub const panic = std.debug.FullPanic(panicHandler);

fn panicHandler(msg: []const u8, _: ?usize) noreturn {
    @branchHint(.cold);
    if (is_wasm) {
        const prefix = "plugin panic: ";
        var buf: [prefix.len + 1024]u8 = undefined;
        @memcpy(buf[0..prefix.len], prefix);
        const n = @min(msg.len, 1024);
        @memcpy(buf[prefix.len..][0..n], msg[0..n]);
        raw.log(@backingInt(Level.err), &buf, prefix.len + n);
        @trap();
    }
    std.debug.defaultPanic(msg, @returnAddress());
}

// ====================================================================== model

/// A number as it was on the wire (`counter_volume`, `monotonic_time`).
pub const Number = union(enum) {
    /// An integer that fits in i64.
    int: i64,
    /// An integer above i64 max (never used for smaller values).
    uint: u64,
    /// A float, including integral ones such as 512.0, NaN and infinities.
    float: f64,

    /// The value as f64 (large integers lose precision).
    pub fn asF64(n: Number) f64 {
        return switch (n) {
            .int => |i| @floatFromInt(i),
            .uint => |u| @floatFromInt(u),
            .float => |f| f,
        };
    }
};

/// A top-level key that may be absent, present with `null`, or carry a value
/// (`user_id`, `user_name`, `project_id`, `project_name`, `monotonic_time`).
pub fn Field(comptime T: type) type {
    return union(enum) {
        /// The key was not in the sample dict.
        absent,
        /// `"key": null`.
        null,
        /// `"key": value`.
        value: T,

        /// The value; `null` for both absent and null.
        pub fn get(f: @This()) ?T {
            return switch (f) {
                .value => |v| v,
                else => null,
            };
        }
    };
}

/// A metadata or extra value, borrowed from the batch. Lists and maps are read lazily.
pub const Value = union(enum) {
    null,
    bool: bool,
    int: i64,
    /// Only for integers above i64 max.
    uint: u64,
    float: f64,
    /// Valid UTF-8 (checked).
    str: []const u8,
    /// msgpack `bin`: raw bytes, not necessarily UTF-8.
    bytes: []const u8,
    list: List,
    map: Map,

    pub fn asStr(v: Value) ?[]const u8 {
        return switch (v) {
            .str => |s| s,
            else => null,
        };
    }

    /// The number as f64, if this is a number.
    pub fn asF64(v: Value) ?f64 {
        return switch (v) {
            .int => |i| @floatFromInt(i),
            .uint => |u| @floatFromInt(u),
            .float => |f| f,
            else => null,
        };
    }

    /// Looks `key` up when this is a map (`null` otherwise, or when missing).
    pub fn get(v: Value, key: []const u8) DecodeError!?Value {
        return switch (v) {
            .map => |m| m.get(key),
            else => null,
        };
    }
};

/// A list whose structure was checked when its sample was decoded.
pub const List = struct {
    count: usize,
    bytes: []const u8,
    /// Nesting depth of the items: a list that is a sample field's value (depth 0)
    /// has its items at 1.
    item_depth: u32,

    pub fn len(l: List) usize {
        return l.count;
    }

    pub fn iterator(l: List) ListIterator {
        return .{ .cursor = .{ .buf = l.bytes, .pos = 0 }, .left = l.count, .item_depth = l.item_depth };
    }
};

pub const ListIterator = struct {
    cursor: Cursor,
    left: usize,
    item_depth: u32,

    /// The next item; `null` at the end. Errors only on invalid UTF-8 in a string.
    pub fn next(it: *ListIterator) DecodeError!?Value {
        if (it.left == 0) return null;
        const v = try it.cursor.value(it.item_depth);
        it.left -= 1;
        return v;
    }
};

/// A map (keys in the order received) whose structure was checked when its sample
/// was decoded; the UTF-8 of its nested strings is checked as they are read.
pub const Map = struct {
    count: usize,
    bytes: []const u8,
    /// Nesting depth of the values: a map that is a sample field's value (depth 0)
    /// has them at 1; a sample's `extra` (the sample dict's own entries) at 0, like
    /// `resource_metadata`'s value.
    item_depth: u32,

    pub const empty: Map = .{ .count = 0, .bytes = &.{}, .item_depth = 0 };

    pub fn len(m: Map) usize {
        return m.count;
    }

    pub fn iterator(m: Map) MapIterator {
        return .{ .cursor = .{ .buf = m.bytes, .pos = 0 }, .left = m.count, .item_depth = m.item_depth };
    }

    /// The value of the first entry with this key, or `null`.
    pub fn get(m: Map, key: []const u8) DecodeError!?Value {
        var it = m.iterator();
        while (try it.next()) |e| {
            if (std.mem.eql(u8, e.key, key)) return e.value;
        }
        return null;
    }
};

pub const MapEntry = struct {
    key: []const u8,
    value: Value,
};

pub const MapIterator = struct {
    cursor: Cursor,
    left: usize,
    item_depth: u32,

    /// The next entry; `null` at the end. Errors only on invalid UTF-8 in a string.
    pub fn next(it: *MapIterator) DecodeError!?MapEntry {
        if (it.left == 0) return null;
        const k = try it.cursor.str();
        const v = try it.cursor.value(it.item_depth);
        it.left -= 1;
        return .{ .key = k, .value = v };
    }
};

/// One sample, borrowed from the batch bytes: every slice points into the batch
/// buffer and is valid only during the `dispatch` call (copy what you keep).
/// Fields in ABI order (ABI.md section 9.3); all strings are valid UTF-8.
pub const Sample = struct {
    source: []const u8,
    counter_name: []const u8,
    counter_type: []const u8,
    counter_unit: []const u8,
    /// `null` when the sample had `"counter_volume": null`.
    counter_volume: ?Number,
    user_id: Field([]const u8),
    user_name: Field([]const u8),
    project_id: Field([]const u8),
    project_name: Field([]const u8),
    resource_id: []const u8,
    timestamp: []const u8,
    /// `null` when the key was absent; `Value.null` for `"resource_metadata": null`.
    resource_metadata: ?Value,
    message_id: []const u8,
    monotonic_time: Field(Number),
    /// `null` when the key was absent (it is never JSON null).
    message_signature: ?[]const u8,
    /// Every other top-level key, in the order received (often empty).
    extra: Map,
};

// ====================================================================== decoder

/// Why a batch could not be decoded. [`SampleIterator.offset`] gives the byte offset.
pub const DecodeError = error{
    /// The bytes end inside a field (a truncated batch).
    UnexpectedEnd,
    /// A length or count does not fit in this target's address space.
    LengthTooLarge,
    /// A string is not valid UTF-8.
    InvalidUtf8,
    /// An Option/Field flag byte is not 0 or 1.
    InvalidFlag,
    /// A bool byte is not 0 or 1.
    InvalidBool,
    /// An unknown Value or Number tag.
    UnknownTag,
    /// Lists/maps nested deeper than [`max_depth`] below a sample field.
    TooDeep,
    /// Bytes left over after the last sample.
    TrailingBytes,
    /// Fewer samples than the header announced (or an earlier error).
    BatchEndedEarly,
};

/// Deepest nesting of one sample, in levels of dicts and lists, the sample dict
/// itself counting as level 1: the ABI's one nesting limit (docs/ABI.md section 9.7,
/// the Rust SDK's `collector_sdk::abi::MAX_NESTING`).
pub const max_nesting: u32 = 64;

/// Levels of lists and maps a sample field's value (`resource_metadata`, or an extra
/// key's value) may hold: [`max_nesting`] less the sample dict itself (63, the Rust
/// SDK's `codec::MAX_DEPTH`). The field's own value, if a list or map, is level 1;
/// empty lists and maps count. Deeper is `error.TooDeep`.
pub const max_depth: u32 = max_nesting - 1;

/// Value tags (u32) of ABI.md section 9.6.
pub const tag = struct {
    pub const null_: u32 = 0;
    pub const bool_: u32 = 1;
    pub const int: u32 = 2;
    pub const uint: u32 = 3;
    pub const float: u32 = 4;
    pub const str: u32 = 5;
    pub const bytes: u32 = 6;
    pub const list: u32 = 7;
    pub const map: u32 = 8;
    /// Number tags (section 9.5).
    pub const num_int: u32 = 0;
    pub const num_uint: u32 = 1;
    pub const num_float: u32 = 2;
};

/// True when every byte is ASCII (8 bytes at a time).
fn isAscii(s: []const u8) bool {
    var i: usize = 0;
    var acc: u64 = 0;
    while (i + 8 <= s.len) : (i += 8) {
        acc |= std.mem.readInt(u64, s[i..][0..8], .little);
    }
    while (i < s.len) : (i += 1) acc |= s[i];
    return acc & 0x8080808080808080 == 0;
}

/// Bounds-checked reader over ABI bytes. `pos <= buf.len` always holds.
const Cursor = struct {
    buf: []const u8,
    pos: usize,

    fn take(c: *Cursor, n: usize) DecodeError![]const u8 {
        if (n > c.buf.len - c.pos) return error.UnexpectedEnd;
        const s = c.buf[c.pos..][0..n];
        c.pos += n;
        return s;
    }

    fn byte(c: *Cursor) DecodeError!u8 {
        if (c.pos >= c.buf.len) return error.UnexpectedEnd;
        c.pos += 1;
        return c.buf[c.pos - 1];
    }

    fn int(c: *Cursor, comptime T: type) DecodeError!T {
        const s = try c.take(@sizeOf(T));
        return std.mem.readInt(T, s[0..@sizeOf(T)], .little);
    }

    fn len(c: *Cursor) DecodeError!usize {
        const n = try c.int(u64);
        if (n > std.math.maxInt(usize)) {
            c.pos -= 8;
            return error.LengthTooLarge;
        }
        return @intCast(n);
    }

    fn bytes(c: *Cursor) DecodeError![]const u8 {
        const start = c.pos;
        const n = try c.len();
        return c.take(n) catch |e| {
            c.pos = start;
            return e;
        };
    }

    fn str(c: *Cursor) DecodeError![]const u8 {
        const start = c.pos;
        const s = try c.bytes();
        if (!isAscii(s) and !std.unicode.utf8ValidateSlice(s)) {
            c.pos = start;
            return error.InvalidUtf8;
        }
        return s;
    }

    fn flag(c: *Cursor) DecodeError!bool {
        return switch (try c.byte()) {
            0 => false,
            1 => true,
            else => {
                c.pos -= 1;
                return error.InvalidFlag;
            },
        };
    }

    fn number(c: *Cursor) DecodeError!Number {
        const t = try c.int(u32);
        const bits = try c.int(u64);
        return switch (t) {
            tag.num_int => .{ .int = @bitCast(bits) },
            tag.num_uint => .{ .uint = bits },
            tag.num_float => .{ .float = @bitCast(bits) },
            else => {
                c.pos -= 12;
                return error.UnknownTag;
            },
        };
    }

    fn fieldStr(c: *Cursor) DecodeError!Field([]const u8) {
        if (!try c.flag()) return .absent;
        if (!try c.flag()) return .null;
        return .{ .value = try c.str() };
    }

    /// A value at nesting `depth` (0: a sample field's own value).
    fn value(c: *Cursor, depth: u32) DecodeError!Value {
        const t = try c.int(u32);
        switch (t) {
            tag.null_ => return .null,
            tag.bool_ => return switch (try c.byte()) {
                0 => .{ .bool = false },
                1 => .{ .bool = true },
                else => {
                    c.pos -= 1;
                    return error.InvalidBool;
                },
            },
            tag.int => return .{ .int = @bitCast(try c.int(u64)) },
            tag.uint => return .{ .uint = try c.int(u64) },
            tag.float => return .{ .float = @bitCast(try c.int(u64)) },
            tag.str => return .{ .str = try c.str() },
            tag.bytes => return .{ .bytes = try c.bytes() },
            tag.list => {
                try enter(depth);
                const start = c.pos;
                try c.skipItems(tag.list, depth + 1);
                const body = c.buf[start..c.pos];
                const count: usize = @intCast(std.mem.readInt(u64, body[0..8], .little));
                return .{ .list = .{ .count = count, .bytes = body[8..], .item_depth = depth + 1 } };
            },
            tag.map => {
                try enter(depth);
                return .{ .map = try c.entries(depth + 1) };
            },
            else => {
                c.pos -= 4;
                return error.UnknownTag;
            },
        }
    }

    /// A list or map at nesting `depth` (0: a sample field's own value) is level
    /// `depth + 1` below the field: refused from [`max_depth`] on, even when empty.
    inline fn enter(depth: u32) DecodeError!void {
        if (depth >= max_depth) return error.TooDeep;
    }

    /// The u64 count and (key, value) entries of a map whose values sit at
    /// `item_depth`: a metadata map at depth `d` has them at `d + 1`; the sample's
    /// extra keys, like its fields, at 0.
    fn entries(c: *Cursor, item_depth: u32) DecodeError!Map {
        const start = c.pos;
        try c.skipItems(tag.map, item_depth);
        const body = c.buf[start..c.pos];
        const count: usize = @intCast(std.mem.readInt(u64, body[0..8], .little));
        return .{ .count = count, .bytes = body[8..], .item_depth = item_depth };
    }

    /// Steps over the count and items of a list or map (`t`; its tag, if it has one,
    /// was just read) whose items sit at nesting `item_depth`, checking structure and bounds but not
    /// the UTF-8 of nested strings (checked when they are read). Scalars are skipped
    /// in the loop; only nested lists and maps recurse.
    fn skipItems(c: *Cursor, t: u32, item_depth: u32) DecodeError!void {
        const count = try c.len();
        var i: usize = 0;
        while (i < count) : (i += 1) {
            if (t == tag.map) _ = try c.bytes();
            const t2 = try c.int(u32);
            if (t2 == tag.list or t2 == tag.map) {
                try enter(item_depth);
                try c.skipItems(t2, item_depth + 1);
            } else {
                try c.skipScalar(t2);
            }
        }
    }

    inline fn skipScalar(c: *Cursor, t: u32) DecodeError!void {
        switch (t) {
            tag.null_ => {},
            tag.bool_ => if (try c.byte() > 1) {
                c.pos -= 1;
                return error.InvalidBool;
            },
            tag.int, tag.uint, tag.float => _ = try c.take(8),
            tag.str, tag.bytes => _ = try c.bytes(),
            else => {
                c.pos -= 4;
                return error.UnknownTag;
            },
        }
    }

    fn sample(c: *Cursor) DecodeError!Sample {
        var s: Sample = undefined;
        s.source = try c.str();
        s.counter_name = try c.str();
        s.counter_type = try c.str();
        s.counter_unit = try c.str();
        s.counter_volume = if (try c.flag()) try c.number() else null;
        s.user_id = try c.fieldStr();
        s.user_name = try c.fieldStr();
        s.project_id = try c.fieldStr();
        s.project_name = try c.fieldStr();
        s.resource_id = try c.str();
        s.timestamp = try c.str();
        s.resource_metadata = if (try c.flag()) try c.value(0) else null;
        s.message_id = try c.str();
        s.monotonic_time = if (!try c.flag())
            .absent
        else if (!try c.flag())
            .null
        else
            .{ .value = try c.number() };
        s.message_signature = if (try c.flag()) try c.str() else null;
        s.extra = try c.entries(0); // the sample dict's own entries: fields, at depth 0
        return s;
    }
};

/// A batch (ABI.md section 9.2): a u64 count, then the samples back to back.
/// Zero-copy: iterating decodes each sample in place.
pub const Batch = struct {
    bytes: []const u8,
    count: u64,

    /// Reads the 8-byte header. Errors when `bytes` is shorter than that.
    pub fn init(bytes: []const u8) DecodeError!Batch {
        if (bytes.len < 8) return error.UnexpectedEnd;
        return .{ .bytes = bytes, .count = std.mem.readInt(u64, bytes[0..8], .little) };
    }

    /// Number of samples the header announces.
    pub fn len(b: Batch) u64 {
        return b.count;
    }

    /// Iterates the samples. Call [`SampleIterator.finish`] after the last one to
    /// check that the batch ended exactly there.
    pub fn iterator(b: Batch) SampleIterator {
        return .{ .cursor = .{ .buf = b.bytes, .pos = 8 }, .left = b.count };
    }

    /// Decodes every sample and checks for trailing bytes, without keeping anything.
    pub fn validate(b: Batch) DecodeError!void {
        var it = b.iterator();
        while (try it.next()) |_| {}
        try it.finish();
    }
};

pub const SampleIterator = struct {
    cursor: Cursor,
    left: u64,
    failed: ?DecodeError = null,

    /// The next sample, `null` after the last one. After an error, every further
    /// call returns the same error.
    pub fn next(it: *SampleIterator) DecodeError!?Sample {
        if (it.failed) |e| return e;
        if (it.left == 0) return null;
        const s = it.cursor.sample() catch |e| {
            it.failed = e;
            return e;
        };
        it.left -= 1;
        return s;
    }

    /// After the last sample: errors when samples were missing or bytes are left over.
    pub fn finish(it: *const SampleIterator) DecodeError!void {
        if (it.failed != null or it.left != 0) return error.BatchEndedEarly;
        if (it.cursor.pos != it.cursor.buf.len) return error.TrailingBytes;
    }

    /// Byte offset in the batch where decoding stands (where it stopped, after an error).
    pub fn offset(it: *const SampleIterator) usize {
        return it.cursor.pos;
    }

    /// Samples not yet decoded.
    pub fn remaining(it: *const SampleIterator) u64 {
        return it.left;
    }
};

// ====================================================================== JSON

/// JSON output following the Rust SDK (`plugin-sdk/src/json.rs`, ABI.md section 12):
/// Ceilometer's keys in ABI order then the extra keys, absent keys left out,
/// integers without a decimal point, floats in the shortest round-trip form with
/// a `.` or an exponent (Rust's `{:?}`: `512.0`, `-0.0`, `1e-5`, `1e16`), `NaN`,
/// `Infinity`, `-Infinity`; strings with `"` `\` `\n` `\r` `\t` short escapes,
/// other U+0000..U+001F and U+007F as `\u00XX`, everything else raw UTF-8.
pub const json = struct {
    /// Errors of [`writeValue`] / [`writeSample`]: the writer's, or invalid UTF-8
    /// found in a nested string while reading it.
    pub const Error = Writer.Error || DecodeError;

    const hex = "0123456789abcdef";

    fn needsEscape(b: u8) bool {
        return b < 0x20 or b == '"' or b == '\\' or b == 0x7f;
    }

    const ones: u64 = 0x0101010101010101;
    const highs: u64 = 0x8080808080808080;

    /// Non-zero when some byte of `x` is 0.
    inline fn hasZeroByte(x: u64) u64 {
        return (x -% ones) & ~x & highs;
    }

    /// Non-zero when some byte of the 8 needs escaping (no false negatives).
    inline fn chunkNeedsEscape(x: u64) u64 {
        const ctl = (x -% ones *% 0x20) & ~x & highs; // a byte < 0x20
        return ctl | hasZeroByte(x ^ (ones *% '"')) | hasZeroByte(x ^ (ones *% '\\')) | hasZeroByte(x ^ (ones *% 0x7f));
    }

    /// Writes the escaped content of `s` (no quotes).
    fn writeEscaped(w: *Writer, s: []const u8) Writer.Error!void {
        // Fast path: 8 bytes at a time while none needs escaping.
        var i: usize = 0;
        while (i + 8 <= s.len and chunkNeedsEscape(std.mem.readInt(u64, s[i..][0..8], .little)) == 0) i += 8;
        if (i == s.len) return w.writeAll(s);
        try w.writeAll(s[0..i]);
        var start: usize = i;
        for (s[i..], i..) |b, j| {
            if (!needsEscape(b)) continue;
            try w.writeAll(s[start..j]);
            switch (b) {
                '"' => try w.writeAll("\\\""),
                '\\' => try w.writeAll("\\\\"),
                '\n' => try w.writeAll("\\n"),
                '\r' => try w.writeAll("\\r"),
                '\t' => try w.writeAll("\\t"),
                else => try w.writeAll(&.{ '\\', 'u', '0', '0', hex[b >> 4], hex[b & 0xf] }),
            }
            start = j + 1;
        }
        try w.writeAll(s[start..]);
    }

    /// Writes `s` (UTF-8) as a JSON string literal.
    pub fn writeStr(w: *Writer, s: []const u8) Writer.Error!void {
        try w.writeByte('"');
        try writeEscaped(w, s);
        try w.writeByte('"');
    }

    /// Length of the well-formed UTF-8 sequence at the start of `b`, or, when it is
    /// ill-formed, the length of its maximal subpart (Unicode ch. 3, U+FFFD substitution).
    fn utf8Seq(b: []const u8) struct { len: usize, valid: bool } {
        const c = b[0];
        if (c < 0x80) return .{ .len = 1, .valid = true };
        var need: usize = undefined;
        var lo: u8 = 0x80;
        var hi: u8 = 0xbf;
        switch (c) {
            0xc2...0xdf => need = 1,
            0xe0 => {
                need = 2;
                lo = 0xa0;
            },
            0xe1...0xec, 0xee, 0xef => need = 2,
            0xed => {
                need = 2;
                hi = 0x9f;
            },
            0xf0 => {
                need = 3;
                lo = 0x90;
            },
            0xf1...0xf3 => need = 3,
            0xf4 => {
                need = 3;
                hi = 0x8f;
            },
            else => return .{ .len = 1, .valid = false },
        }
        var k: usize = 1;
        while (k <= need) : (k += 1) {
            if (k >= b.len or b[k] < lo or b[k] > hi) return .{ .len = k, .valid = false };
            lo = 0x80;
            hi = 0xbf;
        }
        return .{ .len = need + 1, .valid = true };
    }

    /// Writes raw bytes as a JSON string, replacing ill-formed UTF-8 with U+FFFD
    /// as Rust's `String::from_utf8_lossy` does.
    pub fn writeBytesLossy(w: *Writer, b: []const u8) Writer.Error!void {
        try w.writeByte('"');
        var run: usize = 0;
        var i: usize = 0;
        while (i < b.len) {
            const seq = utf8Seq(b[i..]);
            if (!seq.valid) {
                try writeEscaped(w, b[run..i]);
                try w.writeAll("\u{fffd}");
                run = i + seq.len;
            }
            i += seq.len;
        }
        try writeEscaped(w, b[run..]);
        try w.writeByte('"');
    }

    pub fn writeU64(w: *Writer, v: u64) Writer.Error!void {
        var buf: [20]u8 = undefined;
        var i: usize = buf.len;
        var x = v;
        while (true) {
            i -= 1;
            buf[i] = '0' + @as(u8, @intCast(x % 10));
            x /= 10;
            if (x == 0) break;
        }
        try w.writeAll(buf[i..]);
    }

    pub fn writeI64(w: *Writer, v: i64) Writer.Error!void {
        if (v < 0) try w.writeByte('-');
        try writeU64(w, @abs(v));
    }

    /// Longest text [`formatF64`] produces ("-2.2250738585072014e-308" is 24).
    pub const f64_max_len = 32;

    const f64_tables = if (builtin.mode == .small)
        &std.fmt.float.Backend64_TablesSmall
    else
        &std.fmt.float.Backend64_TablesFull;

    /// Formats a float exactly as Rust's `{:?}` does for f64, except for non-finite
    /// values, which are `NaN`, `Infinity`, `-Infinity` (Python's `json`): the
    /// shortest digits that read back as the same f64; plain decimal with at least
    /// one fractional digit for 1e-4 <= |f| < 1e16 (`512.0`, `0.0001`), otherwise
    /// `d[.ddd]e[-]x` (`1e-5`, `1.5e16`); zero is `0.0` or `-0.0`.
    pub fn formatF64(buf: *[f64_max_len]u8, f: f64) []const u8 {
        if (std.math.isNan(f)) return "NaN";
        if (std.math.isInf(f)) return if (f > 0) "Infinity" else "-Infinity";
        const bits: u64 = @bitCast(f);
        var p: usize = 0;
        if (bits >> 63 != 0) {
            buf[0] = '-';
            p = 1;
        }
        if (f == 0) {
            @memcpy(buf[p..][0..3], "0.0");
            return buf[0 .. p + 3];
        }
        const d = std.fmt.float.binaryToDecimal(u64, bits, 52, 11, false, f64_tables);
        var m = d.mantissa;
        var e: i32 = d.exponent;
        while (m % 10 == 0) {
            m /= 10;
            e += 1;
        }
        var digits: [20]u8 = undefined;
        var n: usize = 0;
        {
            var tmp: [20]u8 = undefined;
            var k: usize = tmp.len;
            while (m != 0) {
                k -= 1;
                tmp[k] = '0' + @as(u8, @intCast(m % 10));
                m /= 10;
            }
            n = tmp.len - k;
            @memcpy(digits[0..n], tmp[k..]);
        }
        const ni: i32 = @intCast(n);
        const sci = e + ni - 1;
        if (sci < -4 or sci >= 16) {
            buf[p] = digits[0];
            p += 1;
            if (n > 1) {
                buf[p] = '.';
                p += 1;
                @memcpy(buf[p..][0 .. n - 1], digits[1..n]);
                p += n - 1;
            }
            buf[p] = 'e';
            p += 1;
            if (sci < 0) {
                buf[p] = '-';
                p += 1;
            }
            var x: u32 = @abs(sci);
            var tmp: [4]u8 = undefined;
            var k: usize = tmp.len;
            while (true) {
                k -= 1;
                tmp[k] = '0' + @as(u8, @intCast(x % 10));
                x /= 10;
                if (x == 0) break;
            }
            @memcpy(buf[p..][0 .. tmp.len - k], tmp[k..]);
            p += tmp.len - k;
        } else if (e >= 0) {
            // Integral: digits, e zeros, ".0" (at most 16 digits before the point).
            @memcpy(buf[p..][0..n], digits[0..n]);
            p += n;
            const z: usize = @intCast(e);
            @memset(buf[p..][0..z], '0');
            p += z;
            @memcpy(buf[p..][0..2], ".0");
            p += 2;
        } else {
            const frac: usize = @intCast(-e);
            if (frac < n) {
                const int_len = n - frac;
                @memcpy(buf[p..][0..int_len], digits[0..int_len]);
                p += int_len;
                buf[p] = '.';
                p += 1;
                @memcpy(buf[p..][0..frac], digits[int_len..n]);
                p += frac;
            } else {
                @memcpy(buf[p..][0..2], "0.");
                p += 2;
                @memset(buf[p..][0 .. frac - n], '0');
                p += frac - n;
                @memcpy(buf[p..][0..n], digits[0..n]);
                p += n;
            }
        }
        return buf[0..p];
    }

    /// Writes a float so that it reads back as the same float, never as an integer.
    pub fn writeF64(w: *Writer, f: f64) Writer.Error!void {
        var buf: [f64_max_len]u8 = undefined;
        try w.writeAll(formatF64(&buf, f));
    }

    pub fn writeNumber(w: *Writer, n: Number) Writer.Error!void {
        switch (n) {
            .int => |i| try writeI64(w, i),
            .uint => |u| try writeU64(w, u),
            .float => |f| try writeF64(w, f),
        }
    }

    /// Writes a metadata/extra value (maps keep their key order; bytes as lossy text).
    pub fn writeValue(w: *Writer, v: Value) Error!void {
        switch (v) {
            .null => try w.writeAll("null"),
            .bool => |b| try w.writeAll(if (b) "true" else "false"),
            .int => |i| try writeI64(w, i),
            .uint => |u| try writeU64(w, u),
            .float => |f| try writeF64(w, f),
            .str => |s| try writeStr(w, s),
            .bytes => |b| try writeBytesLossy(w, b),
            .list => |l| {
                try w.writeByte('[');
                var it = l.iterator();
                var first = true;
                while (try it.next()) |item| {
                    if (!first) try w.writeByte(',');
                    first = false;
                    try writeValue(w, item);
                }
                try w.writeByte(']');
            },
            .map => |m| {
                try w.writeByte('{');
                var it = m.iterator();
                var first = true;
                while (try it.next()) |e| {
                    if (!first) try w.writeByte(',');
                    first = false;
                    try writeStr(w, e.key);
                    try w.writeByte(':');
                    try writeValue(w, e.value);
                }
                try w.writeByte('}');
            },
        }
    }

    /// Writes keys of one JSON object, adding the commas.
    const Obj = struct {
        w: *Writer,
        first: bool = true,

        fn key(o: *Obj, comptime k: []const u8) Writer.Error!void {
            try o.w.writeAll(if (o.first) "\"" ++ k ++ "\":" else ",\"" ++ k ++ "\":");
            o.first = false;
        }

        fn dynKey(o: *Obj, k: []const u8) Writer.Error!void {
            if (!o.first) try o.w.writeByte(',');
            o.first = false;
            try writeStr(o.w, k);
            try o.w.writeByte(':');
        }

        fn str(o: *Obj, comptime k: []const u8, v: []const u8) Writer.Error!void {
            try o.key(k);
            try writeStr(o.w, v);
        }

        fn fieldStr(o: *Obj, comptime k: []const u8, v: Field([]const u8)) Writer.Error!void {
            switch (v) {
                .absent => {},
                .null => {
                    try o.key(k);
                    try o.w.writeAll("null");
                },
                .value => |s| try o.str(k, s),
            }
        }

        fn optNumber(o: *Obj, comptime k: []const u8, v: ?Number) Writer.Error!void {
            try o.key(k);
            if (v) |n| try writeNumber(o.w, n) else try o.w.writeAll("null");
        }
    };

    /// Writes one sample as a JSON object (no newline), with Ceilometer's keys in
    /// ABI order followed by the extra keys: the dict the agent sent.
    pub fn writeSample(w: *Writer, s: *const Sample) Error!void {
        try w.writeByte('{');
        var o: Obj = .{ .w = w };
        try o.str("source", s.source);
        try o.str("counter_name", s.counter_name);
        try o.str("counter_type", s.counter_type);
        try o.str("counter_unit", s.counter_unit);
        try o.optNumber("counter_volume", s.counter_volume);
        try o.fieldStr("user_id", s.user_id);
        try o.fieldStr("user_name", s.user_name);
        try o.fieldStr("project_id", s.project_id);
        try o.fieldStr("project_name", s.project_name);
        try o.str("resource_id", s.resource_id);
        try o.str("timestamp", s.timestamp);
        if (s.resource_metadata) |m| {
            try o.key("resource_metadata");
            try writeValue(w, m);
        }
        try o.str("message_id", s.message_id);
        switch (s.monotonic_time) {
            .absent => {},
            .null => try o.optNumber("monotonic_time", null),
            .value => |n| try o.optNumber("monotonic_time", n),
        }
        if (s.message_signature) |sig| try o.str("message_signature", sig);
        var it = s.extra.iterator();
        while (try it.next()) |e| {
            try o.dynKey(e.key);
            try writeValue(w, e.value);
        }
        try w.writeByte('}');
    }
};

// ====================================================================== config

/// Parses the config JSON into `T` with `std.json` (unknown keys are an error;
/// give fields defaults for optional keys). An empty config counts as `{}`.
/// Strings are copied, so the result outlives the config buffer. Meant for
/// `init`, which runs once per instance: the allocations are never freed.
pub fn parseConfig(comptime T: type, config: []const u8) !T {
    const text = if (std.mem.trim(u8, config, " \t\r\n").len == 0) "{}" else config;
    return std.json.parseFromSliceLeaky(T, allocator, text, .{ .allocate = .alloc_always });
}

// ====================================================================== exports

/// What `dispatch` returns. Messages are copied by the host during the call.
pub const Outcome = union(enum) {
    /// The batch is taken care of (status 0).
    ok,
    /// Transient failure: the host sends the same batch again later (status 1).
    retry: []const u8,
    /// Final failure: the batch is not retried (status 2).
    reject: []const u8,

    /// `.retry` with a formatted message (kept in the SDK's message buffer).
    pub fn retryf(comptime fmt: []const u8, args: anytype) Outcome {
        return .{ .retry = formatInto(&message_buf, fmt, args) };
    }

    /// `.reject` with a formatted message (kept in the SDK's message buffer).
    pub fn rejectf(comptime fmt: []const u8, args: anytype) Outcome {
        return .{ .reject = formatInto(&message_buf, fmt, args) };
    }
};

fn errorStatus(e: anyerror, comptime what: []const u8) i32 {
    if (!error_set) setErrorf(what ++ "{t}", .{e});
    return @backingInt(Status.reject);
}

/// Defines the ABI v1 exports for the plugin namespace `P` (normally the root
/// file: `comptime { collector.exportPlugin(@This()); }`). `P` must declare
///
/// * `pub fn init(config: []const u8) !void` (or `void`): called once per instance
///   with the dispatcher's config as JSON text (`{}` when none; empty with
///   `collector check --config ''`). The config bytes stay valid for the life of
///   the instance. An error makes init fail: the message is the one given to
///   `setError`/`setErrorf` during the call, else the error's name.
/// * `pub fn dispatch(batch: Batch) Outcome` (or `!Outcome`): called per batch;
///   the batch bytes are freed when it returns. An error is a reject, with the
///   `setError` message or the error's name.
///
/// and may declare (ABI.md 5.7, 5.8)
///
/// * `pub fn snapshot() ?[]const u8`: state to hand to a new instance, taken after
///   every accepted batch; the slice must stay valid until the next call;
/// * `pub fn restore(state: []const u8) !void`: takes over a snapshot right after init.
///
/// Exports: `collector_abi_version_1`, `collector_alloc`, `collector_init`,
/// `collector_dispatch` (+ `collector_snapshot`, `collector_restore`). Memory
/// comes from `std.heap.wasm_allocator`; the batch buffer is freed after each
/// dispatch, so memory stays flat across batches.
pub fn exportPlugin(comptime P: type) void {
    if (!is_wasm) @compileError("collector.exportPlugin is for wasm32 targets");
    const Glue = struct {
        var ready: bool = false;
        const buf_align: std.mem.Alignment = .@"8";

        fn buffer(ptr: usize, len: i32) []align(8) u8 {
            const n: usize = @as(u32, @bitCast(len));
            if (n == 0) return &.{};
            const p: [*]align(8) u8 = @ptrFromInt(ptr);
            return p[0..n];
        }

        fn release(b: []align(8) u8) void {
            if (b.len != 0) allocator.free(b);
        }

        fn abiVersion() callconv(.c) void {}

        fn alloc(len: i32) callconv(.c) usize {
            if (len < 0) return 0;
            if (len == 0) return 8;
            const b = allocator.alignedAlloc(u8, buf_align, @intCast(len)) catch return 0;
            return @intFromPtr(b.ptr);
        }

        fn init(ptr: usize, len: i32) callconv(.c) i32 {
            error_set = false;
            // The config buffer is kept for the life of the instance (init runs once).
            const config = buffer(ptr, len);
            if (!std.unicode.utf8ValidateSlice(config)) {
                setError("plugin config is not UTF-8");
                return @backingInt(Status.reject);
            }
            const R = @typeInfo(@TypeOf(P.init)).@"fn".return_type.?;
            if (@typeInfo(R) == .error_union) {
                P.init(config) catch |e| return errorStatus(e, "");
            } else {
                P.init(config);
            }
            ready = true;
            return @backingInt(Status.ok);
        }

        fn dispatch(ptr: usize, len: i32) callconv(.c) i32 {
            error_set = false;
            const bytes = buffer(ptr, len);
            defer release(bytes);
            if (!ready) {
                setError("collector_dispatch called before a successful collector_init");
                return @backingInt(Status.reject);
            }
            const batch = Batch.init(bytes) catch |e| {
                setErrorf("batch decode error at byte 0: {t}", .{e});
                return @backingInt(Status.reject);
            };
            const R = @typeInfo(@TypeOf(P.dispatch)).@"fn".return_type.?;
            const outcome: Outcome = if (@typeInfo(R) == .error_union)
                P.dispatch(batch) catch |e| return errorStatus(e, "")
            else
                P.dispatch(batch);
            switch (outcome) {
                .ok => return @backingInt(Status.ok),
                .retry => |m| {
                    setError(m);
                    return @backingInt(Status.retry);
                },
                .reject => |m| {
                    setError(m);
                    return @backingInt(Status.reject);
                },
            }
        }

        fn snapshot() callconv(.c) i64 {
            const state: []const u8 = P.snapshot() orelse return 0;
            if (state.len == 0) return 0;
            const v: u64 = (@as(u64, @intFromPtr(state.ptr)) << 32) | @as(u32, @intCast(state.len));
            return @bitCast(v);
        }

        fn restore(ptr: usize, len: i32) callconv(.c) i32 {
            error_set = false;
            const bytes = buffer(ptr, len);
            defer release(bytes);
            const R = @typeInfo(@TypeOf(P.restore)).@"fn".return_type.?;
            if (@typeInfo(R) == .error_union) {
                P.restore(bytes) catch |e| return errorStatus(e, "");
            } else {
                P.restore(bytes);
            }
            return @backingInt(Status.ok);
        }
    };
    @export(&Glue.abiVersion, .{ .name = "collector_abi_version_1" });
    @export(&Glue.alloc, .{ .name = "collector_alloc" });
    @export(&Glue.init, .{ .name = "collector_init" });
    @export(&Glue.dispatch, .{ .name = "collector_dispatch" });
    if (@hasDecl(P, "snapshot")) @export(&Glue.snapshot, .{ .name = "collector_snapshot" });
    if (@hasDecl(P, "restore")) @export(&Glue.restore, .{ .name = "collector_restore" });
}

// ====================================================================== WASI files

/// Outbound HTTP to the endpoints the operator declared for the dispatcher
/// (`[[dispatchers.endpoints]]`; docs/ABI.md section 17). Name the endpoint and
/// give a target under its URL; the host adds TLS, credentials and headers.
/// Several requests may run at once; no wait outlives the call's deadline.
///
///     const status = collector.http.fetch("influx", "POST", "/write?db=x", &.{}, body, 5000);
///     return collector.http.outcome(status);
///
/// Off wasm (native tests) every send is refused with `err_unavailable`.
pub const http = struct {
    pub const Header = struct { name: []const u8, value: []const u8 };

    /// `send` refusals (nothing was sent).
    pub const err_unknown_endpoint: i32 = -1;
    pub const err_bad_target: i32 = -2;
    pub const err_busy: i32 = -3;
    pub const err_too_large: i32 = -4;
    pub const err_malformed: i32 = -5;
    pub const err_header: i32 = -6;
    pub const err_no_handle: i32 = -7;
    pub const err_unavailable: i32 = -8;
    /// `status`: still running, or no whole response.
    pub const pending: i32 = 0;
    pub const fail_connect: i32 = -10;
    pub const fail_timeout: i32 = -11;
    pub const fail_response_too_large: i32 = -12;
    pub const fail_io: i32 = -14;
    /// `wait`: nothing finished in time.
    pub const wait_none: i32 = -1;
    /// `errorText`'s handle for the last refused `send`.
    pub const last_refusal: i32 = -1;

    const imports = struct {
        extern "collector" fn http_send(ptr: [*]const u8, len: usize) i32;
        extern "collector" fn http_wait(handles: [*]const i32, count: usize, timeout_ms: i32) i32;
        extern "collector" fn http_status(h: i32) i32;
        extern "collector" fn http_body_len(h: i32) i32;
        extern "collector" fn http_read(h: i32, dst: [*]u8, len: usize, offset: i32) i32;
        extern "collector" fn http_error(h: i32, dst: [*]u8, len: usize) i32;
        extern "collector" fn http_close(h: i32) void;
    };

    fn field(w: *Writer, bytes: []const u8) Writer.Error!void {
        try w.writeInt(u32, @intCast(bytes.len), .little);
        try w.writeAll(bytes);
    }

    /// The bytes `collector.http_send` takes (ABI 17.2): each field a u32
    /// little-endian length and its bytes, the header count a bare u32.
    pub fn encode(w: *Writer, endpoint: []const u8, method: []const u8, target: []const u8, headers: []const Header, payload: []const u8) Writer.Error!void {
        try field(w, endpoint);
        try field(w, method);
        try field(w, target);
        try w.writeInt(u32, @intCast(headers.len), .little);
        for (headers) |h| {
            try field(w, h.name);
            try field(w, h.value);
        }
        try field(w, payload);
    }

    /// Starts a request: a handle >= 0, or a refusal (`err_*`).
    pub fn send(endpoint: []const u8, method: []const u8, target: []const u8, headers: []const Header, payload: []const u8) i32 {
        var req: Writer.Allocating = .init(allocator);
        defer req.deinit();
        encode(&req.writer, endpoint, method, target, headers, payload) catch return err_too_large;
        if (!is_wasm) return err_unavailable;
        const bytes = req.written();
        return imports.http_send(bytes.ptr, bytes.len);
    }

    /// The index in `handles` of one that has finished, or `wait_none`.
    pub fn wait(handles: []const i32, timeout_ms: i32) i32 {
        if (!is_wasm) return wait_none;
        return imports.http_wait(handles.ptr, handles.len, timeout_ms);
    }

    /// The HTTP status, `pending`, or a failure (`fail_*`).
    pub fn status(h: i32) i32 {
        if (!is_wasm) return err_no_handle;
        return imports.http_status(h);
    }

    /// The response body, allocated with `alloc`.
    pub fn responseBody(alloc: std.mem.Allocator, h: i32) ![]u8 {
        if (!is_wasm) return error.NoHandle;
        const len = imports.http_body_len(h);
        if (len < 0) return error.NoResponse;
        const out = try alloc.alloc(u8, @intCast(len));
        var at: usize = 0;
        while (at < out.len) {
            const n = imports.http_read(h, out[at..].ptr, out.len - at, @intCast(at));
            if (n <= 0) break;
            at += @intCast(n);
        }
        return out[0..at];
    }

    /// Why a request failed (`last_refusal`: the last refused `send`), in `buf`.
    pub fn errorText(h: i32, buf: []u8) []const u8 {
        if (!is_wasm) return "no outbound HTTP outside a collector host";
        const n = imports.http_error(h, buf.ptr, buf.len);
        return buf[0..@intCast(@max(n, 0))];
    }

    /// Forgets a request, cancelling it if it still runs.
    pub fn close(h: i32) void {
        if (is_wasm) imports.http_close(h);
    }

    /// Sends, waits at most `timeout_ms`, and returns the HTTP status (> 0) or a
    /// negative code (`fail_timeout` when the wait ended first).
    pub fn fetch(endpoint: []const u8, method: []const u8, target: []const u8, headers: []const Header, req_body: []const u8, timeout_ms: i32) i32 {
        const h = send(endpoint, method, target, headers, req_body);
        if (h < 0) return h;
        defer close(h);
        const handles = [_]i32{h};
        if (wait(&handles, timeout_ms) == wait_none) return fail_timeout;
        return status(h);
    }

    /// What every bundled dispatcher answers for a status (ABI 17.4): ok on
    /// 2xx/3xx; retry on 429, 5xx and a backend that cannot be reached (or a busy
    /// endpoint); reject on other 4xx and refusals.
    pub fn outcome(code: i32) Outcome {
        if (code >= 200 and code < 400) return .ok;
        if (code == 429 or code >= 500) return .retryf("the backend answered {d}", .{code});
        if (code >= 400) return .rejectf("the backend answered {d}", .{code});
        if (code == err_busy or code <= fail_connect) return .retryf("the backend could not be reached ({d})", .{code});
        return .rejectf("the host refused the request ({d}; see the daemon's log)", .{code});
    }
};

test "http requests are encoded as ABI 17.2 says, and outcomes follow the backend" {
    var buf: [256]u8 = undefined;
    var w: Writer = .fixed(&buf);
    try http.encode(&w, "e", "GET", "/", &.{.{ .name = "a", .value = "b" }}, "xy");
    const want = [_]u8{ 1, 0, 0, 0, 'e', 3, 0, 0, 0, 'G', 'E', 'T', 1, 0, 0, 0, '/', 1, 0, 0, 0, 1, 0, 0, 0, 'a', 1, 0, 0, 0, 'b', 2, 0, 0, 0, 'x', 'y' };
    try std.testing.expectEqualSlices(u8, &want, w.buffered());
    try std.testing.expectEqual(http.err_unavailable, http.send("e", "GET", "/", &.{}, ""));
    try std.testing.expect(http.outcome(204) == .ok);
    try std.testing.expect(http.outcome(503) == .retry);
    try std.testing.expect(http.outcome(429) == .retry);
    try std.testing.expect(http.outcome(404) == .reject);
    try std.testing.expect(http.outcome(http.fail_connect) == .retry);
    try std.testing.expect(http.outcome(http.err_unknown_endpoint) == .reject);
}

/// Files in directories the dispatcher grants (`dirs = [{ host, guest, writable }]`),
/// through WASI preview 1 directly (`std.os.wasi`). Only on wasm32-wasi.
///
/// Zig's `std.Io.Dir.createFile` has no append mode, and positional writes would
/// let several instances of a dispatcher overwrite each other's lines, so this
/// opens with `O_APPEND` itself.
pub const wasi = struct {
    const w = std.os.wasi;

    pub const OpenError = error{
        /// The path is not absolute (guest paths are absolute, e.g. `/data/x.jsonl`).
        NotAbsolute,
        /// No granted directory contains the path (check the dispatcher's `dirs`).
        NotGranted,
        /// The path names a granted directory itself, or another directory.
        IsDir,
        FileNotFound,
        /// Not writable (`writable = false`?) or not permitted.
        AccessDenied,
        Unexpected,
    };

    pub const WriteError = error{
        NoSpaceLeft,
        AccessDenied,
        Unexpected,
    };

    /// The errno of the last failed WASI call (`.SUCCESS` when the last error did
    /// not come from the host, e.g. `NotGranted`), for messages.
    pub var last_errno: w.errno_t = .SUCCESS;

    /// Formats as ` (errno NAME)` when the last error came with an errno, else as
    /// nothing: `setErrorf("cannot open {s}: {t}{f}", .{ path, err, collector.wasi.errnoText() })`.
    pub fn errnoText() ErrnoText {
        return .{ .errno = last_errno };
    }

    pub const ErrnoText = struct {
        errno: w.errno_t,
        pub fn format(e: ErrnoText, out: *Writer) Writer.Error!void {
            if (e.errno != .SUCCESS) try out.print(" (errno {t})", .{e.errno});
        }
    };

    /// A granted directory and the path relative to it.
    pub const Resolved = struct {
        dir_fd: w.fd_t,
        rel: []const u8,
    };

    /// Finds the granted directory (preopen) holding `path`: the longest preopen
    /// name that is a prefix of `path` at a `/` boundary.
    pub fn resolve(path: []const u8) OpenError!Resolved {
        if (builtin.os.tag != .wasi) @compileError("collector.wasi is for wasm32-wasi");
        if (path.len == 0 or path[0] != '/') return error.NotAbsolute;
        var best: ?Resolved = null;
        var best_len: usize = 0;
        var name_buf: [4096]u8 = undefined;
        var fd: w.fd_t = 3;
        while (fd < 1024) : (fd += 1) {
            var prestat: w.prestat_t = undefined;
            switch (w.fd_prestat_get(fd, &prestat)) {
                .SUCCESS => {},
                else => break,
            }
            if (prestat.pr_type != .DIR) continue;
            const name_len = prestat.u.dir.pr_name_len;
            if (name_len > name_buf.len) continue;
            if (w.fd_prestat_dir_name(fd, &name_buf, name_len) != .SUCCESS) continue;
            var name = name_buf[0..name_len];
            while (name.len > 1 and name[name.len - 1] == '/') name = name[0 .. name.len - 1];
            if (!std.mem.startsWith(u8, path, name)) continue;
            const rest = path[name.len..];
            const at_boundary = name.len == 1 or rest.len == 0 or rest[0] == '/';
            if (!at_boundary or name.len < best_len) continue;
            var rel = rest;
            while (rel.len > 0 and rel[0] == '/') rel = rel[1..];
            best = .{ .dir_fd = fd, .rel = rel };
            best_len = name.len;
        }
        const r = best orelse return error.NotGranted;
        if (r.rel.len == 0) return error.IsDir;
        return r;
    }

    fn openError(e: w.errno_t) OpenError {
        last_errno = e;
        return switch (e) {
            .NOENT, .NOTDIR => error.FileNotFound,
            .ACCES, .PERM, .NOTCAPABLE, .ROFS => error.AccessDenied,
            .ISDIR => error.IsDir,
            else => error.Unexpected,
        };
    }

    /// A file opened for appending; each `writeAll` lands at the end of the file.
    pub const AppendFile = struct {
        fd: w.fd_t,

        /// Opens (creating it if missing) the file at the absolute guest `path`.
        pub fn open(path: []const u8) OpenError!AppendFile {
            last_errno = .SUCCESS;
            const r = try resolve(path);
            var fd: w.fd_t = undefined;
            const rights: w.rights_t = .{ .FD_WRITE = true, .FD_DATASYNC = true, .FD_SYNC = true, .FD_FILESTAT_GET = true };
            const e = w.path_open(r.dir_fd, .{ .SYMLINK_FOLLOW = true }, r.rel.ptr, r.rel.len, .{ .CREAT = true }, rights, .{}, .{ .APPEND = true }, &fd);
            if (e != .SUCCESS) return openError(e);
            return .{ .fd = fd };
        }

        /// Writes all of `bytes` (one `fd_write` unless the host writes less).
        pub fn writeAll(f: AppendFile, bytes: []const u8) WriteError!void {
            last_errno = .SUCCESS;
            var rest = bytes;
            while (rest.len > 0) {
                const iov = [1]w.ciovec_t{.{ .base = rest.ptr, .len = rest.len }};
                var n: usize = 0;
                const e = w.fd_write(f.fd, &iov, 1, &n);
                switch (e) {
                    .SUCCESS => rest = rest[n..],
                    .INTR, .AGAIN => {},
                    else => {
                        last_errno = e;
                        return switch (e) {
                            .NOSPC, .DQUOT, .FBIG => error.NoSpaceLeft,
                            .ACCES, .PERM, .NOTCAPABLE, .BADF => error.AccessDenied,
                            else => error.Unexpected,
                        };
                    },
                }
            }
        }

        /// Current size of the file in bytes.
        pub fn size(f: AppendFile) WriteError!u64 {
            var st: w.filestat_t = undefined;
            const e = w.fd_filestat_get(f.fd, &st);
            if (e != .SUCCESS) {
                last_errno = e;
                return error.Unexpected;
            }
            return st.size;
        }

        pub fn close(f: AppendFile) void {
            _ = w.fd_close(f.fd);
        }
    };
};

// ====================================================================== tests

test {
    std.testing.refAllDecls(@This());
    std.testing.refAllDecls(json);
}

fn jsonOf(comptime f: anytype, args: anytype) ![]u8 {
    var a: Writer.Allocating = .init(std.testing.allocator);
    errdefer a.deinit();
    try @call(.auto, f, .{&a.writer} ++ args);
    return a.toOwnedSlice();
}

fn expectJson(expected: []const u8, comptime f: anytype, args: anytype) !void {
    const got = try jsonOf(f, args);
    defer std.testing.allocator.free(got);
    try std.testing.expectEqualStrings(expected, got);
}

test "formatF64 matches Rust's {:?} (testdata/floats.txt, made by testdata/floats.rs)" {
    const data = @embedFile("testdata/floats.txt");
    var lines = std.mem.tokenizeScalar(u8, data, '\n');
    var count: usize = 0;
    while (lines.next()) |line| {
        const sp = std.mem.indexOfScalar(u8, line, ' ').?;
        const bits = try std.fmt.parseInt(u64, line[0..sp], 16);
        var buf: [json.f64_max_len]u8 = undefined;
        const got = json.formatF64(&buf, @bitCast(bits));
        std.testing.expectEqualStrings(line[sp + 1 ..], got) catch |e| {
            std.debug.print("bits {s}\n", .{line[0..sp]});
            return e;
        };
        // And it reads back as the same bits.
        const back = try std.fmt.parseFloat(f64, got);
        try std.testing.expectEqual(bits, @as(u64, @bitCast(back)));
        count += 1;
    }
    try std.testing.expect(count > 1000);
}

test "non-finite floats and numbers" {
    try expectJson("NaN", json.writeF64, .{std.math.nan(f64)});
    try expectJson("Infinity", json.writeF64, .{std.math.inf(f64)});
    try expectJson("-Infinity", json.writeF64, .{-std.math.inf(f64)});
    try expectJson("-0.0", json.writeF64, .{-0.0});
    try expectJson("512.0", json.writeF64, .{512.0});
    try expectJson("1e16", json.writeF64, .{1e16});
    try expectJson("1e-5", json.writeF64, .{1e-5});
    try expectJson("-9223372036854775808", json.writeI64, .{std.math.minInt(i64)});
    try expectJson("9223372036854775807", json.writeI64, .{std.math.maxInt(i64)});
    try expectJson("0", json.writeI64, .{0});
    try expectJson("18446744073709551615", json.writeU64, .{std.math.maxInt(u64)});
    try expectJson("4096", json.writeNumber, .{Number{ .int = 4096 }});
    try expectJson("4096.0", json.writeNumber, .{Number{ .float = 4096 }});
}

test "string escapes as the Rust SDK" {
    try expectJson("\"a\\\"b\\\\c\\nd\\re\\tf\\u0000\\u0001\\u001f\\u007f\u{e9}\u{1f680}\"", json.writeStr, .{"a\"b\\c\nd\re\tf\x00\x01\x1f\x7f\u{e9}\u{1f680}"});
    try expectJson("\"\"", json.writeStr, .{""});
}

test "string escapes: the 8-byte fast path agrees with a byte-by-byte reference" {
    var prng: std.Random.DefaultPrng = .init(42);
    const r = prng.random();
    const alphabet = "ab\"\\\n\r\t\x00\x01\x1f\x20\x7f\x80\xc3\xa9~!";
    var buf: [64]u8 = undefined;
    for (0..20000) |_| {
        const n = r.uintLessThan(usize, buf.len);
        for (buf[0..n]) |*b| b.* = if (r.boolean()) alphabet[r.uintLessThan(usize, alphabet.len)] else r.int(u8);
        const got = try jsonOf(json.writeStr, .{buf[0..n]});
        defer std.testing.allocator.free(got);
        var want: std.ArrayList(u8) = .empty;
        defer want.deinit(std.testing.allocator);
        try want.append(std.testing.allocator, '"');
        for (buf[0..n]) |b| {
            const uesc = [6]u8{ '\\', 'u', '0', '0', "0123456789abcdef"[b >> 4], "0123456789abcdef"[b & 0xf] };
            const raw_byte = [1]u8{b};
            const esc: []const u8 = switch (b) {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                0...8, 11, 12, 14...0x1f, 0x7f => &uesc,
                else => &raw_byte,
            };
            try want.appendSlice(std.testing.allocator, esc);
        }
        try want.append(std.testing.allocator, '"');
        try std.testing.expectEqualStrings(want.items, got);
    }
}

test "bytes are written as lossy UTF-8 (as Rust's from_utf8_lossy)" {
    try expectJson("\"ok\"", json.writeBytesLossy, .{"ok"});
    // Unicode ch. 3 tables 3-8 to 3-11 (the same cases std.unicode.fmtUtf8 tests).
    try expectJson("\"" ++ rep("\u{fffd}", 8) ++ "A\"", json.writeBytesLossy, .{"\xC0\xAF\xE0\x80\xBF\xF0\x81\x82A"});
    try expectJson("\"" ++ rep("\u{fffd}", 8) ++ "A\"", json.writeBytesLossy, .{"\xED\xA0\x80\xED\xBF\xBF\xED\xAFA"});
    try expectJson("\"" ++ rep("\u{fffd}", 5) ++ "A" ++ rep("\u{fffd}", 2) ++ "B\"", json.writeBytesLossy, .{"\xF4\x91\x92\x93\xFFA\x80\xBFB"});
    try expectJson("\"" ++ rep("\u{fffd}", 4) ++ "A\"", json.writeBytesLossy, .{"\xE1\x80\xE2\xF0\x91\x92\xF1\xBFA"});
    try expectJson("\"a\\n\u{fffd}\\\"\u{e9}\u{fffd}\"", json.writeBytesLossy, .{"a\n\xff\"\xc3\xa9\xf0\x9f"});
}

/// Encodes test batches (the subset of the Rust encoder the tests need).
const TestEnc = struct {
    list: std.ArrayList(u8) = .empty,

    fn deinit(e: *TestEnc) void {
        e.list.deinit(std.testing.allocator);
    }
    fn raw(e: *TestEnc, b: []const u8) !void {
        try e.list.appendSlice(std.testing.allocator, b);
    }
    fn int(e: *TestEnc, comptime T: type, v: T) !void {
        var b: [@sizeOf(T)]u8 = undefined;
        std.mem.writeInt(T, &b, v, .little);
        try e.raw(&b);
    }
    fn str(e: *TestEnc, s: []const u8) !void {
        try e.int(u64, s.len);
        try e.raw(s);
    }
    /// A sample with the given volume, metadata value bytes and extra-map bytes.
    fn sample(e: *TestEnc, volume: ?[]const u8, metadata: ?[]const u8, extra: []const u8) !void {
        for ([_][]const u8{ "openstack", "cpu", "gauge", "ns" }) |s| try e.str(s);
        if (volume) |v| {
            try e.raw(&.{1});
            try e.raw(v);
        } else try e.raw(&.{0});
        try e.raw(&.{ 0, 1, 0, 1, 1 }); // user_id absent, user_name null, project_id "p"
        try e.str("p");
        try e.raw(&.{0}); // project_name absent
        try e.str("r");
        try e.str("t");
        if (metadata) |m| {
            try e.raw(&.{1});
            try e.raw(m);
        } else try e.raw(&.{0});
        try e.str("m");
        try e.raw(&.{ 1, 0 }); // monotonic_time null
        try e.raw(&.{0}); // no signature
        try e.raw(extra);
    }
};

inline fn rep(comptime s: []const u8, comptime n: usize) []const u8 {
    return comptime blk: {
        var out: []const u8 = "";
        for (0..n) |_| out = out ++ s;
        break :blk out;
    };
}

inline fn valueBytes(comptime t: u32, comptime payload: []const u8) []const u8 {
    return comptime blk: {
        var b: [4]u8 = undefined;
        std.mem.writeInt(u32, &b, t, .little);
        const c = b;
        break :blk &c ++ payload;
    };
}

test "NaN, infinities, bytes values and nested lists/maps round-trip to JSON" {
    var e: TestEnc = .{};
    defer e.deinit();
    try e.int(u64, 1);
    var vol: [12]u8 = undefined;
    std.mem.writeInt(u32, vol[0..4], tag.num_float, .little);
    std.mem.writeInt(u64, vol[4..12], @bitCast(std.math.nan(f64)), .little);
    // metadata: {"inf": Infinity, "ninf": -Infinity, "bin": bytes "a\xff", "l": [null, true, [{}]]}
    var md: TestEnc = .{};
    defer md.deinit();
    try md.int(u32, tag.map);
    try md.int(u64, 4);
    try md.str("inf");
    try md.int(u32, tag.float);
    try md.int(u64, @bitCast(std.math.inf(f64)));
    try md.str("ninf");
    try md.int(u32, tag.float);
    try md.int(u64, @bitCast(-std.math.inf(f64)));
    try md.str("bin");
    try md.int(u32, tag.bytes);
    try md.str("a\xff");
    try md.str("l");
    try md.int(u32, tag.list);
    try md.int(u64, 3);
    try md.int(u32, tag.null_);
    try md.int(u32, tag.bool_);
    try md.raw(&.{1});
    try md.int(u32, tag.list);
    try md.int(u64, 1);
    try md.int(u32, tag.map);
    try md.int(u64, 0);
    // extra: {"publisher_id": "x"}
    var ex: TestEnc = .{};
    defer ex.deinit();
    try ex.int(u64, 1);
    try ex.str("publisher_id");
    try ex.int(u32, tag.str);
    try ex.str("x");
    try e.sample(&vol, md.list.items, ex.list.items);

    const batch = try Batch.init(e.list.items);
    var it = batch.iterator();
    const s = (try it.next()).?;
    try std.testing.expect((try it.next()) == null);
    try it.finish();
    try std.testing.expectEqualStrings("x", (try s.extra.get("publisher_id")).?.asStr().?);
    try std.testing.expect((try s.resource_metadata.?.get("nope")) == null);
    try std.testing.expectEqual(std.math.inf(f64), (try s.resource_metadata.?.get("inf")).?.asF64().?);
    try expectJson(
        "{\"source\":\"openstack\",\"counter_name\":\"cpu\",\"counter_type\":\"gauge\",\"counter_unit\":\"ns\"," ++
            "\"counter_volume\":NaN,\"user_name\":null,\"project_id\":\"p\",\"resource_id\":\"r\",\"timestamp\":\"t\"," ++
            "\"resource_metadata\":{\"inf\":Infinity,\"ninf\":-Infinity,\"bin\":\"a\u{fffd}\",\"l\":[null,true,[{}]]}," ++
            "\"message_id\":\"m\",\"monotonic_time\":null,\"publisher_id\":\"x\"}",
        json.writeSample,
        .{&s},
    );
}

test "malformed input gives errors" {
    const vol_int = valueBytes(tag.num_int, rep("\x00", 8));
    const no_extra = rep("\x00", 8);
    // A good sample to start from.
    {
        var e: TestEnc = .{};
        defer e.deinit();
        try e.int(u64, 1);
        try e.sample(vol_int, null, no_extra);
        try (try Batch.init(e.list.items)).validate();
        // Trailing byte.
        try e.raw(&.{0});
        try std.testing.expectError(error.TrailingBytes, (try Batch.init(e.list.items)).validate());
    }
    // Unknown number tag.
    {
        var e: TestEnc = .{};
        defer e.deinit();
        try e.int(u64, 1);
        try e.sample(valueBytes(7, rep("\x00", 8)), null, no_extra);
        var it = (try Batch.init(e.list.items)).iterator();
        try std.testing.expectError(error.UnknownTag, it.next());
        try std.testing.expectError(error.UnknownTag, it.next());
        try std.testing.expectError(error.BatchEndedEarly, it.finish());
    }
    // Bad bool, unknown value tag, invalid UTF-8 (top level), huge length, too deep.
    {
        var e: TestEnc = .{};
        defer e.deinit();
        try e.int(u64, 1);
        try e.sample(vol_int, valueBytes(tag.bool_, &.{2}), no_extra);
        try std.testing.expectError(error.InvalidBool, (try Batch.init(e.list.items)).validate());
    }
    {
        var e: TestEnc = .{};
        defer e.deinit();
        try e.int(u64, 1);
        try e.sample(vol_int, valueBytes(9, ""), no_extra);
        try std.testing.expectError(error.UnknownTag, (try Batch.init(e.list.items)).validate());
    }
    {
        var e: TestEnc = .{};
        defer e.deinit();
        try e.int(u64, 1);
        try e.str("\xff");
        try std.testing.expectError(error.InvalidUtf8, (try Batch.init(e.list.items)).validate());
        var it = (try Batch.init(e.list.items)).iterator();
        _ = it.next() catch {};
        try std.testing.expectEqual(@as(usize, 8), it.offset());
    }
    {
        var e: TestEnc = .{};
        defer e.deinit();
        try e.int(u64, 1);
        try e.int(u64, std.math.maxInt(u64));
        try std.testing.expectError(
            if (@sizeOf(usize) < 8) error.LengthTooLarge else error.UnexpectedEnd,
            (try Batch.init(e.list.items)).validate(),
        );
    }
    {
        // max_nesting (64) levels with the sample dict (ABI.md 9.7): a resource_metadata
        // or extra value may hold 63 levels of lists/maps (depths 0..62), the innermost
        // empty or holding a null (at depth 63); 64 levels are refused, an empty
        // innermost list or map counting too. Maps (one key "k") alternate with lists
        // when `maps`.
        try std.testing.expectEqual(@as(u32, 64), max_nesting);
        try std.testing.expectEqual(@as(u32, 63), max_depth);
        for ([_]bool{ false, true }) |in_extra| {
            for ([_]usize{ 63, 64 }) |levels| {
                for ([_]bool{ false, true }) |with_null| {
                    for ([_]bool{ false, true }) |maps| {
                        var v: TestEnc = .{};
                        defer v.deinit();
                        for (0..levels) |i| {
                            const is_map = maps and i % 2 == 1;
                            const inner: u64 = if (i + 1 < levels) 1 else @intFromBool(with_null);
                            try v.int(u32, if (is_map) tag.map else tag.list);
                            try v.int(u64, inner);
                            if (is_map and inner == 1) try v.str("k");
                        }
                        if (with_null) try v.int(u32, tag.null_);
                        var ex: TestEnc = .{};
                        defer ex.deinit();
                        if (in_extra) {
                            try ex.int(u64, 1);
                            try ex.str("x_deep");
                            try ex.raw(v.list.items);
                        } else try ex.int(u64, 0);
                        var e: TestEnc = .{};
                        defer e.deinit();
                        try e.int(u64, 1);
                        try e.sample(vol_int, if (in_extra) null else v.list.items, ex.list.items);
                        const batch = try Batch.init(e.list.items);
                        const r = batch.validate();
                        if (levels == 64) {
                            try std.testing.expectError(error.TooDeep, r);
                            continue;
                        }
                        try r;
                        // Accepted values are written out in full (the writer walks them
                        // with the iterators, which check the depth again).
                        var it = batch.iterator();
                        const s = (try it.next()).?;
                        const text = try jsonOf(json.writeSample, .{&s});
                        defer std.testing.allocator.free(text);
                        if (!maps) {
                            var want: std.ArrayList(u8) = .empty;
                            defer want.deinit(std.testing.allocator);
                            try want.appendSlice(std.testing.allocator, if (in_extra) "\"x_deep\":" else "\"resource_metadata\":");
                            try want.appendNTimes(std.testing.allocator, '[', levels);
                            if (with_null) try want.appendSlice(std.testing.allocator, "null");
                            try want.appendNTimes(std.testing.allocator, ']', levels);
                            try std.testing.expect(std.mem.indexOf(u8, text, want.items) != null);
                        }
                        // The field's value is at depth 0, its items at 1.
                        const top = if (in_extra) (try s.extra.get("x_deep")).? else s.resource_metadata.?;
                        try std.testing.expectEqual(@as(u32, 0), s.extra.item_depth);
                        try std.testing.expectEqual(@as(u32, 1), top.list.item_depth);
                    }
                }
            }
        }
    }
    {
        // Invalid UTF-8 inside metadata: found when read, not when decoded.
        var md: TestEnc = .{};
        defer md.deinit();
        try md.int(u32, tag.map);
        try md.int(u64, 1);
        try md.str("k");
        try md.int(u32, tag.str);
        try md.str("\xc3");
        var e: TestEnc = .{};
        defer e.deinit();
        try e.int(u64, 1);
        try e.sample(vol_int, md.list.items, no_extra);
        var it = (try Batch.init(e.list.items)).iterator();
        const s = (try it.next()).?;
        try std.testing.expectError(error.InvalidUtf8, jsonOf(json.writeSample, .{&s}));
    }
    try std.testing.expectError(error.UnexpectedEnd, Batch.init("1234567"));
}
