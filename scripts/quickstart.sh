#!/usr/bin/env bash
# The README's main command: a whole game day on this machine. Builds the CLI and runs
# `faultline demo`: an embedded controller (its store in a temp dir), a sample API service,
# an agent in front of it and steady traffic, then examples/api-outage-gameday.yaml (the API
# starts failing for a growing share of requests until the error-rate guard stops it; the
# recovery is measured). Prints the timeline and the verdict and writes
# faultline-demo-report.html. Extra arguments go to `faultline demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p faultline
exec target/release/faultline demo "$@"
