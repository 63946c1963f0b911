#!/usr/bin/env bash
# Builds py-http.wasm into DIR (default: target/plugins): a WebAssembly
# component of the world collector:dispatcher@1.0.0 (dispatcher-http), from app.py and the Python
# SDK (plugin-sdk/python), by componentize-py (installed into
# .venv-py-components when missing: no download but PyPI's).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/target/plugins}"
"$repo/plugin-sdk/python/componentize.sh" app "$out/py-http.wasm" "$here"
