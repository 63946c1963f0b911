#!/usr/bin/env bash
# componentize.sh DIR OUT.wasm: builds the JavaScript plugin in DIR (its entry
# module DIR/app.js, and any modules beside it) with the collector SDK into a
# WebAssembly component of the world collector:dispatcher@1.0.0.
#
# The plugin imports the SDK as './collector-dispatcher/index.js': DIR and the
# SDK are staged together in a scratch directory, as componentize-js resolves
# relative imports only. Installs @bytecodealliance/componentize-js (pinned;
# not jco, which pins an older one that fails here; no AOT, which downloads a
# binary) from npm into $CJS_DIR, default .js-components at the repository's
# root, when missing.
set -euo pipefail
sdk="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$sdk/../.." && pwd)"
CJS_VERSION="${CJS_VERSION:-0.23.0}"
CJS_DIR="${CJS_DIR:-$repo/.js-components}"
src="$(cd "${1:?usage: componentize.sh DIR OUT.wasm}" && pwd)"
out="${2:?usage: componentize.sh DIR OUT.wasm}"
pkg="$CJS_DIR/node_modules/@bytecodealliance/componentize-js"
if [ "$(node -p "require('$pkg/package.json').version" 2>/dev/null)" != "$CJS_VERSION" ]; then
  echo "installing @bytecodealliance/componentize-js@$CJS_VERSION into $CJS_DIR" >&2
  mkdir -p "$CJS_DIR"
  (cd "$CJS_DIR" && { [ -f package.json ] || echo '{"private":true}' > package.json; } &&
    npm install --no-audit --no-fund --silent "@bytecodealliance/componentize-js@$CJS_VERSION")
fi
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -R "$src/." "$stage/"
mkdir -p "$stage/collector-dispatcher" "$stage/.wit/deps/collector-dispatcher"
cp "$sdk"/src/*.js "$stage/collector-dispatcher/"
cp "$sdk/wit/world.wit" "$stage/.wit/"
cp "$sdk/../wit/dispatcher.wit" "$stage/.wit/deps/collector-dispatcher/"
for d in wasi-filesystem wasi-io wasi-clocks wasi-http wasi-cli wasi-random wasi-sockets; do
  cp -R "$CJS_DIR/node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12/$d" "$stage/.wit/deps/"
done
mkdir -p "$(dirname "$out")"
# wasi:http for fetch (the host sends it to the declared endpoints only); no
# fetch-event: a dispatcher serves no requests.
node "$pkg/src/cli.js" "$stage/app.js" -w "$stage/.wit" -n dispatcher-js -d fetch-event -o "$out"
ls -l "$out"
