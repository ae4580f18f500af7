#!/usr/bin/env bash
# scripts/deploy.sh's logic without a Docker engine or kind (neither runs
# on this machine): docker, kind and kubectl are STUBS on PATH that log
# their arguments and answer from a scenario (kind's version, Docker's,
# buildx present or not, what containers and Secrets exist); `kubectl
# kustomize` and the renders of `kubectl apply -k` are the real kubectl.
# What is tested is the script users run, under each shell in
# DEPLOY_CHECK_SHELLS (default: dash and bash; macOS runs it under bash
# 3.2 as sh): the whole `make deploy` flow, the version gates, the
# one-line refusals, the kubeconfig repair, `clean` leaving a registry it
# did not create, the example Secret never replacing a real one, the
# port-forward's port chosen by kubectl, `make monitoring` (refused before
# a deploy, the operator bundle's sha256 checked, the Grafana Secret kept,
# the generated overlay rendered). What is not tested here: that
# Docker, kind and a cluster really behave as the stubs answer.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

read -r -a SHELLS <<<"${DEPLOY_CHECK_SHELLS:-dash bash}"
need kubectl python3 curl "${SHELLS[@]}" -- "scripts/install-tools.sh installs dash; kubectl is a prerequisite"
REAL_KUBECTL=$(command -v kubectl)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/deploy-check.XXXXXX")
at_exit "rm -rf '$WORK'"
mkdir -p "$WORK/bin"
START=$SECONDS

# ---- the stubs ------------------------------------------------------------------
cat >"$WORK/stub.py" <<'EOF'
"""docker, kind and kubectl for scripts/deploy-check.sh: log argv, answer from STUB_* env."""
import os, subprocess, sys

tool = os.environ["STUB_TOOL"]
args = sys.argv[1:]
env = os.environ
with open(env["STUB_LOG"], "a") as log:
    log.write(tool + " " + " ".join(args) + "\n")

def flag(name, default="0"):
    return env.get(name, default) == "1"

def out(text="", code=0):
    if text:
        print(text)
    sys.exit(code)

state_dir = env["STUB_STATE"]
def state(name):
    return os.path.exists(os.path.join(state_dir, name))
def set_state(name):
    open(os.path.join(state_dir, name), "w").close()

if tool == "kind":
    if args[:1] == ["version"]:
        out(f"kind v{env.get('STUB_KIND_VERSION', '0.29.0')} go1.24.2 linux/amd64")
    if args[:2] == ["get", "clusters"]:
        out("kind-kafka-rs" if state("cluster") else "")
    if args[:2] == ["create", "cluster"]:
        set_state("cluster"); set_state("context"); out()
    if args[:2] == ["get", "nodes"]:
        out("kind-kafka-rs-control-plane\nkind-kafka-rs-worker\nkind-kafka-rs-worker2")
    if args[:2] == ["export", "kubeconfig"]:
        set_state("context"); out()
    if args[:2] == ["delete", "cluster"]:
        out()
    out(f"kind stub: unexpected {args}", 3)

