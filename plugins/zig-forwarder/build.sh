#!/usr/bin/env bash
# Builds zig-forwarder.wasm (wasm32-wasi) with the pinned Zig from PyPI.
#
#   plugins/zig-forwarder/build.sh [OUT_DIR]
#
# OUT_DIR: where zig-forwarder.wasm goes; a relative OUT_DIR is relative to the current
# directory. Default: ../../target/plugins relative to this script, i.e. <repo>/target/plugins.
#
# Creates the virtualenv .venv-zig at the repository root with ziglang==$ZIG_VERSION
# when it is missing (or holds another version). Environment:
#   ZIG_VERSION   the ziglang release to use (default 0.17.1, the one the SDK is tested with)
#   ZIG_VENV      the virtualenv (default: <repo>/.venv-zig)
#   ZIG_OPTIMIZE  ReleaseFast (default), ReleaseSafe or ReleaseSmall
#   ZIG_STACK     wasm stack size in bytes (default 1048576; Zig's own default is 16 MiB,
#                 which would count against the dispatcher's memory_limit_bytes)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$here/../../target/plugins}"

ZIG_VERSION="${ZIG_VERSION:-0.17.1}"
ZIG_VENV="${ZIG_VENV:-$repo/.venv-zig}"
ZIG_OPTIMIZE="${ZIG_OPTIMIZE:-ReleaseFast}"
ZIG_STACK="${ZIG_STACK:-1048576}"

have="$("$ZIG_VENV/bin/python" -m ziglang version 2>/dev/null || true)"
if [ "$have" != "$ZIG_VERSION" ]; then
  echo "installing ziglang==$ZIG_VERSION into $ZIG_VENV" >&2
  [ -x "$ZIG_VENV/bin/python" ] || python3 -m venv "$ZIG_VENV"
  "$ZIG_VENV/bin/pip" install --quiet --disable-pip-version-check "ziglang==$ZIG_VERSION"
fi

mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$here"
"$ZIG_VENV/bin/python" -m ziglang build-exe \
  -target wasm32-wasi -fno-entry -rdynamic -O "$ZIG_OPTIMIZE" -fstrip --stack "$ZIG_STACK" \
  --dep collector -Mroot=forwarder.zig -Mcollector="$repo/plugin-sdk/zig/collector.zig" \
  --name zig-forwarder -femit-bin="$out/zig-forwarder.wasm"
echo "built $out/zig-forwarder.wasm ($(wc -c < "$out/zig-forwarder.wasm") bytes, Zig $ZIG_VERSION, $ZIG_OPTIMIZE)"
