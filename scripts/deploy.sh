#!/usr/bin/env bash
# The kind deployment: cluster, images, registry, Kafka, the services.
#
#   scripts/deploy.sh cluster    kind cluster (control plane + 2 workers) and a
#                                local registry on 127.0.0.1:5001 wired into
#                                containerd on every node
#   scripts/deploy.sh images     docker build both images (Dockerfile.*)
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
#   scripts/deploy.sh logs       consumer and producer logs
#   scripts/deploy.sh undeploy   delete the services and Kafka (cluster stays)
#   scripts/deploy.sh clean      delete the kind cluster and the registry
#
# Every step is idempotent: run `deploy` again after a code change.
# Environment: MESSAGES (records the producer Job sends, default 20),
# DEPLOY_STATE_DIR (digests and the pinned overlay, default .state/kind),
# KIND_CLUSTER (default kind-kafka-rs), REGISTRY_PORT (default 5001),
# IMAGE_TAG (default dev), BINARY_FROM=prebuilt (build the images from
# target/static instead of compiling in the builder stage).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
# `make tools` puts kustomize there (used for `kustomize edit set image`).
export PATH="${KIND_KAFKA_TOOLS:-$HOME/.cache/kind-kafka-rs}/bin:$PATH"

CLUSTER=${KIND_CLUSTER:-kind-kafka-rs}
REG_NAME=kind-registry
REG_PORT=${REGISTRY_PORT:-5001}
REG=localhost:$REG_PORT
TAG=${IMAGE_TAG:-dev}
MESSAGES=${MESSAGES:-20}
STATE=${DEPLOY_STATE_DIR:-.state/kind}
PINNED=$STATE/overlay
NS=kafka-services
SERVICES=(producer consumer)
# The registry image for the kind-side registry (Docker's distribution).
REGISTRY_IMAGE=${REGISTRY_IMAGE:-registry:2.8.3}

die() { echo "deploy: $*" >&2; exit 1; }
step() { printf '\n\033[1;36m==> %s\033[0m\n' "$*" >&2; }

