#!/bin/sh
# `local` is not POSIX, but every sh this runs under has it (dash, bash and
# bash-as-sh on macOS, busybox ash, zsh): SC3043 is off for the file.
# shellcheck disable=SC3043
# The kind deployment: cluster, images, registry, Kafka, the services.
#
#   scripts/deploy.sh cluster    kind cluster (control plane + 2 workers) and a
#                                local registry on 127.0.0.1:5001 wired into
#                                containerd on every node
#   scripts/deploy.sh images     docker buildx build both images (Dockerfile.*)
#                                for PLATFORMS (default: the Docker host's)
#   scripts/deploy.sh push       push them to localhost:5001; record digests
#   scripts/deploy.sh kafka      single-node Kafka (k8s/kafka), wait for the topic
#   scripts/deploy.sh deploy     all of the above, then the services pinned by
#                                digest: roll out the consumer, run the producer
#                                Job, wait for it, show the consumer's lines for
#                                the run, probe /healthz and /metrics through a
#                                port-forward
#   scripts/deploy.sh render     write the digest-pinned overlay and print it
#                                (no cluster needed; placeholder digests when
#                                nothing was pushed) - what `deploy` applies
#   scripts/deploy.sh monitoring Prometheus (Prometheus Operator), Grafana and
#                                kube-state-metrics in namespace monitoring
#                                (k8s/monitoring-stack), the
#                                deployed services again with the k8s/monitoring
#                                component; prints how to open both
#   scripts/deploy.sh logs       consumer and producer logs
#   scripts/deploy.sh undeploy   delete the services and Kafka (cluster stays)
#   scripts/deploy.sh clean      delete the kind cluster and the registry this
#                                script created (never a container it did not)
#   scripts/deploy.sh versions   check docker, kind and kubectl against the
#                                minimum versions below, nothing else
#
# Every step is idempotent: run `deploy` again after a code change. A real
# kafka-credentials Secret in the cluster is never replaced (the example one
# is created only where none exists).
#
# Minimum versions: kind 0.28.0 (its kindnet enforces NetworkPolicy without
# blocking kubelet probes: kube-network-policies 0.8; kind 0.24-0.27 fail
# the probes under the namespaces' default-deny policies, kind issue #3875),
# kubectl 1.27 (kustomize v5), Docker 23.0 with the buildx plugin (BuildKit:
# cache mounts, --platform). Building several PLATFORMS at once needs Docker's
# containerd image store.
#
# Runs on Linux and macOS: POSIX sh and POSIX tools only (no GNU options),
# checked by `make lint` (shellcheck --shell=sh) and scripts/deploy-check.sh.
#
# Environment: MESSAGES (records the producer Job sends, default 20),
# PLATFORMS (images: e.g. linux/amd64,linux/arm64; default the Docker host's),
# DEPLOY_STATE_DIR (digests and the pinned overlay, default .state/kind),
# KIND_CLUSTER (default kind-kafka-rs), REGISTRY_PORT (default 5001),
# REGISTRY_NAME (default kind-kafka-rs-registry), IMAGE_TAG (default dev),
# PROM_OPERATOR_BUNDLE_URL and PROM_OPERATOR_BUNDLE_SHA256 (the Prometheus
# Operator's bundle.yaml `monitoring` applies; default v0.93.0 below).
set -eu
# pipefail where the shell has it (bash, also as macOS's sh; not dash 0.5.12):
# deploy-check.sh runs this under both, so a pipeline that may fail says so.
# shellcheck disable=SC3040
if (set -o pipefail) 2>/dev/null; then set -o pipefail; fi
LIB_POSIX=1
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-kind-kafka-rs}
REG_NAME=${REGISTRY_NAME:-kind-kafka-rs-registry}
REG_PORT=${REGISTRY_PORT:-5001}
REG=localhost:$REG_PORT
TAG=${IMAGE_TAG:-dev}
MESSAGES=${MESSAGES:-20}
STATE=${DEPLOY_STATE_DIR:-.state/kind}
PINNED=$STATE/overlay
NS=kafka-services
SERVICES="producer consumer"
# The registry image for the kind-side registry (Docker's distribution).
REGISTRY_IMAGE=${REGISTRY_IMAGE:-registry:2.8.3}
# The label on what this script creates; `clean` removes nothing without it.
OWNER_LABEL=io.kind-kafka-rs.created-by=scripts/deploy.sh
KIND_MIN=0.28.0
KUBECTL_MIN=1.27.0
DOCKER_MIN=23.0.0
# kindnetd of kind 0.28.0's node images (kube-network-policies 0.8).
KINDNETD_MIN=20250512
# The Prometheus Operator (CRDs, RBAC, the operator in namespace default):
# its bundle.yaml at tag v0.93.0, the version k8s/monitoring's CRD schemas
# come from; the sha256 is that file's (the Go module proxy's v0.93.0 zip).
PROM_OPERATOR_VERSION=v0.93.0
PROM_OPERATOR_BUNDLE_URL=${PROM_OPERATOR_BUNDLE_URL:-https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/$PROM_OPERATOR_VERSION/bundle.yaml}
PROM_OPERATOR_BUNDLE_SHA256=${PROM_OPERATOR_BUNDLE_SHA256:-a3061ceebd87de793d1ba9bed10cb763be9ce748adb53b5c5ef4c7c65ee38376}

