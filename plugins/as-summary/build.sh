#!/usr/bin/env bash
# Builds as-summary.wasm into $1 (default ../../target/plugins, relative to this folder).
# Installs the pinned toolchain from package-lock.json first when node_modules is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out_dir="${1:-$here/../../target/plugins}"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
cd "$here"
if [ ! -x node_modules/.bin/asc ] || [ ! -e node_modules/collector-plugin-sdk ]; then
  npm ci --no-audit --no-fund
fi
# --runtime minimal: TLSF allocator and a GC that the SDK runs after every call.
# --use abort=: no env.abort import (the host provides only collector.* and WASI).
node_modules/.bin/asc assembly/index.ts --runtime minimal --use abort= -O3 --noAssert \
  -o "$out_dir/as-summary.wasm"
echo "built $out_dir/as-summary.wasm ($(wc -c <"$out_dir/as-summary.wasm") bytes)"