# One clear line when a tool is missing, not a stack of errors.
need() {
    local missing=() t
    local -A url=([docker]=https://docs.docker.com/engine/install/
        [kind]=https://kind.sigs.k8s.io/docs/user/quick-start/#installation
        [kubectl]=https://kubernetes.io/docs/tasks/tools/)
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t (${url[$t]:-})"); done
    ((${#missing[@]} == 0)) || die "needs ${missing[*]}"
    if [[ " $* " == *" docker "* ]] && ! docker info >/dev/null 2>&1; then
        die "docker is installed but its daemon is not reachable (docker info fails): start Docker, or check DOCKER_HOST / your permissions"
    fi
}

# kubectl against the kind cluster only, never whatever context is current.
need_cluster() {
    need kubectl
    kubectl config get-contexts "kind-$CLUSTER" >/dev/null 2>&1 ||
        die "no kubectl context kind-$CLUSTER: create the cluster with \`make cluster\` (or set KIND_CLUSTER)"
}

kctx() { kubectl --context "kind-$CLUSTER" "$@"; }

# ---- cluster ------------------------------------------------------------------
cmd_cluster() {
    need docker kind kubectl
    step "Local registry $REG_NAME on 127.0.0.1:$REG_PORT"
    if [[ $(docker inspect -f '{{.State.Running}}' "$REG_NAME" 2>/dev/null || true) != true ]]; then
        docker rm -f "$REG_NAME" >/dev/null 2>&1 || true
        docker run -d --restart=always -p "127.0.0.1:$REG_PORT:5000" --network bridge --name "$REG_NAME" "$REGISTRY_IMAGE" >/dev/null
    fi
    echo "registry: running"

    step "kind cluster $CLUSTER (k8s/kind/cluster.yaml)"
    if [[ $'\n'$(kind get clusters 2>/dev/null)$'\n' == *$'\n'"$CLUSTER"$'\n'* ]]; then
        echo "cluster: exists"
    else
        kind create cluster --name "$CLUSTER" --config k8s/kind/cluster.yaml --wait 120s
    fi

    # containerd on every node: localhost:5001 is the registry container,
    # reached by name on the kind network (cluster.yaml sets config_path).
    local dir="/etc/containerd/certs.d/localhost:$REG_PORT" node
    for node in $(kind get nodes --name "$CLUSTER"); do
        docker exec "$node" mkdir -p "$dir"
        printf '[host."http://%s:5000"]\n' "$REG_NAME" | docker exec -i "$node" cp /dev/stdin "$dir/hosts.toml"
    done
    if [[ $(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REG_NAME") == null ]]; then
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
cmd_images() {
    need docker
    local base from=${BINARY_FROM:-builder}
    # The builder's base image is pinned by tag and digest in the Dockerfiles;
    # pulling it by that reference verifies the digest exists and matches.
    base=$(sed -n 's/^FROM \(rust:[^ ]*@sha256:[0-9a-f]*\) AS builder$/\1/p' Dockerfile.producer)
    [[ -n $base ]] || die "no digest-pinned rust builder image in Dockerfile.producer"
    [[ $(sed -n 's/^FROM \(rust:[^ ]*\) AS builder$/\1/p' Dockerfile.consumer) == "$base" ]] ||
        die "Dockerfile.producer and Dockerfile.consumer pin different builder images"
    if [[ $from == builder ]]; then
        step "Builder base image $base"
        docker pull -q "$base" >/dev/null || die "cannot pull $base: the digest is wrong or gone (bump tag and digest together)"
        local tag=${base%@*} pinned=${base#*@} current
        current=$(docker buildx imagetools inspect "$tag" --format '{{json .Manifest.Digest}}' 2>/dev/null | tr -d '"' || true)
        if [[ -n $current && $current != "$pinned" ]]; then
            echo "deploy: note: $tag now points to $current; the Dockerfiles keep $pinned until both are bumped" >&2
        fi
    else
        scripts/build-static.sh target/static
    fi
    local version revision svc
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
    revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    for svc in "${SERVICES[@]}"; do
        step "docker build $REG/kind-kafka-rs/$svc:$TAG (BINARY_FROM=$from)"
        DOCKER_BUILDKIT=1 docker build -f "Dockerfile.$svc" \
            --build-arg BINARY_FROM="$from" --build-arg VERSION="$version" --build-arg REVISION="$revision" \
            -t "$REG/kind-kafka-rs/$svc:$TAG" .
    done
    docker image ls "$REG/kind-kafka-rs/*"
}

# ---- push ------------------------------------------------------------------------
cmd_push() {
    need docker
    curl -fsS --max-time 5 "http://127.0.0.1:$REG_PORT/v2/" >/dev/null ||
        die "no registry on 127.0.0.1:$REG_PORT: run \`make cluster\` first"
    mkdir -p "$STATE"
    local svc ref digest
    : >"$STATE/digests.env.new"
    for svc in "${SERVICES[@]}"; do
        step "docker push $REG/kind-kafka-rs/$svc:$TAG"
        docker push -q "$REG/kind-kafka-rs/$svc:$TAG" >/dev/null
        ref=$(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$REG/kind-kafka-rs/$svc:$TAG" | grep "^$REG/kind-kafka-rs/$svc@" | head -n1)
        digest=${ref#*@}
        [[ $digest == sha256:* ]] || die "no registry digest for $svc after the push"
        echo "$svc=$digest" | tee -a "$STATE/digests.env.new"
    done
    mv "$STATE/digests.env.new" "$STATE/digests.env"
}

# ---- the digest-pinned overlay -------------------------------------------------------
# .state/kind/overlay: k8s/overlays/kind plus the pushed digests, the number
# of records and a run id (so the consumer's lines for this run can be found).
write_pinned() { # run-id
    local run_id=$1 svc digest overlay
    mkdir -p "$PINNED"
    overlay=$(realpath --relative-to="$PINNED" k8s/overlays/kind)
    local -A digests=()
    if [[ -f $STATE/digests.env ]]; then
        while IFS='=' read -r svc digest; do digests[$svc]=$digest; done <"$STATE/digests.env"
    fi
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
EOF
    for svc in "${SERVICES[@]}"; do
        # Placeholder when nothing was pushed yet (`render` without a cluster).
        digest=${digests[$svc]:-sha256:$(printf '%064d' 0)}
        if command -v kustomize >/dev/null 2>&1; then
            (cd "$PINNED" && kustomize edit set image "$REG/kind-kafka-rs/$svc=$REG/kind-kafka-rs/$svc@$digest")
        else
            # What `kustomize edit set image NAME=NAME@DIGEST` writes.
            grep -q '^images:' "$PINNED/kustomization.yaml" || echo 'images:' >>"$PINNED/kustomization.yaml"
            printf -- '- digest: %s\n  name: %s\n' "$digest" "$REG/kind-kafka-rs/$svc" >>"$PINNED/kustomization.yaml"
        fi
    done
}

cmd_render() {
    need kubectl
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
    local ns=$1 job=$2 limit=$3 deadline=$((SECONDS + $3)) status
    while :; do
        status=$(kctx -n "$ns" get job "$job" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}' 2>/dev/null || true)
        case " $status " in
            *" Complete "*) echo "job/$job: complete"; return 0 ;;
            *" Failed "*)
                kctx -n "$ns" logs "job/$job" --tail=20 >&2 || true
                die "job/$job failed"
                ;;
        esac
        ((SECONDS < deadline)) || die "job/$job not complete after ${limit}s"
        sleep 2
    done
}

# ---- deploy ----------------------------------------------------------------------------
cmd_deploy() {
    need docker kind kubectl
    cmd_cluster
    cmd_images
    cmd_push
    cmd_kafka

    local run_id
    run_id=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || uuidgen)
    write_pinned "$run_id"
    step "Services (namespace $NS), images pinned by digest"
    grep -A1 -- '- digest:' "$PINNED/kustomization.yaml" || true
    kctx -n "$NS" delete job producer --ignore-not-found >/dev/null 2>&1 || true
    # Everything but the producer first; the Job once the consumers are in.
    kctx apply -k "$PINNED" -l 'app.kubernetes.io/name!=producer'
    kctx -n "$NS" rollout status deployment/consumer --timeout=180s

    step "Producer Job: $MESSAGES records, run $run_id"
    kctx apply -k "$PINNED" -l 'app.kubernetes.io/name=producer'
    wait_job "$NS" producer 300
    kctx -n "$NS" logs job/producer | grep '"message":"summary"' || true

    step "Consumer lines for run $run_id"
    local deadline=$((SECONDS + 90)) n=0 lines
    while :; do
        lines=$(kctx -n "$NS" logs -l app.kubernetes.io/name=consumer --prefix --tail=-1 --max-log-requests=10 |
            grep '"message":"record"' | grep -F "$run_id" || true)
        n=$(grep -c . <<<"$lines" || true)
        ((n >= MESSAGES)) && break
        ((SECONDS < deadline)) || die "the consumers logged $n of $MESSAGES records of run $run_id within 90s"
        sleep 3
    done
    echo "$lines"
    echo "consumer lines for run $run_id: $n (producer sent $MESSAGES)"

    step "Probes through a port-forward to service/consumer-metrics"
    local port pf
    port=$(( (RANDOM % 1000) + 18000 ))
    kctx -n "$NS" port-forward service/consumer-metrics "$port:8080" >/dev/null 2>&1 &
    pf=$!
    # shellcheck disable=SC2064 # the pid is fixed now
    trap "kill $pf 2>/dev/null || true" EXIT
    deadline=$((SECONDS + 20))
    until curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "no answer through the port-forward on 127.0.0.1:$port"
        sleep 0.5
    done
    echo "/healthz: $(curl -sS --max-time 3 "http://127.0.0.1:$port/healthz")"
    echo "/metrics:"
    curl -fsS --max-time 3 "http://127.0.0.1:$port/metrics" |
        grep -E '^(kafka_consumer_records_consumed_total|kafka_consumergroup_lag|kafka_consumer_assigned_partitions|kafka_service_build_info)' || true
    kill "$pf" 2>/dev/null || true
    step "Deployed. \`make logs\` follows the services; scale with: kubectl --context kind-$CLUSTER -n $NS scale deployment/consumer --replicas=3"
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
    need docker kind
    kind delete cluster --name "$CLUSTER"
    docker rm -f "$REG_NAME" >/dev/null 2>&1 || true
    rm -rf "$STATE"
    echo "deploy: cluster $CLUSTER and registry $REG_NAME removed"
}

case ${1:-} in
    cluster | images | push | kafka | deploy | render | logs | undeploy | clean) "cmd_$1" ;;
    *)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
        exit 2
        ;;
esac