# ---- versions and tools ---------------------------------------------------------
# version_ge A B: A >= B for dotted versions (leading v, +build ignored; a
# pre-release such as 0.28.0-alpha is below 0.28.0).
version_ge() {
    awk -v a="$1" -v b="$2" 'function norm(v, parts, n, i, out) {
            sub(/^v/, "", v); sub(/\+.*/, "", v)
            pre = (v ~ /-/); sub(/-.*/, "", v)
            n = split(v, parts, ".")
            out = ""
            for (i = 1; i <= 3; i++) out = out sprintf("%08d", (i <= n ? parts[i] + 0 : 0))
            return out (pre ? "0" : "1")
        }
        BEGIN { exit !(norm(a) >= norm(b)) }'
}

install_url() {
    case $1 in
        docker) echo https://docs.docker.com/engine/install/ ;;
        kind) echo https://kind.sigs.k8s.io/docs/user/quick-start/#installation ;;
        kubectl) echo https://kubernetes.io/docs/tasks/tools/ ;;
    esac
}

# require TOOL...: each installed, reachable and new enough, or one line why.
require() {
    local missing="" t v
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || missing="$missing $t ($(install_url "$t"))"
    done
    [ -z "$missing" ] || die "needs$missing"
    for t in "$@"; do
        case $t in
            docker)
                v=$(docker version -f '{{.Server.Version}}' 2>/dev/null) ||
                    die "docker is installed but its daemon is not reachable (docker version fails): start Docker, or check DOCKER_HOST / your permissions"
                version_ge "$v" "$DOCKER_MIN" || die "Docker $v is older than $DOCKER_MIN (BuildKit and buildx by default): update Docker"
                docker buildx version >/dev/null 2>&1 ||
                    die "the docker buildx plugin is missing (docker buildx version fails): install docker-buildx-plugin (Docker Engine) or update Docker Desktop"
                ;;
            kind)
                v=$(kind version 2>/dev/null | awk '{print $2}' || true)
                version_ge "${v:-0}" "$KIND_MIN" ||
                    die "kind ${v:-(unknown version)} is older than $KIND_MIN: its kindnet NetworkPolicy blocks kubelet probes under the default-deny policies here (kind issue #3875); install kind $KIND_MIN or newer"
                ;;
            kubectl)
                v=$(kubectl version --client -o yaml 2>/dev/null | sed -n 's/^ *gitVersion: //p' | head -n 1 || true)
                version_ge "${v:-0}" "$KUBECTL_MIN" ||
                    die "kubectl ${v:-(unknown version)} is older than $KUBECTL_MIN (kustomize v5): update kubectl"
                ;;
        esac
    done
}

kctx() { kubectl --context "kind-$CLUSTER" "$@"; }

cluster_exists() {
    kind get clusters 2>/dev/null | grep -qx "$CLUSTER"
}

# kubectl against the kind cluster only, never whatever context is current;
# a cluster whose context went missing from the kubeconfig gets it back.
need_cluster() {
    require kubectl
    kubectl config get-contexts "kind-$CLUSTER" >/dev/null 2>&1 && return 0
    if command -v kind >/dev/null 2>&1 && cluster_exists; then
        info "kind cluster $CLUSTER has no kubectl context: kind export kubeconfig --name $CLUSTER"
        kind export kubeconfig --name "$CLUSTER" >/dev/null
        return 0
    fi
    die "no kind cluster $CLUSTER (no kubectl context kind-$CLUSTER): create it with \`make cluster\` (or set KIND_CLUSTER)"
}

