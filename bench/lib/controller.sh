# Shared by bench/fleet.sh and bench/guard-abort.sh (sourced, from the repository root): builds
# the release controller and fleet_bench (unless NO_BUILD=1; binaries from
# $CARGO_TARGET_DIR/release when set), raises the fd limit, and starts a fresh controller per
# run on loopback (temp data dir, ports picked by the kernel), stopped by its PID at exit.
#   start_controller LEASE HEARTBEAT   sets $pid, $grpc and $metrics

# One fd per connection on each side; raise the soft limit to the hard one where allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

[ -n "${NO_BUILD:-}" ] || cargo build --release -p faultline-controller --bins
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

start_controller() { # $1 = lease, $2 = heartbeat
  stop
  rm -rf "$work/data" && mkdir -p "$work/data"
  NO_COLOR=1 "$bin/faultline-controller" --listen 127.0.0.1:0 --data-dir "$work/data" \
    --metrics 127.0.0.1:0 --lease "$1" --heartbeat "$2" >"$work/controller.log" 2>&1 &
  pid=$!
  grpc= metrics=
  for _ in $(seq 50); do
    grpc=$(addr_from_log "controller serving" || true)
    metrics=$(addr_from_log "metrics serving" || true)
    [ -n "$grpc" ] && [ -n "$metrics" ] && break
    sleep 0.1
  done
}
