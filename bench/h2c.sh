#!/usr/bin/env bash
# Cleartext HTTP/2 (h2c, prior knowledge) through the agent, beside the same traffic sent
# direct to the upstream and through haproxy, in one run. Compare the ratios it prints, not
# absolute figures: the machine is shared and noisy.
#
# Upstream: nginx, `listen ... http2`, answering 64 bytes from memory (1 worker). Contestants:
#   direct     h2load -> nginx
#   haproxy    h2load -> haproxy (mode http, h2 on both sides) -> nginx
#   faultline  h2load -> faultline-agent --protocol http -> nginx
# Each run is `h2load -n N -c 16 -m 10`; the contestants alternate over REPS repetitions, the
# order rotating each time. Latency is read from h2load's per-request log (--log-file): mean and
# 99th percentile of request start to end of response. Loopback only; every process this
# script starts is tracked by PID and stopped on exit.
#
# Usage: bench/h2c.sh            (N=300000 REPS=3; e.g. `N=20000 bench/h2c.sh` for a quick look)
# Needs Debian's nginx, haproxy and nghttp2-client (h2load), and a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/nginx.sh

N=${N:-300000}
REPS=${REPS:-3}
CLIENTS=16
STREAMS=10

for bin in nginx haproxy h2load; do
  command -v "$bin" >/dev/null || {
    echo "h2c.sh: $bin not found (Debian: nginx haproxy nghttp2-client)" >&2
    exit 69
  }
done

cargo build --release -p faultline-agent
agent=$PWD/target/release/faultline-agent

work=$(mktemp -d /tmp/faultline-h2c.XXXXXX)
source bench/lib/procs.sh

upstream_port=$(free_port)
haproxy_port=$(free_port)
agent_port=$(free_port)
admin_port=$(free_port)

