#!/usr/bin/env bash
# Runs the shared proxy benchmark (../shared/bench/proxy-bench) with the agent as the candidate,
# beside direct, haproxy and nginx, in one run: compare the ratios it prints, not absolute
# figures (the machine is shared and noisy). Results go to bench/results/.
#
# Needs Debian's nginx libnginx-mod-stream haproxy wrk iperf3 nghttp2-client (installed below
# if missing). Extra arguments go to proxy-bench, e.g. `--quick` or `--reps 5`.
set -euo pipefail
cd "$(dirname "$0")/.."

bench=${PROXY_BENCH:-../shared/bench/proxy-bench}
need=()
for bin in nginx haproxy wrk iperf3 h2load; do
  command -v "$bin" >/dev/null || need+=("$bin")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-stream haproxy wrk iperf3 nghttp2-client
fi

cargo build --release -p faultline-agent
agent=$PWD/target/release/faultline-agent
mkdir -p bench/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
"$bench" \
  --candidate-name faultline \
  --candidate-tcp "$agent --listen {listen} --upstream {upstream} --admin {admin}" \
  --candidate-http "$agent --listen {listen} --upstream {upstream} --admin {admin} --protocol http" \
  --extra "faultline-rules:http=$PWD/bench/agent-with-rules.sh $agent {listen} {upstream} {admin} {workdir}" \
  --json "bench/results/proxy-bench-$stamp.json" \
  --markdown "bench/results/proxy-bench-$stamp.md" \
  "$@"
