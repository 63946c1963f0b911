#!/usr/bin/env bash
# Makes .venv-gnocchi: Gnocchi 4.7.1 from PyPI, with what its PostgreSQL
# indexer and file storage need, and waitress to serve its API, for the
# `gnocchi` dispatcher's tests (tests/src/backends.rs). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-gnocchi
want="gnocchi==4.7.1 psycopg2-binary==2.9.13 waitress==3.0.2 oslo.db==18.1.1 SQLAlchemy==2.1.9 SQLAlchemy-Utils==0.43.0 alembic==1.20.1"
stamp="$venv/.installed"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "gnocchi-venv: $venv is up to date"
    exit 0
fi
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv "$venv"
# shellcheck disable=SC2086
"$venv/bin/pip" install -q --disable-pip-version-check $want
"$venv/bin/python" -c 'import gnocchi, psycopg2, waitress, sqlalchemy_utils, alembic'
echo "$want" >"$stamp"
echo "gnocchi-venv: $venv ready ($("$venv/bin/pip" show gnocchi | sed -n 's/^Version: //p'))"
