#!/usr/bin/env bash
# Input benchmark: signed samples per second dispatched to noop through the
# UDP, TCP and HTTP inputs of one daemon, in the same run, each fed by
# `collector send` at full speed (one sender each: UDP datagrams, one TCP
# connection, HTTP requests of 100 samples one after another, as one agent's
# publisher sends them). A rate is samples dispatched over the time from the
# first send to the last sample the noop dispatcher took. Loopback only; stops
# by itself.
#
#   scripts/bench-inputs.sh [COUNT] [RUNS]     (release build; `make bench` runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-200000}
RUNS=${2:-3}
BIN=target/release/collector
SECRET=bench-secret
UDP=49531; TCP=49532; HTTP=49533; ADMIN=49534
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cat > "$work/bench.toml" <<TOML
telemetry_secret = "$SECRET"
[log]
level = "warn"
[batch]
max_samples = 1000
max_delay_ms = 200
[admin]
address = "127.0.0.1:$ADMIN"
[sources.udp]
address = "127.0.0.1:$UDP"
[sources.tcp]
address = "127.0.0.1:$TCP"
[sources.http]
address = "127.0.0.1:$HTTP"
[[dispatchers]]
name = "noop"
plugin = "builtin:noop"
queue_batches = 64
TOML

taken() { curl -s "127.0.0.1:$ADMIN/status" | python3 -c 'import json,sys; d=json.load(sys.stdin); print([x for x in d["dispatchers"] if x["name"]=="noop"][0]["samples_ok"])'; }
now_ms() { date +%s%3N; }

# Runs the sender "$@", then waits until noop has taken $COUNT more samples (or
# nothing more for a second: UDP loses some); prints "delivered rate".
measure() {
  local before t0 last n prev stable=0
  before=$(taken); t0=$(now_ms)
  "$@" > "$work/send.out"
  last=$(now_ms); prev=$before
  while :; do
    n=$(taken)
    if [ "$n" != "$prev" ]; then prev=$n; last=$(now_ms); stable=0; else stable=$((stable+1)); fi
    [ $((n - before)) -ge "$COUNT" ] && break
    [ $stable -ge 50 ] && break
    sleep 0.02
  done
  local got=$((prev - before)) ms=$((last - t0))
  echo "$got $(( got * 1000 / (ms > 0 ? ms : 1) ))"
}

echo "inputs: $COUNT signed samples per input per run, $RUNS runs, 2 shared cores, noop dispatcher"
printf "%-4s %10s %10s %10s %10s %10s %10s %9s %9s\n" run udp_disp udp_smp/s tcp_disp tcp_smp/s http_disp http_smp/s tcp/udp http/udp
udp_r=(); tcp_r=(); http_r=(); tr=(); hr=()
for r in $(seq 1 "$RUNS"); do
  RUST_LOG=warn $BIN run --config "$work/bench.toml" 2> "$work/daemon.log" &
  dp=$!
  for _ in $(seq 1 300); do curl -sf "127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
  read -r ud ur < <(measure $BIN send udp --to 127.0.0.1:$UDP --count "$COUNT" --secret $SECRET --seed "$r")
  read -r td tr_ < <(measure $BIN send tcp --to 127.0.0.1:$TCP --count "$COUNT" --secret $SECRET --seed "$r")
  read -r hd hr_ < <(measure $BIN send http --to "http://127.0.0.1:$HTTP/" --count "$COUNT" --batch 100 --seed "$r")
  kill -TERM $dp; wait $dp || true
  t_ratio=$(awk "BEGIN{printf \"%.2f\", $tr_/$ur}"); h_ratio=$(awk "BEGIN{printf \"%.2f\", $hr_/$ur}")
  printf "%-4s %10s %10s %10s %10s %10s %10s %9s %9s\n" "$r" "$ud" "$ur" "$td" "$tr_" "$hd" "$hr_" "$t_ratio" "$h_ratio"
  udp_r+=("$ur"); tcp_r+=("$tr_"); http_r+=("$hr_"); tr+=("$t_ratio"); hr+=("$h_ratio")
  [ "$td" = "$COUNT" ] || { echo "TCP lost samples: $td of $COUNT"; exit 1; }
  [ "$hd" = "$COUNT" ] || { echo "HTTP lost samples: $hd of $COUNT"; exit 1; }
done
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "median samples/s: udp $(median "${udp_r[@]}"), tcp $(median "${tcp_r[@]}"), http $(median "${http_r[@]}"); median ratios tcp/udp $(median "${tr[@]}"), http/udp $(median "${hr[@]}")"
