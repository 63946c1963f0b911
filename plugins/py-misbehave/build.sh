#!/usr/bin/env bash
# Builds py-misbehave.wasm (a test fixture) into DIR (default: target/plugins),
# as plugins/py-file/build.sh does.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
"$repo/plugin-sdk/python/componentize.sh" app "${1:-$repo/target/plugins}/py-misbehave.wasm" "$here"
