#!/usr/bin/env bash
# What transparent capture costs: HTTP load from namespace A to nginx in namespace B (a veth
# pair, 10.213.0.1 -> 10.213.0.2:8080), side by side in one run and in rotating order per round:
#   direct       no agent, no iptables rules
#   auto-tN      A's outbound connections REDIRECTed by `faultline-agent init-iptables --mark
#                0x1e7 --no-inbound` to the agent (`--capture-outbound 0.0.0.0:15001 --mark
#                0x1e7 --threads N`), one catch-all captured route, `protocol: auto` (HTTP
#                detection runs, then the HTTP path), no faults
#   tcp-tN       the same route declared `protocol: tcp` (no detection, byte path)
# each measured with wrk, keep-alive and `Connection: close` (a new connection per request).
# Prints req/s, p50 and p99 per contestant (median over rounds) and the ratios to direct
# (median of per-round paired ratios, same round and mode): compare the ratios, not absolute
# figures (the machine is shared and noisy).
#
# Needs root (network namespaces, iptables), iproute2, iptables, curl, taskset, and Debian's
# nginx and wrk (installed below if missing). Makes its own namespaces flbench-PID-a/-b and
# deletes them on exit, with everything in them; nothing outside them is a traffic target.
#
# Environment: DURATION (seconds per wrk run, 10), ROUNDS (2), CONNS (wrk -c, 64),
# THREADS (agent --threads values, "1"; "default" means no flag, e.g. THREADS="1 default"),
# PIN (1: wrk on CPU 0, nginx and a --threads 1 agent on CPU 1; 0: no pinning),
# NO_BUILD=1 (use the existing target/release/faultline-agent).
# At the defaults a run takes ~2 min after the build; THREADS="1 default" DURATION=6 ~2.5 min.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/nginx.sh

duration=${DURATION:-10} rounds=${ROUNDS:-2} conns=${CONNS:-64}
threads=${THREADS:-1} pin=${PIN:-1}
mark=0x1e7

