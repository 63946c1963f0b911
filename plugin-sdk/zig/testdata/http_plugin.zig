//! A plugin that uses every function of collector.http, for test.sh: built for
//! wasm32-wasi and run by `collector check --endpoint target`, whose local
//! endpoint must see its requests.
const std = @import("std");
const collector = @import("collector");
pub const panic = collector.panic;
comptime {
    collector.exportPlugin(@This());
}
pub fn init(config: []const u8) !void {
    _ = config;
}
pub fn dispatch(batch: collector.Batch) collector.Outcome {
    _ = batch;
    const s = collector.http.fetch("target", "POST", "/z", &.{.{ .name = "Content-Type", .value = "text/plain" }}, "hello", 2000);
    var buf: [64]u8 = undefined;
    _ = collector.http.errorText(-1, &buf);
    const h = collector.http.send("target", "GET", "/", &.{}, "");
    if (h >= 0) {
        const b = collector.http.responseBody(collector.allocator, h) catch &.{};
        _ = b;
        collector.http.close(h);
    }
    return collector.http.outcome(s);
}
