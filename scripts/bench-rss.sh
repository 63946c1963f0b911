#!/usr/bin/env bash
# The daemon's resident memory under a steady load: signed samples at RATE per
# second into `collector run` (UDP, noop dispatcher) for about SECONDS, in
# rounds of 6 s (`collector send` builds each round's samples first: a second
# or two without traffic between rounds). Prints RSS every round; the last
# line compares the end with the first round. Loopback only; stops by itself.
#
#   scripts/bench-rss.sh [RATE] [SECONDS]     (release build; `make bench` runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-100000}
SECONDS_WANTED=${2:-60}
BIN=target/release/collector
PORT=49523
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -q -p collector
cat > "$work/rss.toml" <<TOML
telemetry_secret = "bench-secret"
[log]
level = "warn"
[batch]
max_samples = 1000
max_delay_ms = 200
[sources.udp]
address = "127.0.0.1:$PORT"
[[dispatchers]]
name = "noop"
plugin = "builtin:noop"
TOML
RUST_LOG=info $BIN run --config "$work/rss.toml" 2> "$work/daemon.log" &
dp=$!
for _ in $(seq 1 300); do grep -q "collector ready" "$work/daemon.log" && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$dp/status"; }
echo "RSS of the daemon at $RATE signed samples/s (UDP, noop), rounds of 6 s"
echo "idle: $(rss) KiB"
rounds=$(( SECONDS_WANTED / 6 ))
first=""
for r in $(seq 1 "$rounds"); do
  out=$($BIN send udp --to 127.0.0.1:$PORT --count $(( RATE * 6 )) --rate "$RATE" --secret bench-secret --seed "$r")
  now=$(rss); first=${first:-$now}
  echo "round $r: $(grep -o '[0-9]* samples/s' <<<"$out"), RSS $now KiB"
done
kill -TERM $dp; wait $dp
summ=$(grep "Shutdown summary source=udp" "$work/daemon.log")
echo "received $(grep -o 'samples_received=[0-9]*' <<<"$summ"), $(grep -o 'input_dropped=[0-9]*' <<<"$summ"); RSS after round 1: $first KiB, at the end: $now KiB"
