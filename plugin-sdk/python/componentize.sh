#!/usr/bin/env bash
# componentize.sh MODULE OUT.wasm [DIR...]: builds the Python module MODULE
# (found in the DIRs, default .) with the collector SDK into a WebAssembly
# component of the world collector:dispatcher@1.0.0's dispatcher-http (the
# dispatcher with outbound HTTP to the declared endpoints). Installs componentize-py
# (pinned) into a virtualenv when missing: $CPY_VENV, default
# .venv-py-components at the repository's root.
set -euo pipefail
sdk="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$sdk/../.." && pwd)"
CPY_VERSION="${CPY_VERSION:-0.25.1}"
CPY_VENV="${CPY_VENV:-$repo/.venv-py-components}"
cpy="$CPY_VENV/bin/componentize-py"
module="${1:?usage: componentize.sh MODULE OUT.wasm [DIR...]}"
out="${2:?usage: componentize.sh MODULE OUT.wasm [DIR...]}"
shift 2
[ $# -gt 0 ] || set -- .
if [ "$("$CPY_VENV/bin/pip" show componentize-py 2>/dev/null | sed -n 's/^Version: //p')" != "$CPY_VERSION" ]; then
  echo "installing componentize-py==$CPY_VERSION into $CPY_VENV" >&2
  [ -x "$CPY_VENV/bin/python" ] || python3 -m venv "$CPY_VENV"
  "$CPY_VENV/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$CPY_VERSION"
fi
paths=()
for d in "$@"; do paths+=(-p "$(cd "$d" && pwd)"); done
mkdir -p "$(dirname "$out")"
# VIRTUAL_ENV unset: componentize-py would add that venv's site-packages.
env -u VIRTUAL_ENV "$cpy" -d "$sdk/../wit" -w dispatcher-http componentize "${paths[@]}" -p "$sdk" "$module" -o "$out"
ls -l "$out"
