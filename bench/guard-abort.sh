#!/usr/bin/env bash
# SLO guard abort latency: starts a release controller on loopback (`--heartbeat 100ms --lease
# 1s`, temp data dir, ports picked by the kernel), runs `fleet_bench --guard`
# (controller/src/bin/fleet_bench.rs) against it for each fleet size, prints each run's figures
# and the controller's fan-out histogram, then stops the controller by PID.
#
# Each simulated agent reports HTTP route SLIs in its heartbeats (all 2xx without a fault, 60 %
# injected 5xx with one); each rep starts a 60 % http_abort on every agent under an in-band
# error-rate guard (above 5 % over 200 ms) and waits for the trip, the withdrawal and the
# recovery.
#
# Usage: bench/guard-abort.sh [N ...]   (default: 100 1000). REPS=20 by default. Each run gets a
# fresh controller so RSS and CPU are per N. Streams are multiplexed PER_CONN (default 100) per
# HTTP/2 connection.
# Binaries come from $CARGO_TARGET_DIR/release when it is set, target/release otherwise;
# NO_BUILD=1 runs the binaries already there without building.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000)
reps=${REPS:-20}

# Build, fd limit, a controller per run: bench/lib/controller.sh.
source bench/lib/controller.sh

for n in "${sizes[@]}"; do
  start_controller 1s 100ms
  per_conn=${PER_CONN:-100}
  conns=$(( (n + per_conn - 1) / per_conn ))
  echo "=== N=$n connections=$conns controller pid=$pid grpc=$grpc metrics=$metrics"
  "$bin/fleet_bench" --guard --controller "http://$grpc" --agents "$n" --connections "$conns" \
    --reps "$reps" --controller-pid "$pid" --timeout 30s || echo "N=$n failed"
  echo "--- controller fanout histogram (N=$n)"
  curl -s "http://$metrics/metrics" | grep '^faultline_controller_desired_state_fanout_seconds' || true
  echo "--- controller warnings (N=$n)"
  grep -a -E 'WARN|ERROR' "$work/controller.log" | grep -v 'guard tripped; faults withdrawn' | tail -20 || true
  echo "guard trips logged: $(grep -ac 'guard tripped; faults withdrawn' "$work/controller.log" || true)"
  stop
done