if tool == "docker":
    a = " ".join(args)
    if args[:1] == ["version"]:
        fmt = args[2] if len(args) > 2 else ""
        if not flag("STUB_DOCKER_UP", "1"):
            out("Cannot connect to the Docker daemon", 1)
        out(env.get("STUB_DOCKER_ARCH", "amd64") if "Arch" in fmt else env.get("STUB_DOCKER_VERSION", "28.2.2"))
    if a.startswith("buildx version"):
        if flag("STUB_BUILDX", "1"):
            out("github.com/docker/buildx v0.24.0")
        out("docker: unknown command: docker buildx", 1)
    if a.startswith("buildx imagetools inspect"):
        out('"sha256:' + "d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082" + '"')
    if a.startswith("buildx build"):
        out()
    if args[:1] == ["info"]:
        out("[[driver-type io.containerd.snapshotter.v1]]" if flag("STUB_CONTAINERD_STORE") else "[[Backing Filesystem extfs]]")
    if args[:1] == ["inspect"]:
        name = args[-1]
        reg = env.get("STUB_REGISTRY", "none")  # none | ours | foreign
        if reg == "none" and not state("registry"):
            out("", 1)
        if ".State.Running" in a:
            out("true" if state("registry") or reg != "none" else "false")
        if "created-by" in a:
            out("scripts/deploy.sh" if reg == "ours" or state("registry") else "")
        if "Networks.kind" in a:
            out("null")
        out("[{}]")
    if args[:1] == ["ps"]:
        out(env.get("STUB_PORT_TAKEN_BY", ""))
    if args[:1] == ["run"]:
        set_state("registry"); out("0123abcd")
    if args[:1] in (["start"], ["exec"], ["network"], ["rm"], ["pull"]):
        if args[:1] == ["exec"]:
            sys.stdin.read() if "-i" in args else None
        out()
    if args[:2] == ["image", "ls"]:
        out()
    if args[:1] == ["push"]:
        out()
    if args[:2] == ["image", "inspect"]:
        ref = args[-1].rsplit(":", 1)[0]
        digest = "1" * 64 if "producer" in ref else "2" * 64
        out(f"{ref}@sha256:{digest}")
    out(f"docker stub: unexpected {args}", 3)

if tool == "kubectl":
    if args[:1] == ["kustomize"] or args[:2] == ["version", "--client"]:
        if args[:1] == ["version"] and env.get("STUB_KUBECTL_VERSION"):
            out(f"clientVersion:\n  gitVersion: v{env['STUB_KUBECTL_VERSION']}")
        os.execv(env["REAL_KUBECTL"], [env["REAL_KUBECTL"]] + args)
    if args[:3] == ["config", "get-contexts", "kind-kind-kafka-rs"]:
        out("", 0 if state("context") else 1)
    if args[:2] != ["--context", "kind-kind-kafka-rs"]:
        out(f"kubectl stub: not pinned to the kind context: {args}", 4)
    rest = args[2:]
    if "-n" in rest:
        i = rest.index("-n"); ns = rest[i + 1]; rest = rest[:i] + rest[i + 2:]
    r = " ".join(rest)
    if r.startswith("get daemonset kindnet"):
        out(env.get("STUB_KINDNETD", "docker.io/kindest/kindnetd:v20250512-df8de77b"))
    if r.startswith("get secret kafka-credentials"):
        out("", 0 if state("secret") or flag("STUB_SECRET") else 1)
    if r.startswith("create -f"):
        set_state("secret"); out("secret/kafka-credentials created")
    if r.startswith("get secret grafana-admin"):
        out("", 0 if state("grafana-secret") or flag("STUB_GRAFANA_SECRET") else 1)
    if r.startswith("create secret generic grafana-admin"):
        set_state("grafana-secret"); out("secret/grafana-admin created")
    if r.startswith("apply -k"):
        # The real render: an apply must never carry a Secret.
        rendered = subprocess.run([env["REAL_KUBECTL"], "kustomize", rest[2]], capture_output=True, text=True, check=True).stdout
        if "\nkind: Secret\n" in "\n" + rendered:
            out("kubectl stub: apply -k would replace Secret kafka-credentials", 5)
        out()
    if r.startswith("get job"):
        out("Complete ")
    if r.startswith("logs -l app.kubernetes.io/name=consumer"):
        run_id = ""
        with open(os.path.join(env["DEPLOY_STATE_DIR"], "overlay", "kustomization.yaml")) as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            if "PRODUCER_RUN_ID" in line:
                run_id = lines[i + 1].split('"')[1]
        n = int(env.get("MESSAGES", "20"))
        out("\n".join(f'[pod/consumer-x] {{"message":"record","run_id":"{run_id}","seq":{i}}}' for i in range(n)))
    if r.startswith("port-forward"):
        # As kubectl does for local port 0 (":8080"): it picks one and says so.
        if not any(x.startswith(":") for x in rest):
            out("kubectl stub: port-forward with a fixed local port", 6)
        print(f"Forwarding from 127.0.0.1:{env['STUB_HTTP_PORT']} -> 8080", flush=True)
        import time; time.sleep(60); out()
    out()
