# Shared by bench/h2c.sh and bench/neighbours.sh (sourced, from the repository root, after
# `work` is set to the run's temp dir): the processes a bench starts, tracked by PID and
# stopped at exit, and the loopback ports they listen on.
#   pids+=($!)                    tracks a started process; all are stopped on exit
#   free_port                     prints a loopback port nobody listens on
#   wait_listening NAME PORT PID  waits for PID to listen on PORT, else prints $work/NAME.log
#                                 and exits
# KEEP=1 keeps $work (the logs) after the run.

pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    # The agent drains for up to its grace period; give everything 15 s, then insist.
    for _ in $(seq 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# A loopback port nobody listens on (checked, then used at once: good enough on a test box).
used_ports=" "
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    case $used_ports in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports+="$p "
      echo "$p"
      return
    fi
  done
}

wait_listening() { # NAME PORT PID
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "$(basename "$0"): $1 did not listen on 127.0.0.1:$2; its log:" >&2
  cat "$work/$1.log" >&2 || true
  exit 1
}