need=()
for bin in nginx wrk; do command -v "$bin" >/dev/null || need+=("$bin"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk
fi
[ "$(id -u)" = 0 ] || { echo "capture.sh: needs root (network namespaces, iptables)" >&2; exit 1; }

[ -n "${NO_BUILD:-}" ] || cargo build --release -p faultline-agent
agent=${CARGO_TARGET_DIR:-$PWD/target}/release/faultline-agent

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ncpu=$(nproc)
cpu_client=0 cpu_server=$((ncpu > 1 ? 1 : 0))

a=flbench-$$-a b=flbench-$$-b
ip_a=10.213.0.1 ip_b=10.213.0.2
url=http://$ip_b:8080/hello.txt
work=$(mktemp -d)
nginx_pid= agent_pid=

stop_agent() {
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
  agent_pid=
}
cleanup() {
  stop_agent
  if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
  ip netns delete "$a" 2>/dev/null || true
  ip netns delete "$b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

in_a() { ip netns exec "$a" "$@"; }
# Prefixes that pin a command to the client's or the server's CPU (empty when PIN=0); used as
# plain words, not a function, so that `$!` of a backgrounded command is the process itself.
pin_client=() pin_server=()
if [ "$pin" = 1 ]; then pin_client=(taskset -c "$cpu_client") pin_server=(taskset -c "$cpu_server"); fi

# --- two namespaces joined by a veth pair that exists only inside them
ip netns add "$a"
ip netns add "$b"
ip -n "$a" link add fb0 type veth peer name fb1 netns "$b"
ip -n "$a" addr add "$ip_a/24" dev fb0
ip -n "$b" addr add "$ip_b/24" dev fb1
for ns_dev in "$a fb0" "$b fb1" "$a lo" "$b lo"; do
  set -- $ns_dev
  ip -n "$1" link set "$2" up
done

# --- nginx in B: one worker, its own prefix, config and pid file, a 100-byte static file
mkdir -p "$work/nginx/www" "$work/nginx/tmp"
head -c 99 /dev/zero | tr '\0' 'x' >"$work/nginx/www/hello.txt"; echo >>"$work/nginx/www/hello.txt"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
$(nginx_temp_paths "$work/nginx/tmp")
  keepalive_requests 10000000;
  server {
    listen $ip_b:8080 backlog=4096;
    root $work/nginx/www;
  }
}
CONF
# The worker runs as nobody: let it read the files. taskset and `ip netns exec` exec nginx
# (daemon off), so $! is nginx's master.
chmod a+rx "$work" "$work/nginx" "$work/nginx/www" && chmod a+r "$work/nginx/www/hello.txt"
"${pin_server[@]}" ip netns exec "$b" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" \
  -g 'daemon off;' >"$work/nginx/stderr.log" 2>&1 &
nginx_pid=$!
for _ in $(seq 50); do
  in_a curl -sf -o /dev/null "$url" && break
  sleep 0.1
done
in_a curl -sf -o /dev/null "$url" || { echo "nginx in $b does not answer" >&2; cat "$work/nginx/error.log" >&2; exit 1; }

# --- the agent in A (its admin API on A's own loopback, never captured)
start_agent() { # $1 = protocol (auto|tcp), $2 = threads (N|default)
  cat >"$work/agent-$1.yaml" <<YAML
routes:
  - name: egress
    capture: outbound
    upstream: original
    protocol: $1
YAML
  local args=(--config "$work/agent-$1.yaml" --admin 127.0.0.1:8474 --mark "$mark"
    --capture-outbound 0.0.0.0:15001)
  [ "$2" = default ] || args+=(--threads "$2")
  local pin_agent=()
  [ "$2" = 1 ] && pin_agent=("${pin_server[@]}")
  FAULTLINE_LOG=warn "${pin_agent[@]}" ip netns exec "$a" "$agent" "${args[@]}" \
    >"$work/agent.log" 2>&1 &
  agent_pid=$!
  for _ in $(seq 50); do
    in_a curl -sf -o /dev/null http://127.0.0.1:8474/ready && break
    sleep 0.1
  done
  in_a curl -sf -o /dev/null http://127.0.0.1:8474/ready || { cat "$work/agent.log" >&2; exit 1; }
  in_a "$agent" init-iptables --mark "$mark" --outbound-port 15001 --no-inbound >/dev/null
}
captured() { # connections the agent's route took so far
  in_a curl -sf http://127.0.0.1:8474/metrics |
    awk '/^faultline_route_connections_total\{route="egress"\}/ { print $2 }'
}

to_us() { # wrk's "1.23ms" / "850.00us" / "1.20s" -> microseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") f = 1; else if (u == "ms") f = 1000; else if (u == "s") f = 1000000; else f = 1
    printf "%.0f", n * f }'
}
run_wrk() { # $1 = contestant, $2 = mode (ka|close), $3 = round; appends to results.tsv
  local hdr=() out rps p50 p99 errs
  [ "$2" = close ] && hdr=(-H 'Connection: close')
  out=$("${pin_client[@]}" ip netns exec "$a" wrk -t1 -c"$conns" -d"${duration}s" --latency \
    "${hdr[@]}" "$url")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p50=$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
  p99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  errs=$(awk '/Socket errors|Non-2xx/ { printf "%s ", $0 }' <<<"$out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$3" "$1" "$2" "$rps" "$p50" "$p99" >>"$work/results.tsv"
  printf '  round %s %-14s %-5s %10s req/s  p50 %6s us  p99 %7s us  %s\n' \
    "$3" "$1" "$2" "$rps" "$p50" "$p99" "$errs"
}

contestants=(direct)
for t in $threads; do
  tag=t$t; [ "$t" = default ] && tag=tdef
  contestants+=("auto-$tag" "tcp-$tag")
done

measure() { # $1 = contestant, $2 = round
  local c=$1 proto t
  if [ "$c" != direct ]; then
    proto=${c%%-*} t=${c#*-t}; [ "$t" = def ] && t=default
    start_agent "$proto" "$t"
  fi
  # one second of keep-alive load to warm up, not recorded
  "${pin_client[@]}" ip netns exec "$a" wrk -t1 -c"$conns" -d1s "$url" >/dev/null
  run_wrk "$c" ka "$2"
  run_wrk "$c" close "$2"
  if [ "$c" != direct ]; then
    echo "  ($c: the agent's route took $(captured) connections)"
    in_a "$agent" init-iptables --cleanup >/dev/null
    stop_agent
  fi
}

echo "capture bench: wrk -t1 -c$conns -d${duration}s, $rounds rounds, agent threads: $threads," \
  "pinning: $([ "$pin" = 1 ] && echo "wrk CPU $cpu_client, nginx and --threads 1 agent CPU $cpu_server" || echo none)"
: >"$work/results.tsv"
for r in $(seq "$rounds"); do
  # rotate the order each round so no contestant always runs first or last
  n=${#contestants[@]}
  for i in $(seq 0 $((n - 1))); do
    measure "${contestants[$(((i + r - 1) % n))]}" "$r"
  done
done

# --- summary: medians over rounds; ratios are per-round paired against direct, then the median
echo
awk -F'\t' -v order="${contestants[*]}" '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function range(list,   a, n, i, lo, hi) {
    n = split(list, a, " "); lo = hi = a[1] + 0
    for (i = 2; i <= n; i++) { if (a[i] + 0 < lo) lo = a[i] + 0; if (a[i] + 0 > hi) hi = a[i] + 0 }
    return sprintf("%.2f-%.2f", lo, hi)
  }
  { r[$1, $2, $3] = $4; p50[$1, $2, $3] = $5; p99[$1, $2, $3] = $6; if ($1 > rounds) rounds = $1 }
  END {
    nc = split(order, cs, " ")
    for (m = 1; m <= 2; m++) {
      mode = m == 1 ? "ka" : "close"
      printf "%s (%s)\n", mode == "ka" ? "keep-alive" : "Connection: close", "median over rounds; ratio = median of per-round contestant/direct, min-max"
      printf "| contestant | req/s | p50 us | p99 us | req/s ratio | p50 ratio | p99 ratio |\n|---|---|---|---|---|---|---|\n"
      for (i = 1; i <= nc; i++) {
        c = cs[i]; lr = l50 = l99 = q = q50 = q99 = ""
        for (k = 1; k <= rounds; k++) {
          lr = lr " " r[k, c, mode]; l50 = l50 " " p50[k, c, mode]; l99 = l99 " " p99[k, c, mode]
          q = q " " r[k, c, mode] / r[k, "direct", mode]
          q50 = q50 " " p50[k, c, mode] / p50[k, "direct", mode]
          q99 = q99 " " p99[k, c, mode] / p99[k, "direct", mode]
        }
        if (c == "direct")
          printf "| %s | %.0f | %.0f | %.0f | 1 | 1 | 1 |\n", c, median(lr), median(l50), median(l99)
        else
          printf "| %s | %.0f | %.0f | %.0f | %.2f (%s) | %.2f (%s) | %.2f (%s) |\n", c, median(lr), median(l50), median(l99),
            median(q), range(q), median(q50), range(q50), median(q99), range(q99)
      }
      print ""
    }
  }' "$work/results.tsv"
