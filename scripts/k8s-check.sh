#!/usr/bin/env bash
# `make k8s-check` (and a step of `make test`): the deployment files, offline.
#
#   1. kubectl kustomize renders k8s/base, k8s/kafka, k8s/overlays/kind and
#      the digest-pinned overlay that scripts/deploy.sh applies;
#   2. kubernetes-validate --strict on every rendered object (Kubernetes
#      schemas bundled in the package, two versions);
#   3. the pinned overlay: every image by digest, the Job's run settings set;
#      no render holds a Secret (an apply would replace a real one); the
#      example Secret validates on its own;
#   4. hadolint on both Dockerfiles;
#   5. checkov --skip-download on the Dockerfiles and the rendered manifests:
#      0 failed (skips are inline, each with its reason: see .checkov.yaml);
#   6. compose.yaml against the Compose specification; k8s/kind/cluster.yaml
#      parses;
#   7. kube-linter, when it can be installed (go install); its absence is
#      reported, the rest still has to pass.
# A missing required tool is a failure (.ci/run and `make tools` install them).
#
# Environment: K8S_VERSIONS (default "1.31.0 1.37.0").
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

VERSIONS=${K8S_VERSIONS:-1.31.0 1.37.0}
START=$SECONDS

ok() { printf 'k8s-check: ok   %s\n' "$*" >&2; }

need kubectl kubernetes-validate checkov hadolint check-jsonschema python3 -- "scripts/install-tools.sh installs them"

OUT=$(mktemp -d "${TMPDIR:-/tmp}/k8s-check.XXXXXX")
at_exit "rm -rf '$OUT'"

# ---- 1. render ----------------------------------------------------------------
for dir in base kafka overlays/kind canary; do
    name=${dir//\//-}
    kubectl kustomize "k8s/$dir" >"$OUT/$name.yaml" || die "kubectl kustomize k8s/$dir"
    ok "kubectl kustomize k8s/$dir: $(grep -c '^kind:' "$OUT/$name.yaml") objects"
done
# The overlay as `make deploy` applies it, with made-up digests.
mkdir -p "$OUT/state"
printf 'producer=sha256:%s\nconsumer=sha256:%s\n' "$(printf '1%.0s' {1..64})" "$(printf '2%.0s' {1..64})" >"$OUT/state/digests.env"
DEPLOY_STATE_DIR=$OUT/state MESSAGES=42 RUN_ID=11111111-2222-3333-4444-555555555555 \
    scripts/deploy.sh render >"$OUT/kind-pinned.yaml" || die "scripts/deploy.sh render"
ok "scripts/deploy.sh render (pinned overlay): $(grep -c '^kind:' "$OUT/kind-pinned.yaml") objects"
RENDERED=("$OUT/base.yaml" "$OUT/kafka.yaml" "$OUT/overlays-kind.yaml" "$OUT/canary.yaml" "$OUT/kind-pinned.yaml")

# ---- 2. schemas -------------------------------------------------------------------
for v in $VERSIONS; do
    kubernetes-validate --strict --quiet -k "$v" "${RENDERED[@]}" || die "kubernetes-validate --strict -k $v"
    ok "kubernetes-validate --strict -k $v: every object of the ${#RENDERED[@]} renders"
done

# ---- 3. the pinned overlay ------------------------------------------------------------
images=$(sed -n 's/^ *image: //p' "$OUT/kind-pinned.yaml" | sort -u)
want="localhost:5001/kind-kafka-rs/consumer@sha256:$(printf '2%.0s' {1..64})
localhost:5001/kind-kafka-rs/producer@sha256:$(printf '1%.0s' {1..64})"
[[ $images == "$want" ]] || die "pinned overlay images are:
$images"
python3 - "$OUT/kind-pinned.yaml" <<'EOF' || die "pinned overlay: the producer Job's settings"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "producer")
env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
assert env["PRODUCER_MESSAGES"] == "42", env
assert env["PRODUCER_RUN_ID"] == "11111111-2222-3333-4444-555555555555", env
names = [e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]]
assert len(names) == len(set(names)), names
EOF
ok "pinned overlay: both images by digest, PRODUCER_MESSAGES and PRODUCER_RUN_ID set once"
python3 - "$OUT/canary.yaml" <<'EOF' || die "k8s/canary: the canary producer Deployment"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert not [d for d in docs if d["kind"] == "Job"], "the canary overlay still has a Job"
dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "producer-canary")
env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
assert env["PRODUCER_CONTINUOUS"] == "true" and int(env["PRODUCER_RATE"]) > 0, env
cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kafka-config")
assert cm["data"]["KAFKA_TOPIC"] == "canary", cm["data"]
assert any(d["kind"] == "Deployment" and d["metadata"]["name"] == "consumer" for d in docs)
EOF
ok "k8s/canary: the Job replaced by Deployment producer-canary (--continuous, a rate), both services on topic canary"
for f in "${RENDERED[@]}"; do
    ! grep -q '^kind: Secret$' "$f" || die "${f##*/} holds a Secret: \`kubectl apply -k\` would replace a real kafka-credentials"
