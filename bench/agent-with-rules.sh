#!/usr/bin/env bash
# Starts the agent as an HTTP proxy with request-level rules active, for benchmarks that
# measure what matching costs: a 10 % abort behind a header match that benchmark traffic never
# carries (every request is matched, sampled requests would abort), plus a path-prefix rule.
# Usage: agent-with-rules.sh AGENT LISTEN UPSTREAM ADMIN WORKDIR
set -euo pipefail
agent=$1 listen=$2 upstream=$3 admin=$4 workdir=$5
mkdir -p "$workdir"
cat > "$workdir/rules.yaml" <<YAML
routes:
  - name: default
    listen: $listen
    upstream: $upstream
    protocol: http
    faults:
      - name: canary-outage
        type: http_abort
        percentage: 10
        match: { headers: [ { name: x-canary, present: true } ] }
        attributes: { status: 503 }
      - name: admin-slow
        type: http_delay
        percentage: 10
        match: { path: { prefix: /admin/ } }
        attributes: { delay: 100 }
YAML
exec "$agent" --config "$workdir/rules.yaml" --admin "$admin"
