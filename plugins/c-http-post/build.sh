#!/usr/bin/env bash
# Builds c-http-post.wasm (no libc) into the directory given as $1 (default:
# ../../target/plugins, relative to this script). The toolchain is the one
# plugins/c-threshold/build.sh installs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../../target/plugins}"
mkdir -p "$out"
"${CLANG:-clang}" --target=wasm32 -nostdlib -Wl,--no-entry -O2 -Wall -Wextra -Werror \
    -I"$here/../../plugin-sdk/c" -Wl,--strip-debug -o "$out/c-http-post.wasm" "$here/post.c"
ls -l "$out/c-http-post.wasm"