# The running cluster's kindnet, whatever kind created it: NetworkPolicy
# enforcement that keeps probes working (kindnetd v20250512 and later), or a
# CNI of the user's choice (no kindnet DaemonSet: its enforcement is theirs).
check_kindnet() {
    local image date
    image=$(kctx -n kube-system get daemonset kindnet -o 'jsonpath={.spec.template.spec.containers[0].image}' 2>/dev/null || true)
    [ -n "$image" ] || { info "no kindnet DaemonSet: NetworkPolicy is enforced (or not) by this cluster's own CNI"; return 0; }
    date=$(printf '%s\n' "$image" | sed -n 's/.*kindnetd:v\([0-9]\{8\}\)-.*/\1/p')
    if [ -n "$date" ] && [ "$date" -lt "$KINDNETD_MIN" ]; then
        die "cluster $CLUSTER runs $image, from a kind older than $KIND_MIN: its NetworkPolicy blocks kubelet probes (kind issue #3875); recreate it: make clean-cluster cluster"
    fi
}

# ---- registry -----------------------------------------------------------------------
registry_is_ours() {
    [ "$(docker inspect -f '{{index .Config.Labels "io.kind-kafka-rs.created-by"}}' "$REG_NAME" 2>/dev/null || true)" = scripts/deploy.sh ]
}

ensure_registry() {
    local other
    step "Local registry $REG_NAME on 127.0.0.1:$REG_PORT"
    if [ "$(docker inspect -f '{{.State.Running}}' "$REG_NAME" 2>/dev/null || true)" = true ]; then
        echo "registry: running"
        return 0
    fi
    if docker inspect "$REG_NAME" >/dev/null 2>&1; then
        registry_is_ours || die "a container named $REG_NAME exists that this project did not create: remove it or set REGISTRY_NAME"
        docker start "$REG_NAME" >/dev/null
    else
        other=$(docker ps --filter "publish=$REG_PORT" --format '{{.Names}}' 2>/dev/null | head -n 1 || true)
        [ -z "$other" ] ||
            die "127.0.0.1:$REG_PORT is taken by container $other (kind's own local-registry recipe names it kind-registry): stop it, or set REGISTRY_PORT"
        docker run -d --restart=always -p "127.0.0.1:$REG_PORT:5000" --network bridge --name "$REG_NAME" \
            --label "$OWNER_LABEL" "$REGISTRY_IMAGE" >/dev/null
    fi
    echo "registry: started"
}

# ---- cluster ------------------------------------------------------------------
cmd_cluster() {
    local dir node
    require docker kind kubectl
    ensure_registry

    step "kind cluster $CLUSTER (k8s/kind/cluster.yaml)"
    if cluster_exists; then
        echo "cluster: exists"
        need_cluster
    else
        kind create cluster --name "$CLUSTER" --config k8s/kind/cluster.yaml --wait 120s
    fi
    check_kindnet

    # containerd on every node: localhost:5001 is the registry container,
    # reached by name on the kind network (cluster.yaml sets config_path).
    dir="/etc/containerd/certs.d/localhost:$REG_PORT"
    for node in $(kind get nodes --name "$CLUSTER"); do
        docker exec "$node" mkdir -p "$dir"
        printf '[host."http://%s:5000"]\n' "$REG_NAME" | docker exec -i "$node" cp /dev/stdin "$dir/hosts.toml"
    done
    if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REG_NAME")" = null ]; then
        docker network connect kind "$REG_NAME"
    fi
    # KEP-1755: tells tools where the cluster's local registry is.
    kctx apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "$REG"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
EOF
    kctx get nodes -o wide
}

# ---- images ---------------------------------------------------------------------
# PLATFORMS, checked: linux/amd64 and/or linux/arm64; default the Docker
# host's own (what the kind nodes run).
platforms() {
    local p arch
    if [ -n "${PLATFORMS:-}" ]; then
        for p in $(printf '%s\n' "$PLATFORMS" | tr ',' ' '); do
            case $p in
                linux/amd64 | linux/arm64) ;;
                *) die "PLATFORMS: '$p' is not supported (linux/amd64, linux/arm64, comma-separated)" ;;
            esac
        done
        echo "$PLATFORMS"
        return 0
    fi
    arch=$(docker version -f '{{.Server.Arch}}' 2>/dev/null || true)
    case $arch in
        amd64 | arm64) echo "linux/$arch" ;;
        *) die "the Docker host's architecture '${arch:-unknown}' is not amd64 or arm64 (set PLATFORMS)" ;;
    esac
}

