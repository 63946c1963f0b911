#!/usr/bin/env bash
# End-to-end UDP benchmark: `collector send` at full speed into `collector run`
# with the noop dispatcher and signatures verified, against a receive-only loop
# on the same traffic, in the same run. Loopback only; stops by itself.
#
#   scripts/bench-e2e.sh [COUNT] [RUNS]     (release build; `make bench` runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-300000}
RUNS=${2:-3}
BIN=${COLLECTOR_BIN:-target/release/collector}
SECRET=bench-secret
PORT_RAW=49521
PORT_DAEMON=49522
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -q -p collector --example udp_recv_only
RECV=target/release/examples/udp_recv_only

cat > "$work/bench.toml" <<TOML
telemetry_secret = "$SECRET"
[log]
level = "warn"
[batch]
max_samples = 1000
max_delay_ms = 200
[sources.udp]
address = "127.0.0.1:$PORT_DAEMON"
[[dispatchers]]
name = "noop"
plugin = "builtin:noop"
queue_batches = 64
TOML

field() { grep -o "$2=[0-9]*" <<<"$1" | tail -1 | cut -d= -f2; }

echo "end-to-end UDP: $COUNT signed samples per run, $RUNS runs, 2 shared cores"
printf "%-4s %12s %10s %12s %12s %10s %12s %7s\n" run raw_recv raw_lost raw_smp/s daemon_disp lost daemon_smp/s ratio
ratios=(); rates=()
for r in $(seq 1 "$RUNS"); do
  # 1. receive-only loop
  $RECV 127.0.0.1:$PORT_RAW > "$work/raw.out" &
  rp=$!; sleep 0.5
  $BIN send udp --to 127.0.0.1:$PORT_RAW --count "$COUNT" --secret $SECRET --seed "$r" > "$work/send1.out"
  wait $rp
  raw=$(cat "$work/raw.out"); raw_n=$(field "$raw" received); raw_ms=$(field "$raw" active_ms)
  # 2. the daemon: decode, verify, batch, dispatch to noop
  RUST_LOG=info $BIN run --config "$work/bench.toml" 2> "$work/daemon.log" &
  dp=$!
  for _ in $(seq 1 300); do grep -q "collector ready" "$work/daemon.log" && break; sleep 0.1; done
  $BIN send udp --to 127.0.0.1:$PORT_DAEMON --count "$COUNT" --secret $SECRET --seed "$r" > "$work/send2.out"
  sleep 2; kill -TERM $dp; wait $dp
  log=$(cat "$work/daemon.log")
  stop=$(grep "UDP source stopped" <<<"$log")
  src=$(grep "Shutdown summary source=udp" <<<"$log"); summ=$(grep "Shutdown summary dispatcher=noop" <<<"$log")
  d_ms=$(field "$stop" active_ms); d_disp=$(field "$summ" samples_ok); d_bad=$(field "$src" bad_signatures)
  [ "$d_bad" = 0 ] || { echo "bad signatures in the benchmark traffic: $d_bad"; exit 1; }
  raw_rate=$(( raw_n * 1000 / (raw_ms > 0 ? raw_ms : 1) ))
  d_rate=$(( d_disp * 1000 / (d_ms > 0 ? d_ms : 1) ))
  ratio=$(awk "BEGIN{printf \"%.2f\", $d_rate/$raw_rate}")
  printf "%-4s %12s %10s %12s %12s %10s %12s %7s\n" "$r" "$raw_n" $((COUNT-raw_n)) "$raw_rate" "$d_disp" $((COUNT-d_disp)) "$d_rate" "$ratio"
  ratios+=("$ratio"); rates+=("$d_rate")
  echo "  sender: $(cat "$work/send2.out")"
done
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "median daemon samples/s dispatched: $(median "${rates[@]}"); median ratio daemon/receive-only: $(median "${ratios[@]}")"
