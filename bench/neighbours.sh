#!/usr/bin/env bash
# What a proxy costs its neighbours: CPU per keep-alive request of the proxy, of the upstream
# (nginx, one worker) and of the load generator (wrk -t2 -c64), plus the machine's softirq and
# idle time, for the agent (--protocol http) and haproxy (mode http) in turn. A proxy's own CPU
# per request is only part of what it costs: on a shared machine the upstream and the client
# pay for how it batches its traffic (BENCHMARKS.md, "Why lower CPU per request has not become
# more requests per second").
#
# Every process runs in a session of its own (`setsid`), as ../shared/bench/proxy-bench starts
# them: with kernel.sched_autogroup_enabled=1 each session is a scheduling group of its own, and
# that changes the figures. SESSION=same starts them all in this script's session instead.
# Loopback only; every process this script starts is tracked by PID and stopped on exit.
#
# Usage: bench/neighbours.sh      (REPS=3, 7 s per run, CPU counted over the middle 5 s)
# Needs Debian's nginx, haproxy and wrk, and a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/nginx.sh

REPS=${REPS:-3}
SESSION=${SESSION:-own}

for bin in nginx haproxy wrk; do
  command -v "$bin" >/dev/null || {
    echo "neighbours.sh: $bin not found (Debian: nginx haproxy wrk)" >&2
    exit 69
  }
done
case $SESSION in own) detach=(setsid) ;; same) detach=() ;; *)
  echo "neighbours.sh: SESSION must be own or same, not '$SESSION'" >&2
  exit 64
  ;;
esac

cargo build --release -p faultline-agent
agent=$PWD/target/release/faultline-agent

work=$(mktemp -d /tmp/faultline-neighbours.XXXXXX)
source bench/lib/procs.sh

upstream_port=$(free_port)
haproxy_port=$(free_port)
agent_port=$(free_port)
admin_port=$(free_port)

# --- upstream: nginx as proxy-bench configures it, 64-byte body from memory ---
mkdir -p "$work/nginx/tmp"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  tcp_nodelay on;
  keepalive_timeout 75s;
  keepalive_requests 100000000;
$(nginx_temp_paths "$work/nginx/tmp")
  server {
    listen 127.0.0.1:$upstream_port backlog=4096;
    location = /small { default_type text/plain; return 200 "0123456789012345678901234567890123456789012345678901234567890123"; }
  }
}
EOF
"${detach[@]}" nginx -p "$work/nginx" -e "$work/nginx.log" -c "$work/nginx/nginx.conf" \
  >>"$work/nginx.log" 2>&1 </dev/null &
pids+=($!)
wait_listening nginx "$upstream_port" "${pids[-1]}"
nginx_worker=$(pgrep -P "${pids[-1]}" | head -1)

cat >"$work/haproxy.cfg" <<EOF
global
  maxconn 8000
defaults
  mode http
  maxconn 8000
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  timeout http-keep-alive 60s
  timeout http-request 10s
frontend fe
  bind 127.0.0.1:$haproxy_port
  default_backend be
backend be
  server up 127.0.0.1:$upstream_port
EOF
"${detach[@]}" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 </dev/null &
pids+=($!)
wait_listening haproxy "$haproxy_port" "${pids[-1]}"
haproxy_pid=${pids[-1]}

"${detach[@]}" "$agent" --listen "127.0.0.1:$agent_port" --upstream "127.0.0.1:$upstream_port" \
  --protocol http --admin "127.0.0.1:$admin_port" >"$work/faultline.log" 2>&1 </dev/null &
pids+=($!)
wait_listening faultline "$agent_port" "${pids[-1]}"
agent_pid=${pids[-1]}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of all threads
cpu_line() { awk '/^cpu /{print $5 + $6, $7 + $8}' /proc/stat; } # idle+iowait, irq+softirq
hz=$(getconf CLK_TCK)

# One measured run; prints "req/s proxy nginx wrk softirq idle" (µs of CPU per request).
run() { # PROXY_PID PORT
  "${detach[@]}" wrk -t2 -c64 -d7s "http://127.0.0.1:$2/small" >"$work/wrk.out" 2>&1 </dev/null &
  local wrk=$!
  pids+=($wrk)
  sleep 1.5 # past connection set-up; the CPU is counted over the middle 5 s
  local p0 n0 w0 i0 q0 p1 n1 w1 i1 q1
  p0=$(ticks "$1"); n0=$(ticks "$nginx_worker"); w0=$(ticks "$wrk"); read -r i0 q0 < <(cpu_line)
  sleep 5
  p1=$(ticks "$1"); n1=$(ticks "$nginx_worker"); w1=$(ticks "$wrk"); read -r i1 q1 < <(cpu_line)
  wait "$wrk" || true
  local rps
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  [ -n "$rps" ] || { echo "neighbours.sh: wrk gave no result:" >&2; cat "$work/wrk.out" >&2; exit 1; }
  awk -v r="$rps" -v hz="$hz" -v p=$((p1 - p0)) -v n=$((n1 - n0)) -v w=$((w1 - w0)) \
    -v q=$((q1 - q0)) -v i=$((i1 - i0)) \
    'BEGIN { f = 1e6 / hz / (r * 5); printf "%.0f %.2f %.2f %.2f %.2f %.2f\n", r, p*f, n*f, w*f, q*f, i*f }'
}

echo "neighbours: wrk -t2 -c64, $REPS repetitions, sessions: $SESSION; $(nproc) cores"
echo "  µs of CPU per request:      req/s    proxy    nginx      wrk  softirq     idle"
declare -A proxy_pid=([faultline]=$agent_pid [haproxy]=$haproxy_pid)
declare -A port=([faultline]=$agent_port [haproxy]=$haproxy_port)
results=$work/results.txt
: >"$results"
for ((rep = 0; rep < REPS; rep++)); do
  order=(faultline haproxy)
  ((rep % 2)) && order=(haproxy faultline)
  for c in "${order[@]}"; do
    r=$(run "${proxy_pid[$c]}" "${port[$c]}")
    echo "$c $r" >>"$results"
    read -r rps p n w q i <<<"$r"
    printf '  rep %d %-9s %12s %8s %8s %8s %8s %8s\n' $((rep + 1)) "$c" "$rps" "$p" "$n" "$w" "$q" "$i"
  done
done

echo
awk '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { k = $1; c[k]++; for (f = 2; f <= 7; f++) v[k, f, c[k]] = $f }
  END {
    for (k in c) for (f = 2; f <= 7; f++) {
      delete a; for (i = 1; i <= c[k]; i++) a[i] = v[k, f, i]; m[k, f] = median(a, c[k])
    }
    printf "  medians   %-9s %12.0f %8.2f %8.2f %8.2f %8.2f %8.2f\n", "faultline", m["faultline",2], m["faultline",3], m["faultline",4], m["faultline",5], m["faultline",6], m["faultline",7]
    printf "  medians   %-9s %12.0f %8.2f %8.2f %8.2f %8.2f %8.2f\n", "haproxy", m["haproxy",2], m["haproxy",3], m["haproxy",4], m["haproxy",5], m["haproxy",6], m["haproxy",7]
    printf "  faultline / haproxy: req/s %.3f, proxy %.3f, nginx %.3f, wrk %.3f\n", m["faultline",2] / m["haproxy",2], m["faultline",3] / m["haproxy",3], m["faultline",4] / m["haproxy",4], m["faultline",5] / m["haproxy",5]
  }' "$results"