cmd_images() {
    local base tag pinned current plats version revision svc
    require docker
    # The builder's base image is pinned by tag and digest in the Dockerfiles;
    # pulling it by that reference verifies the digest exists and matches.
    base=$(sed -n 's/^ARG RUST_IMAGE=\(rust:[^ ]*@sha256:[0-9a-f]*\)$/\1/p' Dockerfile.producer)
    [ -n "$base" ] || die "no digest-pinned rust builder image (ARG RUST_IMAGE) in Dockerfile.producer"
    [ "$(sed -n 's/^ARG RUST_IMAGE=//p' Dockerfile.consumer)" = "$base" ] ||
        die "Dockerfile.producer and Dockerfile.consumer pin different builder images"
    plats=$(platforms)
    case $plats in
        *,*)
            docker info -f '{{.DriverStatus}}' 2>/dev/null | grep -q 'io.containerd.snapshotter' ||
                die "PLATFORMS=$plats builds several platforms into one image, which needs Docker's containerd image store (Docker Desktop: Settings > General > Use containerd for pulling and storing images; Docker Engine: \"features\": {\"containerd-snapshotter\": true} in daemon.json)"
            ;;
    esac
    step "Builder base image $base"
    docker pull -q "$base" >/dev/null || die "cannot pull $base: the digest is wrong or gone (bump tag and digest together)"
    tag=${base%@*}
    pinned=${base#*@}
    current=$(docker buildx imagetools inspect "$tag" --format '{{json .Manifest.Digest}}' 2>/dev/null | tr -d '"' || true)
    if [ -n "$current" ] && [ "$current" != "$pinned" ]; then
        info "note: $tag now points to $current; the Dockerfiles keep $pinned until both are bumped"
    fi
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
    revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    for svc in $SERVICES; do
        step "docker buildx build $REG/kind-kafka-rs/$svc:$TAG ($plats)"
        docker buildx build --platform "$plats" -f "Dockerfile.$svc" \
            --build-arg VERSION="$version" --build-arg REVISION="$revision" \
            -t "$REG/kind-kafka-rs/$svc:$TAG" --load .
    done
    docker image ls "$REG/kind-kafka-rs/*"
}

# ---- push ------------------------------------------------------------------------
cmd_push() {
    local svc ref digest
    require docker
    curl -fsS --max-time 5 "http://127.0.0.1:$REG_PORT/v2/" >/dev/null ||
        die "no registry on 127.0.0.1:$REG_PORT: run \`make cluster\` first"
    mkdir -p "$STATE"
    : >"$STATE/digests.env.new"
    for svc in $SERVICES; do
        step "docker push $REG/kind-kafka-rs/$svc:$TAG"
        docker push -q "$REG/kind-kafka-rs/$svc:$TAG" >/dev/null
        ref=$(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$REG/kind-kafka-rs/$svc:$TAG" |
            grep "^$REG/kind-kafka-rs/$svc@" | head -n 1 || true)
        digest=${ref#*@}
        case $digest in sha256:*) ;; *) die "no registry digest for $svc after the push" ;; esac
        echo "$svc=$digest" | tee -a "$STATE/digests.env.new"
    done
    mv "$STATE/digests.env.new" "$STATE/digests.env"
}

