#!/usr/bin/env bash
# Fleet fan-out benchmark: starts a release controller on loopback (temp data dir, ports picked by
# the kernel), runs controller/src/bin/fleet_bench.rs against it for each fleet size, prints each
# run's figures and the controller's own fan-out histogram, then stops the controller by PID.
#
# Usage: bench/fleet.sh [N ...]   (default: 100 1000 10000). REPS=20 by default; IDLE=20s of
# steady-state heartbeating (1 s) measured before the experiments. Each run gets a
# fresh controller so RSS and CPU are per N. Streams are multiplexed 100 per HTTP/2 connection.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000 10000)
reps=${REPS:-20}

# One fd per connection on each side; raise the soft limit to the hard one where allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release -p faultline-controller --bins
bin=${CARGO_TARGET_DIR:-$PWD/target}/release

work=$(mktemp -d)
pid=
stop() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  pid=
}
trap 'stop; rm -rf "$work"' EXIT

addr_from_log() { # $1 = log line marker; prints the first ip:port after it
  grep -a "$1" "$work/controller.log" | sed -E 's/\x1b\[[0-9;]*m//g' | grep -oE '127\.0\.0\.1:[0-9]+' | head -1
}

for n in "${sizes[@]}"; do
  rm -rf "$work/data" && mkdir -p "$work/data"
  NO_COLOR=1 "$bin/faultline-controller" --listen 127.0.0.1:0 --data-dir "$work/data" \
    --metrics 127.0.0.1:0 --lease 3s --heartbeat 1s >"$work/controller.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do
    grpc=$(addr_from_log "controller serving" || true)
    metrics=$(addr_from_log "metrics serving" || true)
    [ -n "$grpc" ] && [ -n "$metrics" ] && break
    sleep 0.1
  done
  conns=$(( (n + 99) / 100 ))
  echo "=== N=$n connections=$conns controller pid=$pid grpc=$grpc metrics=$metrics"
  "$bin/fleet_bench" --controller "http://$grpc" --agents "$n" --connections "$conns" \
    --reps "$reps" --controller-pid "$pid" --idle "${IDLE:-20s}" || echo "N=$n failed"
  echo "--- controller fanout histogram (N=$n)"
  curl -s "http://$metrics/metrics" | grep '^faultline_controller_desired_state_fanout_seconds' || true
  stop
done
