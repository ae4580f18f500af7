#!/usr/bin/env bash
# `make test-images` (and the last step of `make test`): the container image
# path, daemonless, from Debian's packages only:
#
#   static binaries (scripts/build-static.sh)
#   -> buildah --storage-driver vfs bud (Dockerfile.*, BINARY_FROM=prebuilt)
#   -> push to a local registry (Debian's docker-registry on 127.0.0.1)
#   -> skopeo copy back by digest -> umoci unpack -> runc run as 65532,
#      on the host network, against the local test broker:
#      consumer container first, then the producer container (N records,
#      --create-topic); probes /healthz, /readyz, /metrics of both and runs
#      the image's own HEALTHCHECK command inside the consumer; asserts the
#      consumer logged every record the producer sent and exits 0 on SIGTERM.
#   Also checks the build context (.dockerignore) against the builder
#   stage's COPY lines, each image's config (user, exec-form entrypoint, labels,
#   healthcheck, no shell in the rootfs) and prints the image sizes.
#
# Everything (registry data, image storage, bundles, runc state) lives in one
# temp dir, removed at the end; containers and the registry are stopped even
# on failure. A missing tool is a failure (.ci/run installs them), never a skip.
# Needs root (runc, umoci unpack).
#
# Environment:
#   IMAGE_TEST_MESSAGES       records the producer sends (default 200)
#   IMAGE_TEST_BOOTSTRAP      broker (default 127.0.0.1:19092; started here
#                             with scripts/kafka-local.sh when not running)
#   IMAGE_TEST_REGISTRY_PORT  registry port on 127.0.0.1 (default 5001)
#   IMAGE_TEST_SKIP_BUILD=1   use target/static as it is (default: run
#                             scripts/build-static.sh, a no-op when fresh)
#   IMAGE_TEST_KEEP=1         keep the temp dir (printed) for inspection
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
export KAFKA_LOCAL_CACHE_DIR=${KAFKA_LOCAL_CACHE_DIR:-$HOME/.cache/kafka-local}

MESSAGES=${IMAGE_TEST_MESSAGES:-200}
BOOTSTRAP=${IMAGE_TEST_BOOTSTRAP:-127.0.0.1:19092}
REG_PORT=${IMAGE_TEST_REGISTRY_PORT:-5001}
REG=127.0.0.1:$REG_PORT
STATIC=target/static
TAG="test"
START=$SECONDS

log() { printf 'image-test: %s\n' "$*" >&2; }
die() { printf 'image-test: FAIL: %s\n' "$*" >&2; exit 1; }
step() { printf '\n\033[1;36m==> %s\033[0m (%ss)\n' "$*" "$((SECONDS - START))" >&2; }

# ---- preconditions ----------------------------------------------------------
missing=()
for tool in buildah skopeo umoci runc docker-registry jq curl ss; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    die "missing ${missing[*]}: apt-get install -y buildah skopeo umoci runc docker-registry jq curl iproute2 (.ci/run installs them)"
fi
[[ $(id -u) == 0 ]] || die "needs root (runc and umoci unpack create the containers)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/image-test.XXXXXX")
BUILDAH=(buildah --storage-driver vfs --root "$WORK/storage" --runroot "$WORK/storage-run")
RUNC=(runc --root "$WORK/runc")
ID=$$-$(date +%s)
TOPIC=image-test-$ID
GROUP=image-test-$ID
RUN_ID=$(cat /proc/sys/kernel/random/uuid)
CONSUMER_NAME=kkr-consumer-$ID
PRODUCER_NAME=kkr-producer-$ID
registry_pid=
consumer_runc_pid=
producer_runc_pid=
broker_started=0