# ---- the digest-pinned overlay -------------------------------------------------------
# relpath TARGET FROM: TARGET relative to the directory FROM (both exist).
# kustomize takes only relative paths; no GNU `realpath --relative-to`.
relpath() {
    local target from up=""
    target=$(cd "$1" && pwd -P)
    from=$(cd "$2" && pwd -P)
    while :; do
        case $target/ in
            "$from"/*) break ;;
        esac
        [ "$from" = / ] && break
        from=$(dirname "$from")
        up="../$up"
    done
    if [ "$from" = / ]; then echo "$up${target#/}"; else echo "$up${target#"$from"/}"; fi
}

# .state/kind/overlay: k8s/overlays/kind plus the pushed digests, the number
# of records and a run id (so the consumer's lines for this run can be found).
write_pinned() { # run-id
    local run_id="$1" svc digest overlay
    mkdir -p "$PINNED"
    overlay=$(relpath k8s/overlays/kind "$PINNED")
    cat >"$PINNED/kustomization.yaml" <<EOF
# Generated by scripts/deploy.sh: k8s/overlays/kind pinned by digest.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $overlay
patches:
  - patch: |-
      apiVersion: batch/v1
      kind: Job
      metadata:
        name: producer
        namespace: $NS
      spec:
        template:
          spec:
            containers:
              - name: producer
                env:
                  - name: PRODUCER_MESSAGES
                    value: "$MESSAGES"
                  - name: PRODUCER_RUN_ID
                    value: "$run_id"
images:
EOF
    for svc in $SERVICES; do
        digest=
        [ ! -f "$STATE/digests.env" ] || digest=$(sed -n "s/^$svc=//p" "$STATE/digests.env" | head -n 1)
        # Placeholder when nothing was pushed yet (`render` without a cluster).
        [ -n "$digest" ] || digest=sha256:0000000000000000000000000000000000000000000000000000000000000000
        # What `kustomize edit set image NAME=NAME@DIGEST` writes.
        printf '%s\n' "- digest: $digest" "  name: $REG/kind-kafka-rs/$svc" >>"$PINNED/kustomization.yaml"
    done
}

cmd_render() {
    require kubectl
    write_pinned "${RUN_ID:-00000000-0000-0000-0000-000000000000}"
    kubectl kustomize "$PINNED"
}

# ---- kafka ---------------------------------------------------------------------------
cmd_kafka() {
    need_cluster
    step "Kafka (KRaft, single node) in namespace kafka"
    # The topic Job is immutable: run it afresh (it is idempotent).
    kctx -n kafka delete job create-topic-test --ignore-not-found >/dev/null 2>&1 || true
    kctx apply -k k8s/kafka
    kctx -n kafka rollout status statefulset/kafka --timeout=300s
    wait_job kafka create-topic-test 300
    kctx -n kafka logs job/create-topic-test --tail=5
}

# wait_job NAMESPACE NAME SECONDS: until the Job completes (0) or fails (1).
wait_job() {
    local ns="$1" job="$2" limit="$3" deadline status
    deadline=$(($(date +%s) + limit))
    while :; do
        status=$(kctx -n "$ns" get job "$job" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}' 2>/dev/null || true)
        case " $status " in
            *" Complete "*) echo "job/$job: complete"; return 0 ;;
            *" Failed "*)
                kctx -n "$ns" logs "job/$job" --tail=20 >&2 || true
                die "job/$job failed"
                ;;
        esac
        [ "$(date +%s)" -lt "$deadline" ] || die "job/$job not complete after ${limit}s"
        sleep 2
    done
}

# ---- the credentials Secret ---------------------------------------------------------------
# The services mount Secret kafka-credentials. The example one (placeholder
# password, k8s/overlays/kind/secret.example.yaml) is created only where
# none exists: a real Secret made with `kubectl create secret` stays.
ensure_secret() {
    if kctx -n "$NS" get secret kafka-credentials >/dev/null 2>&1; then
        echo "secret/kafka-credentials: exists, kept"
    else
        kctx -n "$NS" create -f k8s/overlays/kind/secret.example.yaml
    fi
}

# ---- deploy ----------------------------------------------------------------------------
cmd_deploy() {
    local run_id lines n deadline pf port
    require docker kind kubectl
    cmd_cluster
    cmd_images
    cmd_push
    cmd_kafka

    run_id=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || uuidgen | tr '[:upper:]' '[:lower:]')
    write_pinned "$run_id"
    step "Services (namespace $NS), images pinned by digest"
    grep -A1 -- '- digest:' "$PINNED/kustomization.yaml" || true
    kctx apply -f k8s/base/namespace.yaml
    ensure_secret
    kctx -n "$NS" delete job producer --ignore-not-found >/dev/null 2>&1 || true
    # Everything but the producer first; the Job once the consumers are in.
    kctx apply -k "$PINNED" -l 'app.kubernetes.io/name!=producer'
    kctx -n "$NS" rollout status deployment/consumer --timeout=180s

    step "Producer Job: $MESSAGES records, run $run_id"
    kctx apply -k "$PINNED" -l 'app.kubernetes.io/name=producer'
    wait_job "$NS" producer 300
    kctx -n "$NS" logs job/producer | grep '"message":"summary"' || true

    step "Consumer lines for run $run_id"
    deadline=$(($(date +%s) + 90))
    while :; do
        lines=$(kctx -n "$NS" logs -l app.kubernetes.io/name=consumer --prefix --tail=-1 --max-log-requests=10 |
            grep '"message":"record"' | grep -F "$run_id" || true)
        n=$(printf '%s\n' "$lines" | grep -c . || true)
        [ "$n" -ge "$MESSAGES" ] && break
        [ "$(date +%s)" -lt "$deadline" ] || die "the consumers logged $n of $MESSAGES records of run $run_id within 90s"
        sleep 3
    done
    printf '%s\n' "$lines"
    echo "consumer lines for run $run_id: $n (producer sent $MESSAGES)"

    step "Probes through a port-forward to service/consumer-metrics"
    # Local port 0: kubectl picks a free one and says which.
    mkdir -p "$STATE"
    # kubectl itself in the background (not kctx): $! is then its pid.
    kubectl --context "kind-$CLUSTER" -n "$NS" port-forward --address 127.0.0.1 service/consumer-metrics :8080 \
        >"$STATE/port-forward.log" 2>&1 &
    pf=$!
    at_exit "kill $pf 2>/dev/null"
    port=
    deadline=$(($(date +%s) + 20))
    while [ -z "$port" ]; do
        port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9][0-9]*\) -> 8080.*/\1/p' "$STATE/port-forward.log" | head -n 1)
        [ -n "$port" ] && break
        kill -0 "$pf" 2>/dev/null || die "kubectl port-forward exited: $(cat "$STATE/port-forward.log")"
        [ "$(date +%s)" -lt "$deadline" ] || die "kubectl port-forward chose no port within 20s: $(cat "$STATE/port-forward.log")"
        sleep 0.5
    done
    wait_for 20 "an answer through the port-forward on 127.0.0.1:$port" curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz"
    echo "/healthz: $(curl -sS --max-time 3 "http://127.0.0.1:$port/healthz")"
    echo "/metrics:"
    curl -fsS --max-time 3 "http://127.0.0.1:$port/metrics" |
        grep -E '^(kafka_consumer_records_consumed_total|kafka_consumergroup_lag|kafka_consumer_assigned_partitions|kafka_service_build_info)' || true
    step "Deployed. \`make logs\` follows the services; scale with: kubectl --context kind-$CLUSTER -n $NS scale deployment/consumer --replicas=3"
}

