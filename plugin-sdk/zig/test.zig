//! Tests of the Zig SDK against the golden vectors (ABI.md section 11), plus the
//! unit tests of collector.zig. Run by test.sh:
//!
//!     COLLECTOR_GOLDEN_DIR=../golden ZIG_SDK_JSONL_DIR=/tmp/out zig test test.zig
//!
//! For every NNN.bin in COLLECTOR_GOLDEN_DIR (default ../golden; the folder is
//! listed, names are not hard-coded):
//!  1. the whole batch decodes, the count equals the JSON array's length, and
//!     decoding ends exactly at the last byte;
//!  2. each sample written with collector.json.writeSample, parsed back, equals the
//!     matching element of NNN.json as parsed JSON (same keys, null vs absent,
//!     integers and floats kept apart, -0.0 vs 0.0); the lines are also written to
//!     ZIG_SDK_JSONL_DIR/NNN.jsonl (if set) for golden/compare.py;
//!  3. every strict prefix fails to decode, and
//!  4. random corruptions of every vector decode or fail without crashing (safety
//!     checks are on in `zig test`, so an out-of-bounds access would panic).

const std = @import("std");
const collector = @import("collector.zig");
const Writer = std.Io.Writer;
const testing = std.testing;
const gpa = testing.allocator;

test {
    _ = collector;
}

const Golden = struct {
    name: []const u8,
    bin: []u8,
    json: []u8,
};

fn goldenDir() []const u8 {
    return testing.environ.getPosix("COLLECTOR_GOLDEN_DIR") orelse "../golden";
}

/// Every NNN.bin with its NNN.json, sorted by name.
fn loadGolden(arena: std.mem.Allocator) ![]Golden {
    const io = testing.io;
    var dir = try std.Io.Dir.cwd().openDir(io, goldenDir(), .{ .iterate = true });
    defer dir.close(io);
    var list: std.ArrayList(Golden) = .empty;
    var it = dir.iterate();
    while (try it.next(io)) |entry| {
        if (!std.mem.endsWith(u8, entry.name, ".bin")) continue;
        const stem = try arena.dupe(u8, entry.name[0 .. entry.name.len - 4]);
        const json_name = try std.fmt.allocPrint(arena, "{s}.json", .{stem});
        try list.append(arena, .{
            .name = stem,
            .bin = try dir.readFileAlloc(io, entry.name, arena, .limited(1 << 26)),
            .json = try dir.readFileAlloc(io, json_name, arena, .limited(1 << 26)),
        });
    }
    std.mem.sort(Golden, list.items, {}, struct {
        fn lt(_: void, a: Golden, b: Golden) bool {
            return std.mem.lessThan(u8, a.name, b.name);
        }
    }.lt);
    return list.items;
}

/// Parsed-JSON equality with integers, big integers and floats kept apart.
fn same(a: std.json.Value, b: std.json.Value, path: []const u8) bool {
    const ok = switch (a) {
        .null => b == .null,
        .bool => |x| b == .bool and b.bool == x,
        .integer => |x| b == .integer and b.integer == x,
        .float => |x| b == .float and @as(u64, @bitCast(b.float)) == @as(u64, @bitCast(x)),
        .number_string => |x| b == .number_string and std.mem.eql(u8, x, b.number_string),
        .string => |x| b == .string and std.mem.eql(u8, x, b.string),
        .array => |x| blk: {
            if (b != .array or b.array.items.len != x.items.len) break :blk false;
            for (x.items, b.array.items) |p, q| if (!same(p, q, path)) break :blk false;
            break :blk true;
        },
        .object => |x| blk: {
            if (b != .object or b.object.count() != x.count()) break :blk false;
            var it = x.iterator();
            while (it.next()) |e| {
                const other = b.object.get(e.key_ptr.*) orelse {
                    std.debug.print("{s}: key {s} missing\n", .{ path, e.key_ptr.* });
                    break :blk false;
                };
                if (!same(e.value_ptr.*, other, e.key_ptr.*)) break :blk false;
            }
            break :blk true;
        },
    };
    if (!ok) std.debug.print("{s}: {any} != {any}\n", .{ path, a, b });
    return ok;
}

