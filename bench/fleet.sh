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

# Build, fd limit, a controller per run: bench/lib/controller.sh.
source bench/lib/controller.sh

for n in "${sizes[@]}"; do
  start_controller 3s 1s
  conns=$(( (n + 99) / 100 ))
  echo "=== N=$n connections=$conns controller pid=$pid grpc=$grpc metrics=$metrics"
  "$bin/fleet_bench" --controller "http://$grpc" --agents "$n" --connections "$conns" \
    --reps "$reps" --controller-pid "$pid" --idle "${IDLE:-20s}" || echo "N=$n failed"
  echo "--- controller fanout histogram (N=$n)"
  curl -s "http://$metrics/metrics" | grep '^faultline_controller_desired_state_fanout_seconds' || true
  stop
done