# ---- monitoring ----------------------------------------------------------------------------
# sha256_of FILE: the hex digest (sha256sum on Linux, shasum on macOS).
sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    else
        shasum -a 256 "$1" | awk '{print $1}'
    fi
}

# Prometheus (run by the Prometheus Operator) and Grafana on the cluster,
# and the deployed services with the k8s/monitoring component (ServiceMonitor,
# PodMonitor, PrometheusRule, the dashboard), so that what a platform's
# kube-prometheus-stack would do with them runs here.
cmd_monitoring() {
    local bundle sum overlay password
    need_cluster
    [ -f "$PINNED/kustomization.yaml" ] ||
        die "no deployed services (no $PINNED/kustomization.yaml): run \`make deploy\` first"

    step "Prometheus Operator $PROM_OPERATOR_VERSION (CRDs and operator, namespace default)"
    mkdir -p "$STATE"
    bundle=$STATE/prometheus-operator-bundle.yaml
    if [ ! -f "$bundle" ] || [ "$(sha256_of "$bundle")" != "$PROM_OPERATOR_BUNDLE_SHA256" ]; then
        curl -fsSL --max-time 120 -o "$bundle.new" "$PROM_OPERATOR_BUNDLE_URL" ||
            die "cannot download the Prometheus Operator bundle from $PROM_OPERATOR_BUNDLE_URL"
        sum=$(sha256_of "$bundle.new")
        [ "$sum" = "$PROM_OPERATOR_BUNDLE_SHA256" ] ||
            { rm -f "$bundle.new"; die "$PROM_OPERATOR_BUNDLE_URL has sha256 $sum, expected $PROM_OPERATOR_BUNDLE_SHA256: not applied"; }
        mv "$bundle.new" "$bundle"
    fi
    # Server-side: the CRDs are too large for the last-applied annotation.
    kctx apply --server-side --force-conflicts -f "$bundle" >/dev/null
    kctx wait --for=condition=Established --timeout=120s \
        crd/prometheuses.monitoring.coreos.com crd/servicemonitors.monitoring.coreos.com \
        crd/podmonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com
    kctx -n default rollout status deployment/prometheus-operator --timeout=180s

    step "Prometheus and Grafana (namespace monitoring, k8s/monitoring-stack)"
    kctx apply -f k8s/monitoring-stack/namespace.yaml
    if kctx -n monitoring get secret grafana-admin >/dev/null 2>&1; then
        echo "secret/grafana-admin: exists, kept"
    else
        password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
        kctx -n monitoring create secret generic grafana-admin \
            --from-literal=admin-user=admin --from-literal=admin-password="$password" >/dev/null
        echo "secret/grafana-admin: created (user admin, random password)"
    fi
    kctx apply -k k8s/monitoring-stack

    step "The services with the k8s/monitoring component (pinned overlay + component)"
    mkdir -p "$STATE/monitoring"
    overlay=$STATE/monitoring
    cat >"$overlay/kustomization.yaml" <<EOF
# Generated by scripts/deploy.sh monitoring: the pinned overlay plus the
# k8s/monitoring component.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(relpath "$PINNED" "$overlay")
components:
  - $(relpath k8s/monitoring "$overlay")
EOF
    # The component changes the Job's pod template (immutable): run it anew,
    # which also gives the dashboard a producer run to show.
    kctx -n "$NS" delete job producer --ignore-not-found >/dev/null 2>&1 || true
    kctx apply -k "$overlay"
    kctx -n "$NS" rollout status deployment/consumer --timeout=180s

    step "Waiting for Prometheus and Grafana"
    wait_for 120 "the operator to create statefulset/prometheus-kafka-rs" \
        kctx -n monitoring get statefulset prometheus-kafka-rs
    kctx -n monitoring rollout status statefulset/prometheus-kafka-rs --timeout=300s
    kctx -n monitoring rollout status deployment/grafana --timeout=300s
    kctx -n monitoring rollout status deployment/kube-state-metrics --timeout=180s
    wait_job "$NS" producer 300

    step "Open them (each command in its own terminal; Ctrl-C ends it)"
    cat <<EOF
Grafana:     kubectl --context kind-$CLUSTER -n monitoring port-forward svc/grafana 3000:3000
             then http://127.0.0.1:3000 (home: the dashboard "Kafka services", folder Kafka; anonymous viewer;
             admin password: kubectl --context kind-$CLUSTER -n monitoring get secret grafana-admin -o jsonpath='{.data.admin-password}' | base64 -d)
