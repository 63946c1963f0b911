#!/usr/bin/env bash
# Delivery benchmark: `collector send` at full speed into `collector run`, whose
# one dispatcher is, in turn, noop, prometheus (remote write) into a private
# VictoriaMetrics, and influx (line protocol) into the same VictoriaMetrics, in
# the same run. For each: samples delivered (the dispatcher's samples_ok: the
# backend answered 2xx) per second from the first datagram to the last delivery,
# batches dropped (queue full: UDP cannot wait), and the most requests in flight
# seen at the endpoint (collector_egress_in_flight, polled). Loopback only; stops
# by itself.
#
#   scripts/bench-backends.sh [COUNT] [RUNS]     (release build; `make bench` runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-200000}
RUNS=${2:-3}
BIN=target/release/collector
SECRET=bench-secret
PORT_UDP=49531
PORT_ADMIN=49532
PORT_VM=49533
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
[ -x "$BIN" ] || { echo "$BIN is missing: cargo build --release -p collector" >&2; exit 1; }
for p in prometheus influx; do
  [ -f target/plugins/$p.wasm ] || { echo "target/plugins/$p.wasm is missing: make plugins" >&2; exit 1; }
done
command -v victoria-metrics >/dev/null || { echo "victoria-metrics is missing: make test-deps" >&2; exit 1; }

victoria-metrics -httpListenAddr=127.0.0.1:$PORT_VM -storageDataPath="$work/vm" \
  -retentionPeriod=100y -loggerLevel=ERROR > "$work/vm.log" 2>&1 &
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$PORT_VM/health >/dev/null && break; sleep 0.1; done

config() { # NAME PLUGIN CONFIG
  cat <<TOML
telemetry_secret = "$SECRET"
[log]
level = "warn"
[batch]
max_samples = 1000
max_delay_ms = 200
[sources.udp]
address = "127.0.0.1:$PORT_UDP"
[admin]
address = "127.0.0.1:$PORT_ADMIN"
[[dispatchers]]
name = "$1"
plugin = "$2"
queue_batches = 64
instances = 2
timeout_ms = 10000
[[dispatchers.endpoints]]
name = "vm"
url = "http://127.0.0.1:$PORT_VM"
max_in_flight = 16
[dispatchers.config]
$3
TOML
}

metric() { grep -E "^$1" <<<"$2" | awk '{print $2}' | head -1; }

run_one() { # NAME PLUGIN CONFIG SEED -> "delivered rate dropped inflight"
  config "$1" "$2" "$3" > "$work/$1.toml"
  RUST_LOG=warn $BIN run --config "$work/$1.toml" 2> "$work/$1.log" &
  local dp=$!
  for _ in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT_ADMIN/readyz >/dev/null && break; sleep 0.1; done
  local t0 t1 ok=0 last=-1 stable=0 inflight=0 dropped=0
  t0=$(date +%s.%N)
  $BIN send udp --to 127.0.0.1:$PORT_UDP --count "$COUNT" --secret $SECRET --seed "$4" > "$work/$1.send" &
  local sp=$!
  t1=$t0
  while :; do
    local m; m=$(curl -sf http://127.0.0.1:$PORT_ADMIN/metrics || true)
    ok=$(metric "collector_samples_ok_total\\{dispatcher=\"$1\"\\}" "$m"); ok=${ok:-0}
    dropped=$(metric "collector_batches_dropped_total\\{dispatcher=\"$1\"\\}" "$m"); dropped=${dropped:-0}
    local f; f=$(metric "collector_egress_in_flight\\{dispatcher=\"$1\"" "$m"); f=${f:-0}
    [ "${f%.*}" -gt "$inflight" ] && inflight=${f%.*}
    if [ "$ok" != "$last" ]; then last=$ok; stable=0; t1=$(date +%s.%N)
    elif ! kill -0 $sp 2>/dev/null; then stable=$((stable + 1)); fi
    [ $stable -ge 10 ] && break
    sleep 0.1
  done
  wait $sp || true
  kill -TERM $dp; wait $dp || true
  local rate; rate=$(awk "BEGIN{printf \"%d\", $ok / ($t1 - $t0)}")
  echo "${ok%.*} $rate ${dropped%.*} $inflight"
}

echo "delivery: $COUNT signed samples per run, $RUNS runs, VictoriaMetrics on the same 2 shared cores"
printf "%-4s %-22s %10s %12s %8s %9s\n" run dispatcher delivered smp/s dropped inflight
declare -A rates
for r in $(seq 1 "$RUNS"); do
  for d in "noop builtin:noop" "remote-write target/plugins/prometheus.wasm" "line-protocol target/plugins/influx.wasm"; do
    name=${d%% *}; plugin=${d#* }; [ "${plugin#builtin:}" = "$plugin" ] && plugin="$PWD/$plugin"
    cfg=""
    [ "$name" = remote-write ] && cfg='endpoint = "vm"'
    [ "$name" = line-protocol ] && cfg=$'endpoint = "vm"\ndatabase = "bench"'
    read -r delivered rate dropped inflight <<<"$(run_one "$name" "$plugin" "$cfg" "$r")"
    printf "%-4s %-22s %10s %12s %8s %9s\n" "$r" "$name" "$delivered" "$rate" "$dropped" "$inflight"
    rates[$name]="${rates[$name]:-} $rate"
  done
done
median() { printf "%s\n" $@ | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
noop=$(median ${rates[noop]}); rw=$(median ${rates[remote-write]}); lp=$(median ${rates[line-protocol]})
echo "median samples/s delivered: noop $noop, remote write $rw ($(awk "BEGIN{printf \"%.2f\", $rw/$noop}") x noop), line protocol $lp ($(awk "BEGIN{printf \"%.2f\", $lp/$noop}") x noop)"
