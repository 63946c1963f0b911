//! zig-forwarder: a collector dispatcher plugin in Zig (wasm32-wasi).
//!
//! Appends one JSON line per sample to a file in a granted directory:
//!
//!     {"message_id":"…","counter_name":"…","counter_volume":<number as in the sample>}
//!
//! `counter_volume` keeps the sample's number type: integers without a decimal
//! point (`4096`, `18446744073709551615`), floats with one or an exponent
//! (`209.767`, `512.0`, `1e16`), `NaN`/`Infinity`/`-Infinity`, and `null` when the
//! sample had none. Strings are escaped as in the Rust SDK.
//!
//! Config (JSON): `{"path": "/data/zig.jsonl"}` (the default). Unknown keys are refused.
//!
//! A batch is written with a single append after the whole batch has been decoded:
//! a malformed batch is rejected without writing anything, and a failed write is
//! answered with RETRY (the lines of a partly written batch may then appear twice).

const std = @import("std");
const collector = @import("collector");

pub const panic = collector.panic;

comptime {
    collector.exportPlugin(@This());
}

const Config = struct {
    path: []const u8 = "/data/zig.jsonl",
};

var path: []const u8 = "";
var file: collector.wasi.AppendFile = undefined;
/// The lines of the current batch; its capacity is kept between batches.
var out: std.Io.Writer.Allocating = undefined;

pub fn init(config: []const u8) !void {
    const cfg = collector.parseConfig(Config, config) catch |e| {
        collector.setErrorf("invalid config {s}: {t} (expected {{\"path\": \"/data/zig.jsonl\"}})", .{ config, e });
        return e;
    };
    path = cfg.path;
    file = collector.wasi.AppendFile.open(path) catch |e| {
        collector.setErrorf("cannot open {s}: {t}{f} (the path must be in a directory granted, writable, by the dispatcher's `dirs`)", .{ path, e, collector.wasi.errnoText() });
        return e;
    };
    out = .init(collector.allocator);
    collector.info("zig-forwarder: appending samples to {s}", .{path});
}

fn writeLine(w: *std.Io.Writer, s: *const collector.Sample) std.Io.Writer.Error!void {
    try w.writeAll("{\"message_id\":");
    try collector.json.writeStr(w, s.message_id);
    try w.writeAll(",\"counter_name\":");
    try collector.json.writeStr(w, s.counter_name);
    try w.writeAll(",\"counter_volume\":");
    if (s.counter_volume) |v| try collector.json.writeNumber(w, v) else try w.writeAll("null");
    try w.writeAll("}\n");
}

pub fn dispatch(batch: collector.Batch) collector.Outcome {
    out.clearRetainingCapacity();
    var it = batch.iterator();
    while (it.next() catch |e| return .rejectf("batch decode error at byte {d}: {t}", .{ it.offset(), e })) |s| {
        writeLine(&out.writer, &s) catch return .{ .retry = "out of memory" };
    }
    it.finish() catch |e| return .rejectf("batch decode error at byte {d}: {t}", .{ it.offset(), e });
    file.writeAll(out.written()) catch |e| {
        return .retryf("cannot write {s}: {t}{f}", .{ path, e, collector.wasi.errnoText() });
    };
    return .ok;
}
