#!/usr/bin/env bash
# Tests of the Zig SDK (native target, safety checks on):
#   0. `zig fmt --check` of the SDK, this test and the zig-forwarder example;
#   1. `zig test test.zig`: collector.zig's unit tests (float formatting against
#      Rust's output, escapes, lossy bytes, NaN/Infinity, malformed input), and for
#      every golden .bin: full decode + JSON compared in-language with the .json,
#      every strict prefix must fail, random corruptions must not crash;
#   2. golden/compare.py on the JSON lines the test wrote for each vector.
# Exit status non-zero on any failure. Uses the pinned Zig (see
# plugins/zig-forwarder/build.sh; the venv is created when missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ZIG_VERSION="${ZIG_VERSION:-0.17.1}"
ZIG_VENV="${ZIG_VENV:-$repo/.venv-zig}"

have="$("$ZIG_VENV/bin/python" -m ziglang version 2>/dev/null || true)"
if [ "$have" != "$ZIG_VERSION" ]; then
  echo "installing ziglang==$ZIG_VERSION into $ZIG_VENV" >&2
  [ -x "$ZIG_VENV/bin/python" ] || python3 -m venv "$ZIG_VENV"
  "$ZIG_VENV/bin/pip" install --quiet --disable-pip-version-check "ziglang==$ZIG_VERSION"
fi

golden="$repo/plugin-sdk/golden"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cd "$here"
"$ZIG_VENV/bin/python" -m ziglang fmt --check collector.zig test.zig testdata/http_plugin.zig "$repo/plugins/zig-forwarder/forwarder.zig" \
  || { echo "zig fmt: the files above need formatting" >&2; exit 1; }
COLLECTOR_GOLDEN_DIR="$golden" ZIG_SDK_JSONL_DIR="$out" \
  "$ZIG_VENV/bin/python" -m ziglang test test.zig

"$golden/compare_dir.sh" "$out"
n="$(ls "$out"/*.jsonl | wc -l)"

# The HTTP binding on wasm: a plugin calling every collector.http function,
# checked by the daemon's `collector check` against its local endpoint.
collector="$repo/target/debug/collector"
if [ -x "$collector" ]; then
  "$ZIG_VENV/bin/python" -m ziglang build-exe -target wasm32-wasi -fno-entry -rdynamic -O ReleaseSmall -fstrip \
    --dep collector -Mroot=testdata/http_plugin.zig -Mcollector=collector.zig \
    --name zig-http-test -femit-bin="$out/zig-http-test.wasm"
  report="$("$collector" check "$out/zig-http-test.wasm" --endpoint target 2>/dev/null)"
  grep -q "requests reached the local endpoint" <<<"$report" \
    || { echo "zig SDK: the HTTP binding sent nothing:" >&2; echo "$report" >&2; exit 1; }
  echo "zig SDK: HTTP binding ok ($(grep -o '[0-9]* requests reached' <<<"$report"))"
else
  echo "zig SDK: $collector not built; HTTP binding not checked on wasm" >&2
  exit 1
fi
echo "zig SDK: all tests passed ($n golden vectors)"
