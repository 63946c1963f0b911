#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, on Debian 12, as root,
# non-interactively. Idempotent: a second run installs nothing.
#
#   * rabbitmq-server (Debian's 3.10.8, with Erlang) for the AMQP tests, which
#     start private nodes of their own (tests/src/rabbit.rs). The package's
#     default node (rabbit@<host>) is kept from starting, stopped if it runs
#     anyway, and disabled, so that it never holds ports 5672/25672.
#   * systemd (for systemd-analyze), to verify the bundled unit file.
#   * influxdb, victoria-metrics and prometheus for the dispatcher tests, which
#     start private instances of their own (tests/src/backends.rs); the
#     packages' services are kept from starting, and disabled.
#   * postgresql-15 and .venv-gnocchi (Gnocchi 4.7.1 from PyPI) for the
#     gnocchi dispatcher's tests (scripts/gnocchi-venv.sh).
#   * .venv-ceilometer: Ceilometer 27.0.0 with pinned dependencies, for
#     scripts/ceilometer-publish.py (scripts/ceilometer-venv.sh). Skipped with
#     SKIP_CEILOMETER_VENV=1.
#
#   scripts/install-test-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s.%N)
elapsed() { awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
say() { echo "install-test-deps: $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: run me as root (apt-get install)" >&2
    exit 1
fi

apt_updated=
apt_install() {
    if [ -z "$apt_updated" ]; then
        say "apt-get update"
        apt-get update -q >/dev/null
        apt_updated=1
    fi
    say "apt-get install $*"
    apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >/dev/null
}

# Installs packages whose postinst would start their service: a policy-rc.d
# that denies every start, for the duration of the install only (and only if
# the machine has none; Docker images usually do).
apt_install_no_start() {
    local policy=/usr/sbin/policy-rc.d
    made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, by collector scripts/install-test-deps.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
        trap 'if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
    fi
    apt_install "$@"
    if [ -n "$made_policy" ]; then
        rm -f "$policy"
        made_policy=
    fi
}

# ---- RabbitMQ ------------------------------------------------------------

if [ -x /usr/sbin/rabbitmq-server ] && [ -x /usr/sbin/rabbitmqctl ] &&
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && command -v erl >/dev/null; then
    say "rabbitmq-server is installed"
else
    # Keep the package's postinst from starting the default node.
    apt_install_no_start rabbitmq-server
fi

# The default node, if the package (or a boot) started one anyway. Its name is
# rabbit@<short host name> unless /etc/rabbitmq/rabbitmq-env.conf sets NODENAME.
default_name=rabbit
if [ -r /etc/rabbitmq/rabbitmq-env.conf ]; then
    n=$(sed -n 's/^[[:space:]]*\(RABBITMQ_\)\{0,1\}NODENAME=\([^@[:space:]]*\).*/\2/p' /etc/rabbitmq/rabbitmq-env.conf | tail -1)
    n=${n//\"/}
    [ -n "$n" ] && default_name=$n
fi
registered() { epmd -names 2>/dev/null | awk -v n="$1" '$1 == "name" && $2 == n { found = 1 } END { exit !found }'; }
if command -v epmd >/dev/null && registered "$default_name"; then
    node="$default_name@$(hostname -s)"
    say "stopping the package's default node $node"
    # The /usr/sbin wrapper runs as user rabbitmq with the node's cookie.
    timeout 90 /usr/sbin/rabbitmqctl -n "$node" stop >/dev/null 2>&1 ||
        timeout 90 /etc/init.d/rabbitmq-server stop >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do registered "$default_name" || break; sleep 0.5; done
    if registered "$default_name"; then
        # Still there: end that node's VM, found through its PID file.
        for f in "/var/lib/rabbitmq/mnesia/$node.pid" /run/rabbitmq/pid; do
            pid=$(cat "$f" 2>/dev/null || true)
            if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = beam.smp ]; then
                say "killing $node (pid $pid)"
                kill "$pid" 2>/dev/null || true
            fi
        done
        sleep 2
        registered "$default_name" && { echo "install-test-deps: could not stop $node" >&2; exit 1; }
    fi
fi
# And keep it from starting at boot.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl disable --now rabbitmq-server.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/rabbitmq-server ] && command -v update-rc.d >/dev/null; then
    update-rc.d rabbitmq-server disable >/dev/null 2>&1 || true
fi
say "rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?'), erlang-base $(dpkg-query -W -f='${Version}' erlang-base 2>/dev/null || echo '?'); no default node running"

# ---- Backends --------------------------------------------------------------
# InfluxDB 1.6, VictoriaMetrics 1.79 and Prometheus 2.42 from Debian, for the
# dispatcher tests, which run private instances of their own
# (tests/src/backends.rs). The packages' own services are kept from starting,
# as for RabbitMQ, and disabled.

backends=()
for pair in influxd:influxdb victoria-metrics:victoria-metrics prometheus:prometheus; do
    command -v "${pair%%:*}" >/dev/null || backends+=("${pair##*:}")
done
if [ ${#backends[@]} -eq 0 ]; then
    say "influxdb, victoria-metrics and prometheus are installed"
else
    apt_install_no_start "${backends[@]}"
fi
for unit in influxdb victoria-metrics prometheus; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$unit" ]; then
        "/etc/init.d/$unit" stop >/dev/null 2>&1 || true
    fi
done

# ---- openssl -----------------------------------------------------------------
# The TLS tests make their CA and certificates with it (tests/src/http.rs).

command -v openssl >/dev/null && say "openssl is installed" || apt_install openssl

# ---- systemd-analyze -------------------------------------------------------
# For the test that verifies contrib/systemd/collector.service.

if command -v systemd-analyze >/dev/null; then
    say "systemd-analyze is installed"
else
    apt_install systemd
fi

# ---- Ceilometer venv -----------------------------------------------------

if [ -n "${SKIP_CEILOMETER_VENV:-}" ]; then
    say "SKIP_CEILOMETER_VENV set: no .venv-ceilometer"
else
    PYTHON=${PYTHON:-python3}
    if ! "$PYTHON" -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 10)' 2>/dev/null; then
        # Debian's python3 has no ensurepip without python3-venv.
        apt_install python3 python3-venv
        PYTHON=/usr/bin/python3
    fi
    PYTHON=$PYTHON scripts/ceilometer-venv.sh
fi

# ---- Gnocchi venv and PostgreSQL -----------------------------------------
# Gnocchi 4.7.1 from PyPI in .venv-gnocchi (scripts/gnocchi-venv.sh), with
# PostgreSQL 15 from Debian as its indexer; the tests run private instances of
# both. PostgreSQL refuses to run as root: the tests run it as `postgres`.

if [ -x /usr/lib/postgresql/15/bin/postgres ] && id postgres >/dev/null 2>&1; then
    say "postgresql 15 is installed"
else
    apt_install_no_start postgresql-15
fi
for unit in postgresql; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
    fi
done
PYTHON=${PYTHON:-python3} scripts/gnocchi-venv.sh

say "done in $(elapsed) s"
