#!/usr/bin/env bash
# The README's main command, until `faultline demo` exists: build the agent, start a sample
# service (a static HTTP server on 127.0.0.1:8080) and the agent in front of it on
# 127.0.0.1:18080, with its admin API on 127.0.0.1:8474. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p faultline-agent -p faultline

site=$(mktemp -d)
trap 'kill "$service_pid" 2>/dev/null || true; rm -rf "$site"' EXIT
printf 'hello from the sample service\n' > "$site/index.html"
python3 -m http.server 8080 --bind 127.0.0.1 --directory "$site" >/dev/null 2>&1 &
service_pid=$!

cat <<'TXT'
sample service : http://127.0.0.1:8080/
through faultline: http://127.0.0.1:18080/      (route "web")
admin API       : http://127.0.0.1:8474/proxies  (Toxiproxy-compatible)

Try, in another terminal:
  curl -s -w '%{time_total}s\n' http://127.0.0.1:18080/
  target/release/faultline agent fault add web --type latency --attr latency=300
  curl -s -w '%{time_total}s\n' http://127.0.0.1:18080/
  target/release/faultline agent fault add web --type reset_peer --name rst --toxicity 0.5
  target/release/faultline agent reset
TXT
# Not `exec`: this shell stays to stop the sample service when the agent ends.
target/release/faultline-agent --route web=127.0.0.1:18080=127.0.0.1:8080 &
agent_pid=$!
trap 'kill "$agent_pid" "$service_pid" 2>/dev/null || true; rm -rf "$site"' EXIT INT TERM
wait "$agent_pid"
