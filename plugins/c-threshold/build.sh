#!/usr/bin/env bash
# Builds the c-threshold plugin twice from threshold.c:
#   c-threshold.wasm               wasi-libc reactor: alert lines appended to a file
#   c-threshold-freestanding.wasm  no libc: alert lines logged at WARN ("ALERT ...")
# into the directory given as $1 (default: ../../target/plugins, relative to this
# script). Installs clang, lld, wasi-libc and the wasm32 compiler-rt from Debian
# when they are missing. CLANG=... picks another clang; CFLAGS=... adds flags.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../../target/plugins}"
sdk="$here/../../plugin-sdk/c"
clang="${CLANG:-clang}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

clang_major() {
    "$clang" --version 2>/dev/null | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -n1
}

have_rt() {
    # compiler-rt builtins for wasm32, linked by the wasm32-wasi driver
    local res
    res="$("$clang" --target=wasm32-wasi -print-resource-dir 2>/dev/null)" || return 1
    [ -f "$res/lib/wasi/libclang_rt.builtins-wasm32.a" ] || [ -f "$res/lib/wasm32-unknown-wasi/libclang_rt.builtins.a" ]
}

if ! command -v "$clang" >/dev/null || ! command -v wasm-ld >/dev/null || [ ! -d /usr/lib/wasm32-wasi ]; then
    echo "c-threshold: installing clang, lld and wasi-libc (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update
    as_root apt-get install -y --no-install-recommends clang lld wasi-libc
fi
if ! have_rt; then
    major="$(clang_major)"
    echo "c-threshold: installing libclang-rt-${major}-dev-wasm32" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update
    as_root apt-get install -y --no-install-recommends "libclang-rt-${major}-dev-wasm32"
fi

mkdir -p "$out"
common=(-O2 -Wall -Wextra -I"$sdk" -Wl,--strip-debug)
extra=()
if [ -n "${CFLAGS:-}" ]; then read -r -a extra <<<"$CFLAGS"; fi

# wasi-libc, as a reactor: the host calls _initialize (constructors, preopens).
"$clang" --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor "${common[@]}" "${extra[@]}" \
    -o "$out/c-threshold.wasm" "$here/threshold.c"

# No libc at all: the SDK brings its allocator and mem* functions.
"$clang" --target=wasm32 -nostdlib -Wl,--no-entry "${common[@]}" "${extra[@]}" \
    -o "$out/c-threshold-freestanding.wasm" "$here/threshold.c"

ls -l "$out/c-threshold.wasm" "$out/c-threshold-freestanding.wasm"
