#!/usr/bin/env bash
# compare_dir.sh DIR: runs compare.py on DIR/NNN.jsonl for every golden
# vector NNN.bin (an SDK's test writes them); fails if one is missing or differs.
set -euo pipefail
golden="$(cd "$(dirname "$0")" && pwd)"
out="$1"
n=0
for json in "$golden"/*.json; do
  name="$(basename "$json" .json)"
  [ -f "$golden/$name.bin" ] || continue
  [ -f "$out/$name.jsonl" ] || { echo "no decoded output for $name" >&2; exit 1; }
  python3 "$golden/compare.py" "$json" < "$out/$name.jsonl"
  n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "no golden vectors found in $golden" >&2; exit 1; }