# --- upstream: nginx, h2c, 64-byte body from memory ---
mkdir -p "$work/nginx/logs" "$work/nginx/tmp"
body='faultline h2c bench: 64 bytes from memory, no disk, no upstream.'
[ ${#body} -eq 64 ] || { echo "h2c.sh: body is ${#body} bytes, want 64" >&2; exit 70; }
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx.log warn;
events { worker_connections 4096; }
http {
  access_log off;
$(nginx_temp_paths "$work/nginx/tmp")
  # nginx closes an HTTP/2 connection after keepalive_requests streams (default 1000).
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$upstream_port http2;
    location / {
      default_type text/plain;
      return 200 "$body";
    }
  }
}
EOF
nginx -p "$work/nginx" -e "$work/nginx.log" -c "$work/nginx/nginx.conf" >>"$work/nginx.log" 2>&1 &
pids+=($!)
wait_listening nginx "$upstream_port" "${pids[-1]}"

# --- haproxy: h2c on the bind line and to the server ---
cat >"$work/haproxy.cfg" <<EOF
global
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend h2c
  bind 127.0.0.1:$haproxy_port proto h2
  default_backend nginx
backend nginx
  server s1 127.0.0.1:$upstream_port proto h2
EOF
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_listening haproxy "$haproxy_port" "${pids[-1]}"

# --- faultline ---
"$agent" --listen "127.0.0.1:$agent_port" --upstream "127.0.0.1:$upstream_port" \
  --protocol http --admin "127.0.0.1:$admin_port" >"$work/faultline.log" 2>&1 &
pids+=($!)
wait_listening faultline "$agent_port" "${pids[-1]}"

declare -A port=([direct]=$upstream_port [haproxy]=$haproxy_port [faultline]=$agent_port)
contestants=(direct haproxy faultline)

# One h2load run; prints "req/s succeeded failed mean_us p99_us non2xx".
run() { # CONTESTANT REQUESTS LOGFILE
  local out
  out=$(h2load -n "$2" -c "$CLIENTS" -m "$STREAMS" --log-file="$3" \
    "http://127.0.0.1:${port[$1]}/" 2>&1) || true
  local rps ok failed
  rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out")
  ok=$(awk '/^requests:/ {print $8}' <<<"$out")
  failed=$(awk '/^requests:/ {print $10}' <<<"$out")
  if [ -z "$rps" ] || [ -z "$ok" ]; then
    echo "h2c.sh: h2load against $1 gave no result:" >&2
    echo "$out" >&2
    exit 1
  fi
  # Columns: start (µs since epoch), status, µs until end of response.
  local lat
  lat=$(awk -F'\t' '{print $3}' "$3" | sort -n | awk '
    { v[NR] = $1; sum += $1 }
    END {
      if (NR == 0) { print "nan nan"; exit }
      i = int(NR * 0.99 + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
      printf "%.0f %d\n", sum / NR, v[i]
    }')
  local non2xx
  non2xx=$(awk -F'\t' '$2 < 200 || $2 > 299' "$3" | wc -l)
  echo "$rps $ok $failed $lat $non2xx"
}

echo "h2c: h2load -n $N -c $CLIENTS -m $STREAMS, $REPS repetitions; upstream nginx 127.0.0.1:$upstream_port"
echo "h2c: $(nginx -v 2>&1), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(h2load --version), $(nproc) cores"
for c in "${contestants[@]}"; do # warm-up: connections, pools, caches
  run "$c" 2000 "$work/warmup.log" >/dev/null
done

results=$work/results.txt
: >"$results"
for ((rep = 0; rep < REPS; rep++)); do
  order=()
  for ((i = 0; i < ${#contestants[@]}; i++)); do
    order+=("${contestants[$(((rep + i) % ${#contestants[@]}))]}")
  done
  for c in "${order[@]}"; do
    r=$(run "$c" "$N" "$work/requests-$c-$rep.log")
    echo "$c $rep $r" >>"$results"
    read -r rps ok failed mean p99 non2xx <<<"$r"
    printf '  rep %d %-9s %10s req/s  mean %6.2f ms  p99 %6.2f ms  ok %s  failed %s  non-2xx %s\n' \
      $((rep + 1)) "$c" "$rps" "$(awk "BEGIN{print $mean/1000}")" "$(awk "BEGIN{print $p99/1000}")" \
      "$ok" "$failed" "$non2xx"
  done
done

# Medians over the repetitions, then ratios: req/s as contestant / reference (higher is
# better), latency as contestant / reference (lower is better).
echo
awk '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  {
    c = $1; n[c]++
    rps[c, n[c]] = $3; mean[c, n[c]] = $6; p99[c, n[c]] = $7
    bad[c] += $5 + $8
    if (!(c in lo) || $3 < lo[c]) lo[c] = $3
    if (!(c in hi) || $3 > hi[c]) hi[c] = $3
  }
  END {
    split("direct haproxy faultline", order, " ")
    for (k = 1; k <= 3; k++) {
      c = order[k]
      for (i = 1; i <= n[c]; i++) { a[i] = rps[c, i] }; R[c] = median(a, n[c])
      for (i = 1; i <= n[c]; i++) { a[i] = mean[c, i] }; M[c] = median(a, n[c])
      for (i = 1; i <= n[c]; i++) { a[i] = p99[c, i] }; P[c] = median(a, n[c])
    }
    printf "%-10s %10s %21s %9s %9s | %-17s | %-17s | %-17s\n", "", "req/s", "(min..max)", "mean ms", "p99 ms", \
      "req/s: /direct /haproxy", "mean: /direct /haproxy", "p99: /direct /haproxy"
    for (k = 1; k <= 3; k++) {
      c = order[k]
      printf "%-10s %10.0f %10.0f..%-10.0f %9.2f %9.2f |   %5.2f   %5.2f  |   %5.2f   %5.2f   |   %5.2f   %5.2f", \
        c, R[c], lo[c], hi[c], M[c] / 1000, P[c] / 1000, \
        R[c] / R["direct"], R[c] / R["haproxy"], M[c] / M["direct"], M[c] / M["haproxy"], \
        P[c] / P["direct"], P[c] / P["haproxy"]
      if (bad[c] > 0) printf "   (%d failed or non-2xx!)", bad[c]
      printf "\n"
    }
  }' "$results"
echo "(medians of $REPS runs; mean and p99 from h2load --log-file: request start to end of response)"