test "golden vectors: decode, JSON, exact end" {
    var arena_state: std.heap.ArenaAllocator = .init(gpa);
    defer arena_state.deinit();
    const arena = arena_state.allocator();
    const vectors = try loadGolden(arena);
    try testing.expect(vectors.len >= 4);

    const io = testing.io;
    const out_dir_path = testing.environ.getPosix("ZIG_SDK_JSONL_DIR");
    var out_dir: ?std.Io.Dir = if (out_dir_path) |p| try std.Io.Dir.cwd().openDir(io, p, .{}) else null;
    defer if (out_dir) |*d| d.close(io);

    for (vectors) |g| {
        const expected = try std.json.parseFromSliceLeaky(std.json.Value, arena, g.json, .{});
        const batch = try collector.Batch.init(g.bin);
        try testing.expectEqual(@as(u64, expected.array.items.len), batch.len());

        var lines: Writer.Allocating = .init(arena);
        var it = batch.iterator();
        var i: usize = 0;
        while (try it.next()) |s| : (i += 1) {
            var line: Writer.Allocating = .init(arena);
            try collector.json.writeSample(&line.writer, &s);
            const got = try std.json.parseFromSliceLeaky(std.json.Value, arena, line.written(), .{});
            if (!same(expected.array.items[i], got, g.name)) {
                std.debug.print("{s} sample {d}: {s}\n", .{ g.name, i, line.written() });
                return error.TestGoldenMismatch;
            }
            try lines.writer.writeAll(line.written());
            try lines.writer.writeByte('\n');
        }
        try testing.expectEqual(expected.array.items.len, i);
        try it.finish();
        try testing.expectEqual(g.bin.len, it.offset());

        if (out_dir) |d| {
            const name = try std.fmt.allocPrint(arena, "{s}.jsonl", .{g.name});
            try d.writeFile(io, .{ .sub_path = name, .data = lines.written() });
        }
    }
}

/// Decodes everything (samples, JSON of each, nested maps/lists) and reports
/// whether the whole batch was valid.
fn decodeAll(bytes: []const u8, scratch: *Writer.Allocating) bool {
    const batch = collector.Batch.init(bytes) catch return false;
    var it = batch.iterator();
    while (it.next() catch return false) |s| {
        scratch.clearRetainingCapacity();
        collector.json.writeSample(&scratch.writer, &s) catch |e| switch (e) {
            error.WriteFailed => unreachable,
            else => return false,
        };
    }
    it.finish() catch return false;
    return true;
}

test "golden vectors: every strict prefix fails to decode" {
    var arena_state: std.heap.ArenaAllocator = .init(gpa);
    defer arena_state.deinit();
    const vectors = try loadGolden(arena_state.allocator());
    var scratch: Writer.Allocating = .init(gpa);
    defer scratch.deinit();
    var prefixes: usize = 0;
    for (vectors) |g| {
        try testing.expect(decodeAll(g.bin, &scratch));
        for (0..g.bin.len) |n| {
            if (decodeAll(g.bin[0..n], &scratch)) {
                std.debug.print("{s}: prefix of {d} bytes decoded\n", .{ g.name, n });
                return error.TestPrefixDecoded;
            }
            prefixes += 1;
        }
    }
    try testing.expect(prefixes > 8000);
}

test "golden vectors: random corruptions never crash" {
    var arena_state: std.heap.ArenaAllocator = .init(gpa);
    defer arena_state.deinit();
    const vectors = try loadGolden(arena_state.allocator());
    var scratch: Writer.Allocating = .init(gpa);
    defer scratch.deinit();
    var prng: std.Random.DefaultPrng = .init(0x5eed_c011_ec70);
    const r = prng.random();
    var buf: std.ArrayList(u8) = .empty;
    defer buf.deinit(gpa);
    var valid: usize = 0;
    for (vectors) |g| {
        for (0..3000) |_| {
            buf.clearRetainingCapacity();
            try buf.appendSlice(gpa, g.bin);
            const flips = 1 + r.uintLessThan(usize, 4);
            for (0..flips) |_| {
                const at = r.uintLessThan(usize, buf.items.len);
                buf.items[at] = switch (r.uintLessThan(u8, 4)) {
                    0 => 0,
                    1 => 0xff,
                    2 => buf.items[at] +% 1,
                    else => r.int(u8),
                };
            }
            if (decodeAll(buf.items, &scratch)) valid += 1;
        }
    }
    std.debug.print("corruptions still valid: {d}\n", .{valid});
}