Prometheus:  kubectl --context kind-$CLUSTER -n monitoring port-forward svc/prometheus 9090:9090
             then http://127.0.0.1:9090/targets (kafka-consumer, kafka-producer) and /alerts
EOF
}

cmd_logs() {
    need_cluster
    kctx -n "$NS" logs job/producer --tail=20 2>/dev/null || echo "(no producer Job)"
    kctx -n "$NS" logs -l app.kubernetes.io/name=consumer --prefix --tail="${TAIL:-50}" --max-log-requests=10
}

cmd_undeploy() {
    need_cluster
    kctx delete -k k8s/overlays/kind --ignore-not-found --wait=true
    kctx delete -k k8s/kafka --ignore-not-found --wait=true
}

cmd_clean() {
    # Presence only: an old kind must still be able to remove its cluster.
    need docker kind -- "nothing to clean without them"
    if cluster_exists; then
        kind delete cluster --name "$CLUSTER"
    else
        echo "clean: no kind cluster $CLUSTER"
    fi
    if registry_is_ours; then
        docker rm -f "$REG_NAME" >/dev/null
        echo "clean: registry $REG_NAME removed"
    elif docker inspect "$REG_NAME" >/dev/null 2>&1; then
        echo "clean: container $REG_NAME was not created by this project: left alone"
    fi
    rm -rf "$STATE"
}

cmd_versions() {
    require docker kind kubectl
    echo "docker $(docker version -f '{{.Server.Version}}'), $(kind version), kubectl $(kubectl version --client -o yaml | sed -n 's/^ *gitVersion: //p' | head -n 1): ok"
}

case ${1:-} in
    cluster | images | push | kafka | deploy | render | monitoring | logs | undeploy | clean | versions) "cmd_$1" ;;
    *)
        sed -n '/^# The kind deployment/,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p;}' "$0" >&2
        exit 2
        ;;
esac