stop_container() { # name runc-pid
    local name=$1 pid=$2
    if "${RUNC[@]}" state "$name" >/dev/null 2>&1; then
        "${RUNC[@]}" kill "$name" KILL >/dev/null 2>&1 || true
    fi
    if [[ -n $pid ]]; then
        timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    "${RUNC[@]}" delete --force "$name" >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$?
    set +e
    stop_container "$PRODUCER_NAME" "$producer_runc_pid"
    stop_container "$CONSUMER_NAME" "$consumer_runc_pid"
    if [[ -n $registry_pid ]]; then
        kill -TERM "$registry_pid" 2>/dev/null
        timeout 10 tail --pid="$registry_pid" -f /dev/null 2>/dev/null || kill -KILL "$registry_pid" 2>/dev/null
    fi
    if ((rc != 0)); then
        # The last lines of each log, without the record lines (long, and
        # counted above) and the registry's routine "blob unknown" 404s.
        for f in consumer.log producer.log registry.log; do
            [[ -s $WORK/$f ]] || continue
            echo "---- last lines of $f ($(grep -c '"message":"record"' "$WORK/$f" || true) record lines left out) ----" >&2
            grep -v -e '"message":"record"' -e 'blob unknown' "$WORK/$f" | tail -n 20 >&2
        done
    fi
    if [[ $broker_started == 1 ]]; then scripts/kafka-local.sh stop >/dev/null 2>&1; fi
    if [[ ${IMAGE_TEST_KEEP:-0} == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    if ((rc == 0)); then log "PASS in $((SECONDS - START))s"; else log "FAIL (exit $rc) after $((SECONDS - START))s"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# wait_for SECONDS DESCRIPTION COMMAND...: poll every 0.25 s, bounded.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${limit}s waiting for $what"
        sleep 0.25
    done
}

port_free() { [[ -z $(ss -Hltn "sport = :$1") ]]; }
free_port() { # first free port from $1 upwards
    local p=$1
    while ! port_free "$p"; do p=$((p + 1)); done
    echo "$p"
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$1$2"; }
http_is() { [[ $(http_code "$2" "$3") == "$1" ]]; }

# ---- broker -----------------------------------------------------------------
step "Test broker on $BOOTSTRAP"
if [[ $BOOTSTRAP == 127.0.0.1:19092 ]] && ! scripts/kafka-local.sh status >/dev/null 2>&1; then
    broker_started=1
    scripts/kafka-local.sh start
fi
host=${BOOTSTRAP%:*} port=${BOOTSTRAP##*:}
timeout 5 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null || die "no broker listening on $BOOTSTRAP"

# ---- static binaries ----------------------------------------------------------
if [[ ${IMAGE_TEST_SKIP_BUILD:-0} != 1 ]]; then
    step "Static binaries (scripts/build-static.sh; cargo rebuilds only what changed)"
    scripts/build-static.sh "$STATIC"
fi
for bin in producer consumer; do
    [[ -x $STATIC/$bin ]] || die "$STATIC/$bin missing: run scripts/build-static.sh $STATIC"
done

# ---- registry -------------------------------------------------------------------
step "Local registry (docker-registry) on $REG"
port_free "$REG_PORT" || die "port $REG_PORT is busy (another registry? set IMAGE_TEST_REGISTRY_PORT)"
mkdir -p "$WORK/registry" "$WORK/oci"
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry
  delete:
    enabled: true
http:
  addr: $REG
  secret: image-test-$ID
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
registry_pid=$!
wait_for 15 "the registry on $REG" curl -fsS --max-time 2 "http://$REG/v2/"

# ---- the build context ----------------------------------------------------------
# What .dockerignore lets into the context: every source the builder stage
# COPYs (the builder itself needs the Rust image, which cannot be pulled
# here), and nothing else (no .git, no target/ but the two binaries).
step "Build context: the builder stage's COPY sources, through .dockerignore"
{
    echo 'FROM scratch'
    echo 'WORKDIR /src'
    sed -n '/ AS builder$/,/^FROM /{/^COPY /p}' Dockerfile.producer
    echo 'COPY . /context/'
} >"$WORK/Dockerfile.context"
grep -q '^COPY common common' "$WORK/Dockerfile.context" || die "no COPY lines found in the builder stage"
"${BUILDAH[@]}" bud --quiet --isolation chroot -f "$WORK/Dockerfile.context" -t context-check . >/dev/null ||
    die "the builder stage's COPY lines fail on the .dockerignore'd context"
ctr=$("${BUILDAH[@]}" from --quiet context-check)
mnt=$("${BUILDAH[@]}" mount "$ctr")
top=$(cd "$mnt/context" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | sort | tr '\n' ' ')
[[ $top == "Cargo.lock Cargo.toml common consumer producer scripts target " ]] || die "unexpected build context: $top"
extra=$(cd "$mnt/context" && find scripts target -mindepth 1 -printf '%P\n' | { grep -Ev '^(build-static\.sh|static|static/(producer|consumer))$' || true; })
[[ -z $extra ]] || die "unexpected files in the build context: $extra"
log "context: $top(scripts/build-static.sh, target/static/{producer,consumer} only), $(du -sh "$mnt/context" | cut -f1)"
"${BUILDAH[@]}" umount "$ctr" >/dev/null
"${BUILDAH[@]}" rm "$ctr" >/dev/null

# ---- build, push, pull back by digest, unpack, check ------------------------------
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
declare -A DIGEST
for svc in producer consumer; do
    image=$REG/kind-kafka-rs/$svc
    step "$svc: buildah bud -> push -> skopeo copy by digest -> umoci unpack"
    t0=$SECONDS
    "${BUILDAH[@]}" bud --quiet --isolation chroot --format docker --timestamp 0 \
        --build-arg BINARY_FROM=prebuilt --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
        -f "Dockerfile.$svc" -t "$image:$TAG" . >/dev/null
    "${BUILDAH[@]}" push --quiet --tls-verify=false --digestfile "$WORK/$svc.digest" \
        "$image:$TAG" "docker://$image:$TAG"
    DIGEST[$svc]=$(cat "$WORK/$svc.digest")
    [[ ${DIGEST[$svc]} == sha256:* ]] || die "$svc: no digest from the push"
    remote=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$image:$TAG")
    [[ $remote == "${DIGEST[$svc]}" ]] || die "$svc: registry has $remote for :$TAG, pushed ${DIGEST[$svc]}"
    skopeo copy --quiet --src-tls-verify=false "docker://$image@${DIGEST[$svc]}" "oci:$WORK/oci/$svc:$TAG"
    umoci unpack --image "$WORK/oci/$svc:$TAG" "$WORK/bundle-$svc" >/dev/null
    log "$svc: built, pushed and pulled back as $image@${DIGEST[$svc]} in $((SECONDS - t0))s"

    # Image config, as the registry serves it.
    # --raw: the config blob itself (Docker's schema, which keeps Healthcheck).
    cfg=$(skopeo inspect --tls-verify=false --raw --config "docker://$image@${DIGEST[$svc]}")
    jq -e '.config.User == "65532:65532"' <<<"$cfg" >/dev/null || die "$svc: user is $(jq -c .config.User <<<"$cfg"), want 65532:65532"
    jq -e --arg b "/$svc" '.config.Entrypoint == [$b]' <<<"$cfg" >/dev/null ||
        die "$svc: entrypoint is $(jq -c .config.Entrypoint <<<"$cfg"), want exec form [\"/$svc\"]"
    jq -e '(.config.Cmd // []) == []' <<<"$cfg" >/dev/null || die "$svc: unexpected Cmd $(jq -c .config.Cmd <<<"$cfg")"
    jq -e '.config.ExposedPorts | has("8080/tcp")' <<<"$cfg" >/dev/null || die "$svc: 8080/tcp not exposed"
    jq -e '.config.Env | index("MIMALLOC_PURGE_DELAY=10")' <<<"$cfg" >/dev/null ||
        die "$svc: MIMALLOC_PURGE_DELAY=10 missing from the image environment $(jq -c .config.Env <<<"$cfg")"
    jq -e --arg b "/$svc" '.config.Healthcheck.Test == ["CMD", $b, "healthcheck"]' <<<"$cfg" >/dev/null ||
        die "$svc: healthcheck is $(jq -c .config.Healthcheck <<<"$cfg")"
    for label in source version revision licenses; do
        value=$(jq -r --arg k "org.opencontainers.image.$label" '.config.Labels[$k] // empty' <<<"$cfg")
        [[ -n $value ]] || die "$svc: label org.opencontainers.image.$label missing"
    done
    [[ $(jq -r '.config.Labels["org.opencontainers.image.revision"]' <<<"$cfg") == "$REVISION" ]] || die "$svc: revision label is not $REVISION"
    [[ $(jq -r '.rootfs.diff_ids | length' <<<"$cfg") == 1 ]] || die "$svc: expected one layer"

    # The root filesystem: the binary and nothing else (no shell, no libc).
    rootfs=$WORK/bundle-$svc/rootfs
    contents=$(cd "$rootfs" && find . -mindepth 1 -printf '%p %U:%G %m\n' | sort)
    [[ $contents == "./$svc 0:0 555" ]] || die "$svc: rootfs holds more than /$svc (root-owned, 0555): $contents"
    [[ ! -e $rootfs/bin/sh ]] || die "$svc: /bin/sh exists"
    # (Whole outputs into variables: `cmd | grep -q` under pipefail fails
    # when grep exits first and cmd gets SIGPIPE.)
    [[ $(file -b "$rootfs/$svc") =~ static(-pie)?\ linked|statically\ linked ]] || die "$svc: binary is not static"
    # cargo-auditable's dependency list (present when `make tools` installed it).
    if command -v readelf >/dev/null 2>&1; then
        if [[ $(readelf -S "$rootfs/$svc") == *.dep-v0* ]]; then
            log "$svc: carries its dependency list (.dep-v0, cargo-auditable)"
        else
            log "$svc: no .dep-v0 section (cargo-auditable not installed: \`make tools\`)"
        fi
    fi

    # Sizes: what a pull transfers (compressed layer + config) and on disk.
    manifest=$(skopeo inspect --tls-verify=false --raw "docker://$image@${DIGEST[$svc]}")
    pulled=$(jq '[.layers[].size] + [.config.size] | add' <<<"$manifest")
    printf 'image-test: %-8s image %s  pull size %s bytes (%s MiB compressed), binary %s bytes\n' \
        "$svc" "${DIGEST[$svc]:0:19}" "$pulled" "$(awk -v b="$pulled" 'BEGIN{printf "%.2f", b/1048576}')" \
        "$(stat -c %s "$rootfs/$svc")" >&2

    # runc: no terminal, the host's network (drop the network namespace),
    # read-only root filesystem; the user stays the image's (65532).
    jq -e '.process.user.uid == 65532 and .process.user.gid == 65532' "$WORK/bundle-$svc/config.json" >/dev/null ||
        die "$svc: the runtime bundle does not run as 65532:65532"
done

# Fills in a bundle's config.json: env and extra arguments.
configure_bundle() { # svc args-json env-json
    local b=$WORK/bundle-$1/config.json
    jq --argjson args "$2" --argjson env "$3" '
        .process.terminal = false
        | .process.args += $args
        | .process.env += $env
        | .root.readonly = true
        | .linux.namespaces |= map(select(.type != "network"))
    ' "$b" >"$b.new"
    mv "$b.new" "$b"
}

C_PORT=$(free_port 18480)
P_PORT=$(free_port $((C_PORT + 1)))
C_ADDR=127.0.0.1:$C_PORT
P_ADDR=127.0.0.1:$P_PORT

# ---- consumer container ---------------------------------------------------------------
step "runc: consumer container (group $GROUP, topic $TOPIC, HTTP $C_ADDR)"
configure_bundle consumer '[]' "$(jq -nc --arg b "$BOOTSTRAP" --arg t "$TOPIC" --arg g "$GROUP" --arg h "$C_ADDR" '[
    "KAFKA_BOOTSTRAP_SERVER=\($b)", "KAFKA_TOPIC=\($t)", "KAFKA_CONSUMER_GROUP=\($g)", "HTTP_ADDR=\($h)",
    "LOG_FORMAT=json", "RUST_LOG=info", "CONSUMER_COMMIT_INTERVAL_MS=1000", "CONSUMER_SESSION_TIMEOUT_MS=10000",
    "CONSUMER_DRAIN_TIMEOUT_MS=5000", "CONSUMER_LOG_VALUE_MAX_BYTES=512"]')"
"${RUNC[@]}" run -b "$WORK/bundle-consumer" "$CONSUMER_NAME" </dev/null >"$WORK/consumer.log" 2>&1 &
consumer_runc_pid=$!
wait_for 20 "consumer /healthz" http_is 200 "$C_ADDR" /healthz
pid1=$("${RUNC[@]}" state "$CONSUMER_NAME" | jq -r .pid)
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid1/status")
[[ $uid == 65532 ]] || die "consumer runs as uid $uid, want 65532"
log "consumer container up (pid $pid1, uid $uid)"

# ---- producer container ---------------------------------------------------------------
step "runc: producer container ($MESSAGES records, --create-topic, HTTP $P_ADDR)"
# A rate keeps it running a few seconds so its endpoints can be probed
# while it sends; the grace period keeps /metrics up after the last ack.
rate=$(((MESSAGES + 3) / 4))
configure_bundle producer "$(jq -nc --arg n "$MESSAGES" --arg r "$rate" '[
    "--messages", $n, "--create-topic", "--partitions", "3", "--rate", $r,
    "--key-template", "key-{seq % 8}", "--metrics-grace-secs", "6", "--timeout", "60"]')" \
    "$(jq -nc --arg b "$BOOTSTRAP" --arg t "$TOPIC" --arg h "$P_ADDR" --arg r "$RUN_ID" '[
    "KAFKA_BOOTSTRAP_SERVER=\($b)", "KAFKA_TOPIC=\($t)", "HTTP_ADDR=\($h)", "PRODUCER_RUN_ID=\($r)",
    "LOG_FORMAT=json", "RUST_LOG=info"]')"
"${RUNC[@]}" run -b "$WORK/bundle-producer" "$PRODUCER_NAME" </dev/null >"$WORK/producer.log" 2>&1 &
producer_runc_pid=$!
wait_for 20 "producer /healthz" http_is 200 "$P_ADDR" /healthz
wait_for 20 "producer /readyz" http_is 200 "$P_ADDR" /readyz
log "producer /healthz 200, /readyz 200 while sending"
wait_for 30 "producer records_sent_total = $MESSAGES in /metrics" \
    bash -c "curl -fsS --max-time 3 http://$P_ADDR/metrics | grep -Eq '^kafka_producer_records_sent_total\{[^}]*topic=\"$TOPIC\"[^}]*\} $MESSAGES\$'"
log "producer /metrics: kafka_producer_records_sent_total{topic=\"$TOPIC\"} $MESSAGES"
deadline=$((SECONDS + 60))
while kill -0 "$producer_runc_pid" 2>/dev/null; do
    ((SECONDS < deadline)) || die "producer still running after 60s"
    sleep 0.25
done
producer_rc=0
wait "$producer_runc_pid" || producer_rc=$?
producer_runc_pid=
"${RUNC[@]}" delete --force "$PRODUCER_NAME" >/dev/null 2>&1 || true
[[ $producer_rc == 0 ]] || die "producer exited $producer_rc"
summary=$(grep '"message":"summary"' "$WORK/producer.log" | tail -n1)
[[ -n $summary ]] || die "no summary line from the producer"
acked=$(jq -r '.acked // .fields.acked' <<<"$summary")
[[ $acked == "$MESSAGES" ]] || die "producer acknowledged $acked of $MESSAGES"
log "producer exited 0: $(jq -c '{records: (.records // .fields.records), acked: (.acked // .fields.acked), seconds: (.seconds // .fields.seconds)}' <<<"$summary")"

# ---- the consumer got them all -------------------------------------------------------
step "Consumer logs every record of run $RUN_ID"
count_records() { grep '"message":"record"' "$WORK/consumer.log" | grep -c "$RUN_ID" || true; }
deadline=$((SECONDS + 60))
until (($(count_records) >= MESSAGES)); do
    ((SECONDS < deadline)) || die "consumer logged $(count_records) of $MESSAGES records within 60s"
    kill -0 "$consumer_runc_pid" 2>/dev/null || die "consumer container exited early"
    sleep 0.5
done
n=$(count_records)
distinct=$(grep '"message":"record"' "$WORK/consumer.log" | grep "$RUN_ID" |
    jq -r '"\(.partition // .fields.partition)-\(.offset // .fields.offset)"' | sort -u | wc -l)
((distinct == MESSAGES)) || die "consumer logged $n record lines but $distinct distinct offsets, want $MESSAGES"
log "consumer logged $n records ($distinct distinct partition/offset pairs) = producer's $MESSAGES"

wait_for 30 "consumer /readyz" http_is 200 "$C_ADDR" /readyz
metrics=$(curl -fsS --max-time 3 "http://$C_ADDR/metrics")
# One series per partition: add them up for the test topic.
consumed=$(awk -v t="topic=\"$TOPIC\"" '/^kafka_consumer_records_consumed_total\{/ && index($0, t) {n += $NF} END {print n + 0}' <<<"$metrics")
[[ $consumed == "$MESSAGES" ]] ||
    die "consumer /metrics counts $consumed records, want $MESSAGES: $(grep '^kafka_consumer_records_consumed_total' <<<"$metrics" || true)"
lag=$(awk -v t="topic=\"$TOPIC\"" '/^kafka_consumergroup_lag\{/ && index($0, t) {n += $NF} END {print n + 0}' <<<"$metrics")
log "consumer /healthz 200, /readyz 200, /metrics: kafka_consumer_records_consumed_total (sum) $consumed, kafka_consumergroup_lag (sum) $lag"

# The image's HEALTHCHECK command, run inside the running container.
hc=$(skopeo inspect --tls-verify=false --raw --config "docker://$REG/kind-kafka-rs/consumer@${DIGEST[consumer]}" | jq -c '.config.Healthcheck.Test[1:]')
mapfile -t hc_args < <(jq -r '.[]' <<<"$hc")
timeout 15 "${RUNC[@]}" exec "$CONSUMER_NAME" "${hc_args[@]}" || die "HEALTHCHECK $hc failed inside the consumer container"
log "HEALTHCHECK $hc inside the consumer container: exit 0"

# ---- SIGTERM: drain, commit, leave, exit 0 ----------------------------------------------
step "SIGTERM to the consumer container"
"${RUNC[@]}" kill "$CONSUMER_NAME" TERM
deadline=$((SECONDS + 20))
while kill -0 "$consumer_runc_pid" 2>/dev/null; do
    ((SECONDS < deadline)) || die "consumer did not stop within 20s of SIGTERM"
    sleep 0.25
done
consumer_rc=0
wait "$consumer_runc_pid" || consumer_rc=$?
consumer_runc_pid=
[[ $consumer_rc == 0 ]] || die "consumer exited $consumer_rc after SIGTERM"
log "consumer exited 0 after SIGTERM"

step "Image path verified"
for svc in producer consumer; do
    printf '  %-8s %s/kind-kafka-rs/%s@%s\n' "$svc" "$REG" "$svc" "${DIGEST[$svc]}"
done