EOF
for t in docker kind kubectl; do
    printf '#!/bin/sh\nSTUB_TOOL=%s exec python3 %s/stub.py "$@"\n' "$t" "$WORK" >"$WORK/bin/$t"
    chmod +x "$WORK/bin/$t"
done

# One HTTP server for the registry's /v2/ and the port-forwarded /healthz, /metrics.
HTTP_PORT=$(free_port)
python3 - "$HTTP_PORT" >"$WORK/http.log" 2>&1 <<'EOF' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"kafka_consumer_records_consumed_total{topic=\"test\"} 20\n" if self.path == "/metrics" else b"ok\n"
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
HTTP_PID=$!
at_exit "stop_pid $HTTP_PID 2"
wait_for 10 "the stub HTTP server" curl -fsS "http://127.0.0.1:$HTTP_PORT/v2/"
# `make monitoring` downloads the operator's bundle: a stand-in from the stub
# server, and its sha256 (the real one's is pinned in deploy.sh).
BUNDLE_URL=http://127.0.0.1:$HTTP_PORT/bundle.yaml
BUNDLE_SHA256=$(curl -fsS "$BUNDLE_URL" | sha256sum | cut -d' ' -f1)

# ---- scenarios -------------------------------------------------------------------
pass=0
fail=0
# run SHELL NAME EXPECT GREP-LOG GREP-OUT [ENV=...] -- ARGS...
#   EXPECT: ok (exit 0), fail (exit 1 with one `deploy:` line), usage (exit 2)
#   STUB_INIT="cluster context secret registry": what exists at the start
#   GREP-LOG: a regex the stub log must match (or !regex: must not); '' none
#   GREP-OUT: a regex the script's output must match; '' none
run() {
    local sh=$1 name=$2 expect=$3 log_re=$4 out_re=$5 rc=0 vars=() t0=$SECONDS
    shift 5
    while [[ $1 != -- ]]; do vars+=("$1"); shift; done
    shift
    local dir=$WORK/$sh-${name// /-} v
    mkdir -p "$dir/state"
    for v in "${vars[@]}"; do
        [[ $v != STUB_INIT=* ]] || for f in ${v#STUB_INIT=}; do touch "$dir/state/$f"; done
    done
    env -i PATH="$WORK/bin:$PATH" HOME="$HOME" TMPDIR="${TMPDIR:-/tmp}" KIND_KAFKA_TOOLS="$TOOLS_DIR" \
        STUB_LOG="$dir/calls.log" STUB_STATE="$dir/state" REAL_KUBECTL="$REAL_KUBECTL" \
        STUB_HTTP_PORT="$HTTP_PORT" REGISTRY_PORT="$HTTP_PORT" DEPLOY_STATE_DIR="$dir/deploy-state" \
        "${vars[@]}" "$sh" scripts/deploy.sh "$@" >"$dir/out.txt" 2>&1 || rc=$?
    touch "$dir/calls.log"
    local why=""
    if [[ $expect == ok && $rc != 0 ]]; then why="exit $rc, want 0"; fi
    if [[ $expect == fail && $rc == 0 ]]; then why="exit 0, want a refusal"; fi
    if [[ $expect == fail && $rc != 0 && $(grep -c "^deploy: " "$dir/out.txt") != 1 ]]; then
        why="the refusal is not one 'deploy:' line"
    fi
    if [[ $expect == usage && $rc != 2 ]]; then why="exit $rc, want 2 (usage)"; fi
    if [[ -n $log_re ]]; then
        if [[ $log_re == !* ]]; then
            ! grep -Eq -- "${log_re#!}" "$dir/calls.log" || why="${why:+$why; }the stubs were called with /${log_re#!}/"
        else
            grep -Eq -- "$log_re" "$dir/calls.log" || why="${why:+$why; }no stub call matches /$log_re/"
        fi
    fi
    if [[ -n $out_re ]] && ! grep -Eq -- "$out_re" "$dir/out.txt"; then
        why="${why:+$why; }the output does not match /$out_re/"
    fi
    if [[ -z $why ]]; then
        pass=$((pass + 1))
        printf 'deploy-check: ok   [%s] %s (%ss)\n' "$sh" "$name" "$((SECONDS - t0))" >&2
    else
        fail=$((fail + 1))
        printf 'deploy-check: FAIL [%s] %s: %s\n' "$sh" "$name" "$why" >&2
        sed 's/^/    | /' "$dir/out.txt" | tail -n 15 >&2
    fi
}

# also_called SHELL NAME REGEX: a further stub call the scenario NAME made.
also_called() {
    if grep -Eq -- "$3" "$WORK/$1-${2// /-}/calls.log"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        printf 'deploy-check: FAIL [%s] %s: no stub call matches /%s/\n' "$1" "$2" "$3" >&2
    fi
}

for sh in "${SHELLS[@]}"; do
    # The whole flow, fresh: registry and cluster created, the example
    # Secret created (none existed), images for the Docker host's platform,
    # the port-forward's local port left to kubectl and read back from it.
    run "$sh" "deploy on a fresh machine" ok 'create -f k8s/overlays/kind/secret.example.yaml' '^/healthz: ok' -- deploy
    also_called "$sh" "deploy on a fresh machine" 'buildx build --platform linux/amd64 -f Dockerfile.consumer'
    also_called "$sh" "deploy on a fresh machine" 'port-forward --address 127.0.0.1 service/consumer-metrics :8080'
    # Again on an arm64 Docker host, where a real Secret exists: kept.
    run "$sh" "deploy keeps a real Secret, arm64 host" ok '!create -f' 'secret/kafka-credentials: exists, kept' \
        STUB_DOCKER_ARCH=arm64 STUB_SECRET=1 -- deploy
    also_called "$sh" "deploy keeps a real Secret, arm64 host" 'buildx build --platform linux/arm64 -f Dockerfile.consumer'
    # Versions and tools: one line each.
    run "$sh" "kind 0.27.0 refused (NetworkPolicy blocks probes)" fail '' \
        '^deploy: kind v0\.27\.0 is older than 0\.28\.0: .*#3875' STUB_KIND_VERSION=0.27.0 -- cluster
    run "$sh" "kind 0.28.0-alpha refused" fail '' 'older than 0\.28\.0' STUB_KIND_VERSION=0.28.0-alpha -- versions
    run "$sh" "kind 0.28.0 accepted" ok '' ': ok$' STUB_KIND_VERSION=0.28.0 -- versions
    run "$sh" "kind v0.31.0+build accepted" ok '' ': ok$' STUB_KIND_VERSION=0.31.0+abc -- versions
    run "$sh" "an existing cluster with old kindnet refused" fail '' 'kindnetd:v20250214.*#3875' \
        STUB_KINDNETD=docker.io/kindest/kindnetd:v20250214-acbabc1a -- cluster
    run "$sh" "Docker 20.10 refused" fail '' '^deploy: Docker 20\.10\.24 is older than 23\.0' STUB_DOCKER_VERSION=20.10.24 -- versions
    run "$sh" "no buildx plugin" fail '' '^deploy: the docker buildx plugin is missing' STUB_BUILDX=0 -- images
    run "$sh" "no Docker daemon" fail '' 'daemon is not reachable' STUB_DOCKER_UP=0 -- images
    run "$sh" "kubectl 1.26 refused" fail '' 'kubectl v1\.26\.3 is older than 1\.27' STUB_KUBECTL_VERSION=1.26.3 -- versions
    run "$sh" "several PLATFORMS need the containerd image store" fail '!buildx build' \
        'containerd image store' PLATFORMS=linux/amd64,linux/arm64 -- images
    run "$sh" "PLATFORMS=linux/amd64,linux/arm64 with the containerd store" ok \
        'buildx build --platform linux/amd64,linux/arm64 -f Dockerfile.producer' '' \
        PLATFORMS=linux/amd64,linux/arm64 STUB_CONTAINERD_STORE=1 -- images
    run "$sh" "PLATFORMS=linux/s390x refused" fail '' "'linux/s390x' is not supported" PLATFORMS=linux/s390x -- images
    # Registry ownership.
    run "$sh" "port 5001 taken by kind's recipe registry" fail '!docker run' 'taken by container kind-registry' \
        STUB_PORT_TAKEN_BY=kind-registry -- cluster
    run "$sh" "clean leaves a registry it did not create" ok '!docker rm' 'not created by this project: left alone' \
        STUB_REGISTRY=foreign -- clean
    run "$sh" "clean removes its own registry" ok 'docker rm -f kind-kafka-rs-registry' '' STUB_REGISTRY=ours -- clean
    # The kubeconfig lost its context: repaired, not refused.
    run "$sh" "missing kubectl context repaired" ok 'kind export kubeconfig --name kind-kafka-rs' '' \
        STUB_REGISTRY=ours STUB_INIT=cluster -- cluster
    run "$sh" "an existing cluster with its context is used as is" ok '!kind (create|export)' 'cluster: exists' \
        STUB_REGISTRY=ours "STUB_INIT=cluster context" -- cluster
    # make monitoring: refused before a deploy; after one (the pinned overlay
    # of `render`), the operator bundle downloaded (here from the stub HTTP
    # server, with that file's sha256) and applied server-side, the stack,
    # a random Grafana password only where none exists, and the pinned
    # overlay with the k8s/monitoring component (rendered for real by the
    # stub's apply -k: the generated overlay's relative paths must resolve).
    run "$sh" "monitoring before make deploy refused" fail '!apply' 'run .make deploy. first' \
        "STUB_INIT=cluster context" -- monitoring
    state=$WORK/$sh-monitoring-state
    run "$sh" "render for monitoring" ok '' '' DEPLOY_STATE_DIR="$state" -- render
    run "$sh" "monitoring after make deploy" ok \
        'apply --server-side --force-conflicts -f .*/prometheus-operator-bundle.yaml' 'port-forward svc/grafana 3000:3000' \
        "STUB_INIT=cluster context" DEPLOY_STATE_DIR="$state" PROM_OPERATOR_BUNDLE_URL="$BUNDLE_URL" \
        PROM_OPERATOR_BUNDLE_SHA256="$BUNDLE_SHA256" -- monitoring
    for call in 'create secret generic grafana-admin --from-literal=admin-user=admin --from-literal=admin-password=[0-9a-f]{36}$' \
        'apply -k k8s/monitoring-stack$' 'delete job producer' 'apply -k .*/monitoring$' \
        'wait --for=condition=Established .* crd/servicemonitors.monitoring.coreos.com' \
        'rollout status statefulset/prometheus-kafka-rs' 'rollout status deployment/grafana' \
        'rollout status deployment/kube-state-metrics'; do
        also_called "$sh" "monitoring after make deploy" "$call"
    done
    run "$sh" "monitoring keeps a Grafana Secret, bundle cached" ok '!create secret generic grafana-admin' \
        'secret/grafana-admin: exists, kept' "STUB_INIT=cluster context" DEPLOY_STATE_DIR="$state" \
        STUB_GRAFANA_SECRET=1 PROM_OPERATOR_BUNDLE_URL=http://127.0.0.1:1/unreachable PROM_OPERATOR_BUNDLE_SHA256="$BUNDLE_SHA256" -- monitoring
    run "$sh" "an operator bundle with another sha256 refused" fail '!apply --server-side' 'has sha256 [0-9a-f]{64}, expected 0{64}: not applied' \
        "STUB_INIT=cluster context" DEPLOY_STATE_DIR="$state" PROM_OPERATOR_BUNDLE_URL="$BUNDLE_URL" \
        PROM_OPERATOR_BUNDLE_SHA256="$(printf '0%.0s' {1..64})" -- monitoring
    # render needs no cluster; usage on no command.
    run "$sh" "render without a cluster" ok '' '^kind: Deployment' -- render
    run "$sh" "usage without a command" usage '' 'scripts/deploy.sh deploy' --
done

echo "deploy-check: $((SECONDS - START))s, shells: ${SHELLS[*]}" >&2
echo "deploy-check: $pass passed, $fail failed"
((fail == 0))