done
kubernetes-validate --strict --quiet -k "${VERSIONS%% *}" k8s/overlays/kind/secret.example.yaml || die "k8s/overlays/kind/secret.example.yaml"
ok "no Secret in any render; k8s/overlays/kind/secret.example.yaml (created by deploy.sh only where none exists) validates"

# ---- 4. hadolint ------------------------------------------------------------------------
hadolint Dockerfile.producer Dockerfile.consumer || die "hadolint"
ok "hadolint Dockerfile.producer Dockerfile.consumer"

# ---- 5. checkov -----------------------------------------------------------------------------
# The rendered files first; checkov wants a known extension.
checkov_args=()
for f in "${RENDERED[@]}"; do checkov_args+=(-f "$f"); done
if ! checkov --config-file .checkov.yaml --framework dockerfile kubernetes \
    -f Dockerfile.producer -f Dockerfile.consumer "${checkov_args[@]}" >"$OUT/checkov.txt" 2>&1; then
    cat "$OUT/checkov.txt" >&2
    die "checkov"
fi
summary=$(grep -E 'Passed checks: [0-9]+, Failed checks: [0-9]+, Skipped checks: [0-9]+' "$OUT/checkov.txt" | tr '\n' ' ')
[[ -n $summary ]] || { cat "$OUT/checkov.txt" >&2; die "checkov printed no summary"; }
if grep -Eq 'Failed checks: [1-9]' "$OUT/checkov.txt"; then cat "$OUT/checkov.txt" >&2; die "checkov: failed checks"; fi
ok "checkov (dockerfile, kubernetes): $summary"

# ---- 6. compose, kind ----------------------------------------------------------------------------
check-jsonschema --builtin-schema vendor.compose-spec compose.yaml >/dev/null || die "compose.yaml does not match the Compose specification"
ok "compose.yaml matches the Compose specification"
python3 - k8s/kind/cluster.yaml <<'EOF' || die "k8s/kind/cluster.yaml"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
assert c["kind"] == "Cluster" and c["apiVersion"] == "kind.x-k8s.io/v1alpha4", c
roles = [n["role"] for n in c["nodes"]]
assert roles.count("control-plane") == 1 and roles.count("worker") >= 2, roles
assert any('config_path = "/etc/containerd/certs.d"' in p for p in c["containerdConfigPatches"])
EOF
ok "k8s/kind/cluster.yaml: control plane + $(grep -c 'role: worker' k8s/kind/cluster.yaml) workers, containerd certs.d"

# ---- 7. kube-linter (optional) ------------------------------------------------------------------
if ! command -v kube-linter >/dev/null 2>&1 && command -v go >/dev/null 2>&1; then
    mkdir -p "$TOOLS_DIR/bin"
    GOBIN="$TOOLS_DIR/bin" timeout 300 go install golang.stackrox.io/kube-linter/cmd/kube-linter@latest >"$OUT/kube-linter-install.txt" 2>&1 || true
fi
if command -v kube-linter >/dev/null 2>&1; then
    kube-linter lint "${RENDERED[@]}" || die "kube-linter"
    ok "kube-linter lint: the ${#RENDERED[@]} renders"
else
    echo "k8s-check: note kube-linter not installed (go install golang.stackrox.io/kube-linter/cmd/kube-linter: $(tail -n1 "$OUT/kube-linter-install.txt" 2>/dev/null || echo 'no go toolchain')); checkov covers the same ground" >&2
fi

echo "k8s-check: PASS in $((SECONDS - START))s" >&2
