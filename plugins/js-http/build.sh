#!/usr/bin/env bash
# Builds js-http.wasm into DIR (default: target/plugins): a WebAssembly
# component of the world collector:dispatcher@1.0.0, from app.js and the
# JavaScript SDK (plugin-sdk/js), by componentize-js (installed into
# .js-components when missing: no download but npm's).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
"$repo/plugin-sdk/js/componentize.sh" "$here" "${1:-$repo/target/plugins}/js-http.wasm"
