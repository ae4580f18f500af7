#!/usr/bin/env bash
# `make test-images` (and a step of `make test`): the images as users build
# them, built here for real and without a Docker engine:
#
#   1. The Rust builder base image cannot be pulled here: a local stand-in
#      for exactly that image (scripts/builder-standin.sh: Debian slim +
#      rustup's toolchain of the pinned version) is the ONE substituted part.
#   2. buildah bud of Dockerfile.producer and Dockerfile.consumer, unchanged,
#      both stages, for every platform of IMAGE_TEST_PLATFORMS into a
#      manifest list; the builder stage runs build-static.sh with zig,
#      cross-compiling for the other architecture. Build arguments:
#      RUST_IMAGE=<the stand-in>, and BUILDPLATFORM, which BuildKit
#      predefines and buildah 1.28 does not (the value BuildKit would set).
#   3. The same build with vendor/ dropped from the context must fail: the
#      build sees a missing file, so this test does.
#   4. The build context (.dockerignore): no .git, target/, .state.
#   5. Both manifest lists pushed to a local registry (Debian's
#      docker-registry), the index lists every platform; each platform's
#      image copied back by digest (skopeo) and unpacked (umoci); its config
#      checked (user, entrypoint, labels, healthcheck, architecture) and its
#      root filesystem (the binary, static, for that CPU; no shell).
#   6. The host's platform runs under runc as 65532 against the local
#      broker: consumer container, then the producer container (N records);
#      /healthz, /readyz, /metrics of both, the image's HEALTHCHECK inside the
#      consumer; the consumer logs every record and exits 0 on SIGTERM.
#   7. The other platform (arm64 on an amd64 host) runs under Debian's
#      qemu-user-static: --help; the consumer, its `healthcheck` against its
#      live sidecar; the producer sends records that the consumer logs.
#   8. The host platform's binaries go to target/static (bench smoke's static
#      rows use what the image ships instead of building them again).
#
# Image layers and cargo's registry and target/ persist between runs
# (buildah storage in $TOOLS_DIR/buildah, cache mounts under /var/tmp), so a
# second run only rebuilds what changed. Registry data, bundles and runc state
# live in one temp dir, removed at the end; containers and the registry stop
# even on failure. A missing tool is a failure (scripts/install-tools.sh
# installs them), never a skip. Needs root (runc, umoci unpack, mmdebstrap).
#
# Environment:
#   IMAGE_TEST_PLATFORMS       default linux/amd64,linux/arm64
#   IMAGE_TEST_MESSAGES        records the host-platform producer sends (200)
#   IMAGE_TEST_EMULATED_MESSAGES  records of the emulated exchange (20)
#   IMAGE_TEST_BOOTSTRAP       broker (default 127.0.0.1:19092; started here
#                              with scripts/kafka-local.sh when not running)
#   IMAGE_TEST_REGISTRY_PORT   registry port on 127.0.0.1 (default: a free one)
#   IMAGE_TEST_STORAGE_DRIVER  buildah storage driver (default overlay; vfs)
#   IMAGE_TEST_KEEP=1          keep the temp dir (printed) for inspection
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

PLATFORMS=${IMAGE_TEST_PLATFORMS:-linux/amd64,linux/arm64}
MESSAGES=${IMAGE_TEST_MESSAGES:-200}
EMU_MESSAGES=${IMAGE_TEST_EMULATED_MESSAGES:-20}
BOOTSTRAP=${IMAGE_TEST_BOOTSTRAP:-127.0.0.1:19092}
TAG="test"
START=$SECONDS
STANDIN=localhost/kind-kafka-rs/rust-standin:test

elapsed() { echo "$((SECONDS - START))s"; }
step() { printf '\n\033[1;36m==> %s\033[0m (%s)\n' "$*" "$(elapsed)" >&2; }

case $(uname -m) in
    x86_64) HOST_ARCH=amd64 ;;
    aarch64) HOST_ARCH=arm64 ;;
    *) die "unsupported host architecture $(uname -m) (amd64 or arm64)" ;;
esac
qemu_for() {
    case $1 in
        arm64) echo qemu-aarch64-static ;;
        amd64) echo qemu-x86_64-static ;;
    esac
}
IFS=, read -r -a PLATFORM_LIST <<<"$PLATFORMS"
ARCHES=()
for p in "${PLATFORM_LIST[@]}"; do
    [[ $p =~ ^linux/(amd64|arm64)$ ]] || die "IMAGE_TEST_PLATFORMS: '$p' is not linux/amd64 or linux/arm64"
    ARCHES+=("${p#linux/}")
done
[[ " ${ARCHES[*]} " == *" $HOST_ARCH "* ]] || die "IMAGE_TEST_PLATFORMS must include this host's linux/$HOST_ARCH (it runs under runc)"

# ---- preconditions ----------------------------------------------------------
tools=(buildah skopeo umoci runc docker-registry jq curl file python3 mmdebstrap)
for a in "${ARCHES[@]}"; do [[ $a == "$HOST_ARCH" ]] || tools+=("$(qemu_for "$a")"); done
need "${tools[@]}" -- "scripts/install-tools.sh installs them"
[[ $(id -u) == 0 ]] || die "needs root (runc, umoci unpack and mmdebstrap create containers and root filesystems)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/image-test.XXXXXX")
STORE=$TOOLS_DIR/buildah
BUILDAH=(buildah --storage-driver "${IMAGE_TEST_STORAGE_DRIVER:-overlay}" --root "$STORE/root" --runroot "$STORE/run")
# One run at a time on this storage; what an interrupted run left (working
# containers and their mounts) goes first.
mkdir -p "$STORE"
exec 8>"$STORE/.lock"
flock -w 3600 8 || die "another image-test holds $STORE/.lock"
"${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
RUNC=(runc --root "$WORK/runc")
ID=$$-$(date +%s)
RUN_ID=$(cat /proc/sys/kernel/random/uuid)
registry_pid=
declare -A CONTAINER_PID=() BG_PID=()

stop_container() { # name
    local name=$1 pid=${CONTAINER_PID[$1]:-}
    if "${RUNC[@]}" state "$name" >/dev/null 2>&1; then
        "${RUNC[@]}" kill "$name" KILL >/dev/null 2>&1 || true
    fi
    if [[ -n $pid ]]; then
        timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    "${RUNC[@]}" delete --force "$name" >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$EXIT_STATUS name f
    for name in "${!CONTAINER_PID[@]}"; do stop_container "$name"; done
    for name in "${!BG_PID[@]}"; do stop_pid "${BG_PID[$name]}" 2; done
    [[ -z $registry_pid ]] || stop_pid "$registry_pid" 10
    if ((rc != 0)); then
        # The last lines of each log, without the record lines (long, and
        # counted above) and the registry's routine "blob unknown" 404s.
        for f in "$WORK"/*.log; do
            [[ -s $f ]] || continue
            echo "---- last lines of ${f##*/} ($(grep -c '"message":"record"' "$f" || true) record lines left out) ----" >&2
            grep -v -e '"message":"record"' -e 'blob unknown' "$f" | tail -n 20 >&2
        done
    fi
    if [[ ${IMAGE_TEST_KEEP:-0} == 1 ]]; then info "kept $WORK"; else rm -rf "$WORK"; fi
    if ((rc == 0)); then info "PASS in $(elapsed)"; else info "FAIL (exit $rc) after $(elapsed)"; fi
}
at_exit cleanup

# ---- broker -----------------------------------------------------------------
step "Test broker on $BOOTSTRAP"
[[ $BOOTSTRAP != 127.0.0.1:19092 ]] || broker_ensure
timeout 5 bash -c "exec 3<>/dev/tcp/${BOOTSTRAP%:*}/${BOOTSTRAP##*:}" 2>/dev/null || die "no broker listening on $BOOTSTRAP"

# ---- registry -------------------------------------------------------------------
REG_PORT=${IMAGE_TEST_REGISTRY_PORT:-$(free_port)}
REG=127.0.0.1:$REG_PORT
step "Local registry (docker-registry) on $REG"
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

# ---- 1. the builder base stand-in ---------------------------------------------------
pinned=$(sed -n 's/^ARG RUST_IMAGE=//p' Dockerfile.producer)
[[ $(sed -n 's/^ARG RUST_IMAGE=//p' Dockerfile.consumer) == "$pinned" ]] ||
    die "Dockerfile.producer and Dockerfile.consumer pin different builder images"
step "Builder base: local stand-in for ${pinned%@*} (the only substituted part)"
BUILDAH_STORAGE_ARGS="${BUILDAH[*]:1}" scripts/builder-standin.sh "$STANDIN"

# ---- 2. build both Dockerfiles for every platform ---------------------------------------
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_ARGS=(--build-arg RUST_IMAGE="$STANDIN" --build-arg BUILDPLATFORM="linux/$HOST_ARCH"
    --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION")
for svc in producer consumer; do
    image=$REG/kind-kafka-rs/$svc:$TAG
    step "$svc: buildah bud -f Dockerfile.$svc --platform $PLATFORMS (builder stage included)"
    t0=$SECONDS
    "${BUILDAH[@]}" manifest rm "$image" >/dev/null 2>&1 || true
    "${BUILDAH[@]}" bud --layers --isolation chroot --format docker --pull=never \
        --platform "$PLATFORMS" --manifest "$image" "${BUILD_ARGS[@]}" \
        -f "Dockerfile.$svc" . >"$WORK/build-$svc.log" 2>&1 ||
        { tail -n 40 "$WORK/build-$svc.log" >&2; die "$svc: the image build failed (log above)"; }
    grep -E '^(/out|target/)' "$WORK/build-$svc.log" | grep -E 'bytes|statically' >&2 || true
    info "$svc: built for $PLATFORMS in $((SECONDS - t0))s"
done

# ---- 3. a file missing from the context fails the build -------------------------------------
step "The same build without vendor/ in the context must fail"
{ cat .dockerignore; echo vendor; } >"$WORK/ignore-no-vendor"
if "${BUILDAH[@]}" bud --layers --isolation chroot --format docker --pull=never --target builder \
    --platform "linux/$HOST_ARCH" "${BUILD_ARGS[@]}" --ignorefile "$WORK/ignore-no-vendor" \
    -f Dockerfile.producer . >"$WORK/build-no-vendor.txt" 2>&1; then
    die "the builder stage built without vendor/ in its context: this test would not see a missing file"
fi
# Cargo names the first patched crate it cannot load (both are vendored).
vendored='vendor/(rskafka|kafka-protocol)'
grep -Eq "$vendored" "$WORK/build-no-vendor.txt" ||
    { tail -n 20 "$WORK/build-no-vendor.txt" >&2; die "the build without vendor/ failed, but not on vendor/rskafka or vendor/kafka-protocol (above)"; }
info "failed as it must: $(grep -m1 -Eo "[^ ]*${vendored}[^ ]*" "$WORK/build-no-vendor.txt")"

# ---- 4. the build context ---------------------------------------------------------------
step "Build context (.dockerignore)"
printf 'FROM scratch\nCOPY . /context/\n' >"$WORK/Dockerfile.context"
"${BUILDAH[@]}" bud --quiet --isolation chroot -f "$WORK/Dockerfile.context" -t localhost/kind-kafka-rs/context-check:test . >/dev/null
ctr=$("${BUILDAH[@]}" from --quiet localhost/kind-kafka-rs/context-check:test)
mnt=$("${BUILDAH[@]}" mount "$ctr")
top=$(cd "$mnt/context" && find . -mindepth 1 -maxdepth 1 -printf '%P ' | tr ' ' '\n' | sort | tr '\n' ' ')
leaked=$(cd "$mnt/context" && find . \( -name .git -o -name target -o -name .state -o -name '*.profraw' \) -printf '%P ' | head -c 300)
size=$(du -sh "$mnt/context" | cut -f1)
"${BUILDAH[@]}" umount "$ctr" >/dev/null
"${BUILDAH[@]}" rm "$ctr" >/dev/null
"${BUILDAH[@]}" rmi localhost/kind-kafka-rs/context-check:test >/dev/null
[[ -z $leaked ]] || die "the build context holds what .dockerignore must keep out: $leaked"
info "context: $top($size)"

# label_from_cache SVC ARCH: did that image's LABEL step come from the cache?
label_from_cache() {
    awk -v p="[linux/$2] [2/2]" 'index($0, p) == 1 && / LABEL / {getline; print; exit}' "$WORK/build-$1.log" |
        grep -q 'Using cache'
}

# ---- 5. push, the index, copy back by digest, unpack, check -------------------------------
declare -A DIGEST=()
for svc in producer consumer; do
    image=$REG/kind-kafka-rs/$svc
    step "$svc: manifest list -> registry -> skopeo copy by digest -> umoci unpack"
    "${BUILDAH[@]}" manifest push --quiet --all --tls-verify=false --format v2s2 --digestfile "$WORK/$svc.digest" \
        "$image:$TAG" "docker://$image:$TAG"
    index=$(skopeo inspect --tls-verify=false --raw "docker://$image:$TAG")
    jq -e '.mediaType == "application/vnd.docker.distribution.manifest.list.v2+json"' <<<"$index" >/dev/null ||
        die "$svc: :$TAG is not a manifest list: $(jq -c '.mediaType' <<<"$index")"
    listed=$(jq -r '[.manifests[].platform | "\(.os)/\(.architecture)"] | sort | join(",")' <<<"$index")
    [[ $listed == "$(tr , '\n' <<<"$PLATFORMS" | sort | paste -sd, -)" ]] ||
        die "$svc: the manifest list holds $listed, want $PLATFORMS"
    info "$svc: $image:$TAG is a manifest list of $listed ($(cat "$WORK/$svc.digest"))"

    for arch in "${ARCHES[@]}"; do
        digest=$(jq -r --arg a "$arch" '.manifests[] | select(.platform.architecture == $a) | .digest' <<<"$index")
        DIGEST[$svc-$arch]=$digest
        skopeo copy --quiet --src-tls-verify=false "docker://$image@$digest" "oci:$WORK/oci/$svc-$arch:$TAG"
        umoci unpack --image "$WORK/oci/$svc-$arch:$TAG" "$WORK/bundle-$svc-$arch" >/dev/null

        # Image config, as the registry serves it.
        # --raw: the config blob itself (Docker's schema, which keeps Healthcheck).
        cfg=$(skopeo inspect --tls-verify=false --raw --config "docker://$image@$digest")
        jq -e --arg a "$arch" '.architecture == $a and .os == "linux"' <<<"$cfg" >/dev/null ||
            die "$svc/$arch: config says $(jq -c '[.os, .architecture]' <<<"$cfg")"
        jq -e '.config.User == "65532:65532"' <<<"$cfg" >/dev/null || die "$svc/$arch: user is $(jq -c .config.User <<<"$cfg"), want 65532:65532"
        jq -e --arg b "/$svc" '.config.Entrypoint == [$b]' <<<"$cfg" >/dev/null ||
            die "$svc/$arch: entrypoint is $(jq -c .config.Entrypoint <<<"$cfg"), want exec form [\"/$svc\"]"
        jq -e '(.config.Cmd // []) == []' <<<"$cfg" >/dev/null || die "$svc/$arch: unexpected Cmd $(jq -c .config.Cmd <<<"$cfg")"
        jq -e '.config.ExposedPorts | has("8080/tcp")' <<<"$cfg" >/dev/null || die "$svc/$arch: 8080/tcp not exposed"
        jq -e '.config.Env | index("MIMALLOC_PURGE_DELAY=10")' <<<"$cfg" >/dev/null ||
            die "$svc/$arch: MIMALLOC_PURGE_DELAY=10 missing from the image environment $(jq -c .config.Env <<<"$cfg")"
        jq -e --arg b "/$svc" '.config.Healthcheck.Test == ["CMD", $b, "healthcheck"]' <<<"$cfg" >/dev/null ||
            die "$svc/$arch: healthcheck is $(jq -c .config.Healthcheck <<<"$cfg")"
        for label in source version revision licenses; do
            value=$(jq -r --arg k "org.opencontainers.image.$label" '.config.Labels[$k] // empty' <<<"$cfg")
            [[ -n $value ]] || die "$svc/$arch: label org.opencontainers.image.$label missing"
        done
        # buildah 1.28 reuses a cached LABEL step when only the ARG in it
        # changed (BuildKit does not): the exact revision is checked when the
        # step ran, a commit id when it came from an earlier run's cache.
        rev_label=$(jq -r '.config.Labels["org.opencontainers.image.revision"]' <<<"$cfg")
        if label_from_cache "$svc" "$arch"; then
            [[ $rev_label =~ ^([0-9a-f]{40}|unknown)$ ]] || die "$svc/$arch: revision label '$rev_label' is no commit id"
        else
            [[ $rev_label == "$REVISION" ]] || die "$svc/$arch: revision label is $rev_label, not $REVISION"
        fi
        [[ $(jq -r '.rootfs.diff_ids | length' <<<"$cfg") == 1 ]] || die "$svc/$arch: expected one layer"

        # The root filesystem: the binary and nothing else (no shell, no libc).
        rootfs=$WORK/bundle-$svc-$arch/rootfs
        contents=$(cd "$rootfs" && find . -mindepth 1 -printf '%p %U:%G %m\n' | sort)
        [[ $contents == "./$svc 0:0 555" ]] || die "$svc/$arch: rootfs holds more than /$svc (root-owned, 0555): $contents"
        desc=$(file -b "$rootfs/$svc")
        [[ $desc =~ static(-pie)?\ linked|statically\ linked ]] || die "$svc/$arch: binary is not static: $desc"
        case $arch in
            amd64) [[ $desc == *x86-64* ]] || die "$svc/$arch: not an x86-64 binary: $desc" ;;
            arm64) [[ $desc == *"ARM aarch64"* ]] || die "$svc/$arch: not an aarch64 binary: $desc" ;;
        esac
        # cargo-auditable's dependency list, embedded by the builder stage.
        if command -v readelf >/dev/null 2>&1; then
            [[ $(readelf -S "$rootfs/$svc") == *.dep-v0* ]] || die "$svc/$arch: no .dep-v0 section (cargo-auditable)"
        fi
        manifest=$(skopeo inspect --tls-verify=false --raw "docker://$image@$digest")
        pulled=$(jq '[.layers[].size] + [.config.size] | add' <<<"$manifest")
        printf 'image-test: %-8s %-5s %s  pull %s bytes (%s MiB), binary %s bytes, %s\n' "$svc" "$arch" "${digest:0:19}" \
            "$pulled" "$(awk -v b="$pulled" 'BEGIN{printf "%.2f", b/1048576}')" "$(stat -c %s "$rootfs/$svc")" \
            "$(cut -d, -f1-2 <<<"$desc")" >&2
        jq -e '.process.user.uid == 65532 and .process.user.gid == 65532' "$WORK/bundle-$svc-$arch/config.json" >/dev/null ||
            die "$svc/$arch: the runtime bundle does not run as 65532:65532"
    done
done

# The image's own environment (Dockerfile ENV) for processes started from a bundle.
image_env() { jq -c '.process.env' "$WORK/bundle-$1/config.json"; }

# Fills in a bundle's config.json for runc: env and extra arguments, no
# terminal, the host's network (no network namespace), read-only root.
configure_bundle() { # bundle args-json env-json
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

count_records() { # log run-id
    grep '"message":"record"' "$1" | grep -c "$2" || true
}
records_at_least() { # n log run-id
    (($(count_records "$2" "$3") >= $1))
}

# ---- 6. the host platform under runc ------------------------------------------------------
H=$HOST_ARCH
TOPIC=image-test-$ID
GROUP=image-test-$ID
CONSUMER_NAME=kkr-consumer-$ID
PRODUCER_NAME=kkr-producer-$ID
C_ADDR=127.0.0.1:$(free_port)
P_ADDR=127.0.0.1:$(free_port)
while [[ $P_ADDR == "$C_ADDR" ]]; do P_ADDR=127.0.0.1:$(free_port); done

step "runc ($H): consumer container (group $GROUP, topic $TOPIC, HTTP $C_ADDR)"
configure_bundle "consumer-$H" '[]' "$(jq -nc --arg b "$BOOTSTRAP" --arg t "$TOPIC" --arg g "$GROUP" --arg h "$C_ADDR" '[
    "KAFKA_BOOTSTRAP_SERVER=\($b)", "KAFKA_TOPIC=\($t)", "KAFKA_CONSUMER_GROUP=\($g)", "HTTP_ADDR=\($h)",
    "LOG_FORMAT=json", "RUST_LOG=info", "CONSUMER_COMMIT_INTERVAL_MS=1000", "CONSUMER_SESSION_TIMEOUT_MS=10000",
    "CONSUMER_DRAIN_TIMEOUT_MS=5000", "CONSUMER_LOG_VALUE_MAX_BYTES=512"]')"
"${RUNC[@]}" run -b "$WORK/bundle-consumer-$H" "$CONSUMER_NAME" </dev/null >"$WORK/consumer.log" 2>&1 &
CONTAINER_PID[$CONSUMER_NAME]=$!
wait_for 20 "consumer /healthz" http_is 200 "$C_ADDR" /healthz
pid1=$("${RUNC[@]}" state "$CONSUMER_NAME" | jq -r .pid)
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid1/status")
[[ $uid == 65532 ]] || die "consumer runs as uid $uid, want 65532"
info "consumer container up (pid $pid1, uid $uid)"

step "runc ($H): producer container ($MESSAGES records, --create-topic, HTTP $P_ADDR)"
# A rate keeps it running a few seconds so its endpoints can be probed
# while it sends; the grace period keeps /metrics up after the last ack.
rate=$(((MESSAGES + 3) / 4))
configure_bundle "producer-$H" "$(jq -nc --arg n "$MESSAGES" --arg r "$rate" '[
    "--messages", $n, "--create-topic", "--partitions", "3", "--rate", $r,
    "--key-template", "key-{seq % 8}", "--metrics-grace-secs", "6", "--timeout", "60"]')" \
    "$(jq -nc --arg b "$BOOTSTRAP" --arg t "$TOPIC" --arg h "$P_ADDR" --arg r "$RUN_ID" '[
    "KAFKA_BOOTSTRAP_SERVER=\($b)", "KAFKA_TOPIC=\($t)", "HTTP_ADDR=\($h)", "PRODUCER_RUN_ID=\($r)",
    "LOG_FORMAT=json", "RUST_LOG=info"]')"
"${RUNC[@]}" run -b "$WORK/bundle-producer-$H" "$PRODUCER_NAME" </dev/null >"$WORK/producer.log" 2>&1 &
CONTAINER_PID[$PRODUCER_NAME]=$!
wait_for 20 "producer /healthz" http_is 200 "$P_ADDR" /healthz
wait_for 20 "producer /readyz" http_is 200 "$P_ADDR" /readyz
info "producer /healthz 200, /readyz 200 while sending"
wait_for 30 "producer records_sent_total = $MESSAGES in /metrics" \
    metric_is "$MESSAGES" "$P_ADDR" kafka_producer_records_sent_total "topic=\"$TOPIC\""
info "producer /metrics: kafka_producer_records_sent_total{topic=\"$TOPIC\"} $MESSAGES"
producer_pid=${CONTAINER_PID[$PRODUCER_NAME]}
wait_for 60 "the producer container to exit" eval "! kill -0 $producer_pid"
producer_rc=0
wait "$producer_pid" || producer_rc=$?
unset "CONTAINER_PID[$PRODUCER_NAME]"
"${RUNC[@]}" delete --force "$PRODUCER_NAME" >/dev/null 2>&1 || true
[[ $producer_rc == 0 ]] || die "producer exited $producer_rc"
summary=$(grep '"message":"summary"' "$WORK/producer.log" | tail -n1)
[[ -n $summary ]] || die "no summary line from the producer"
acked=$(jq -r '.acked // .fields.acked' <<<"$summary")
[[ $acked == "$MESSAGES" ]] || die "producer acknowledged $acked of $MESSAGES"
info "producer exited 0: $(jq -c '{records: (.records // .fields.records), acked: (.acked // .fields.acked), seconds: (.seconds // .fields.seconds)}' <<<"$summary")"

step "Consumer logs every record of run $RUN_ID"
deadline=$((SECONDS + 60))
until (($(count_records "$WORK/consumer.log" "$RUN_ID") >= MESSAGES)); do
    ((SECONDS < deadline)) || die "consumer logged $(count_records "$WORK/consumer.log" "$RUN_ID") of $MESSAGES records within 60s"
    kill -0 "${CONTAINER_PID[$CONSUMER_NAME]}" 2>/dev/null || die "consumer container exited early"
    sleep 0.5
done
n=$(count_records "$WORK/consumer.log" "$RUN_ID")
distinct=$(grep '"message":"record"' "$WORK/consumer.log" | grep "$RUN_ID" |
    jq -r '"\(.partition // .fields.partition)-\(.offset // .fields.offset)"' | sort -u | wc -l)
((distinct == MESSAGES)) || die "consumer logged $n record lines but $distinct distinct offsets, want $MESSAGES"
info "consumer logged $n records ($distinct distinct partition/offset pairs) = producer's $MESSAGES"

wait_for 30 "consumer /readyz" http_is 200 "$C_ADDR" /readyz
consumed=$(scrape "$C_ADDR" kafka_consumer_records_consumed_total "topic=\"$TOPIC\"")
[[ $consumed == "$MESSAGES" ]] || die "consumer /metrics counts $consumed records, want $MESSAGES"
lag=$(scrape "$C_ADDR" kafka_consumergroup_lag "topic=\"$TOPIC\"")
info "consumer /healthz 200, /readyz 200, /metrics: kafka_consumer_records_consumed_total (sum) $consumed, kafka_consumergroup_lag (sum) $lag"

# The image's HEALTHCHECK command, run inside the running container.
hc=$(skopeo inspect --tls-verify=false --raw --config "docker://$REG/kind-kafka-rs/consumer@${DIGEST[consumer-$H]}" | jq -c '.config.Healthcheck.Test[1:]')
mapfile -t hc_args < <(jq -r '.[]' <<<"$hc")
timeout 15 "${RUNC[@]}" exec "$CONSUMER_NAME" "${hc_args[@]}" || die "HEALTHCHECK $hc failed inside the consumer container"
info "HEALTHCHECK $hc inside the consumer container: exit 0"

step "SIGTERM to the consumer container"
"${RUNC[@]}" kill "$CONSUMER_NAME" TERM
consumer_pid=${CONTAINER_PID[$CONSUMER_NAME]}
wait_for 20 "the consumer to stop after SIGTERM" eval "! kill -0 $consumer_pid"
consumer_rc=0
wait "$consumer_pid" || consumer_rc=$?
unset "CONTAINER_PID[$CONSUMER_NAME]"
"${RUNC[@]}" delete --force "$CONSUMER_NAME" >/dev/null 2>&1 || true
[[ $consumer_rc == 0 ]] || die "consumer exited $consumer_rc after SIGTERM"
info "consumer exited 0 after SIGTERM"

# ---- 7. the other platforms under qemu-user ------------------------------------------------
for arch in "${ARCHES[@]}"; do
    [[ $arch != "$HOST_ARCH" ]] || continue
    qemu=$(qemu_for "$arch")
    c_bin=$WORK/bundle-consumer-$arch/rootfs/consumer
    p_bin=$WORK/bundle-producer-$arch/rootfs/producer
    step "$arch binaries from the images under $qemu"
    help=$("$qemu" "$c_bin" --help) || die "$arch consumer --help failed"
    [[ $help == *KAFKA_CONSUMER_GROUP* ]] || die "$arch consumer --help does not list its settings"
    "$qemu" "$p_bin" --help >/dev/null || die "$arch producer --help failed"
    info "$arch: producer --help and consumer --help exit 0"

    topic=image-test-$arch-$ID
    run_id=$RUN_ID-$arch
    addr=127.0.0.1:$(free_port)
    mapfile -t c_env < <(jq -r '.[]' <<<"$(image_env "consumer-$arch")")
    env -i "${c_env[@]}" KAFKA_BOOTSTRAP_SERVER="$BOOTSTRAP" KAFKA_TOPIC="$topic" KAFKA_CONSUMER_GROUP="$topic" \
        HTTP_ADDR="$addr" LOG_FORMAT=json RUST_LOG=info CONSUMER_COMMIT_INTERVAL_MS=1000 \
        CONSUMER_SESSION_TIMEOUT_MS=10000 CONSUMER_DRAIN_TIMEOUT_MS=5000 CONSUMER_METADATA_REFRESH_MS=1000 \
        "$qemu" "$c_bin" >"$WORK/consumer-$arch.log" 2>&1 &
    BG_PID[consumer-$arch]=$!
    wait_for 60 "the $arch consumer's /healthz" http_is 200 "$addr" /healthz
    env -i HTTP_ADDR="$addr" "$qemu" "$c_bin" healthcheck >"$WORK/healthcheck-$arch.txt" 2>&1 ||
        die "$arch consumer healthcheck against its live sidecar on $addr failed: $(cat "$WORK/healthcheck-$arch.txt")"
    info "$arch: consumer healthcheck against its live sidecar ($addr): exit 0"

    mapfile -t p_env < <(jq -r '.[]' <<<"$(image_env "producer-$arch")")
    env -i "${p_env[@]}" KAFKA_BOOTSTRAP_SERVER="$BOOTSTRAP" KAFKA_TOPIC="$topic" HTTP_ADDR=127.0.0.1:0 \
        PRODUCER_RUN_ID="$run_id" LOG_FORMAT=json RUST_LOG=info \
        timeout 120 "$qemu" "$p_bin" --messages "$EMU_MESSAGES" --create-topic --partitions 2 --timeout 90 \
        >"$WORK/producer-$arch.log" 2>&1 || die "$arch producer failed"
    acked=$(grep '"message":"summary"' "$WORK/producer-$arch.log" | tail -n1 | jq -r '.acked // .fields.acked')
    [[ $acked == "$EMU_MESSAGES" ]] || die "$arch producer acknowledged ${acked:-nothing} of $EMU_MESSAGES"
    wait_for 90 "the $arch consumer to log $EMU_MESSAGES records" \
        records_at_least "$EMU_MESSAGES" "$WORK/consumer-$arch.log" "$run_id"
    stop_pid "${BG_PID[consumer-$arch]}" 20
    unset "BG_PID[consumer-$arch]"
    grep -q '"message":"stopped cleanly"' "$WORK/consumer-$arch.log" || die "$arch consumer did not stop cleanly on SIGTERM"
    info "$arch: producer sent $EMU_MESSAGES (all acknowledged), consumer logged $(count_records "$WORK/consumer-$arch.log" "$run_id"), stopped cleanly"
done

# ---- 8. the host platform's binaries for the later tiers ----------------------------------------
mkdir -p target/static
for svc in producer consumer; do
    install -m 0755 "$WORK/bundle-$svc-$HOST_ARCH/rootfs/$svc" "target/static/$svc"
done
info "target/static/{producer,consumer}: the $HOST_ARCH binaries of these images"

step "Image path verified"
for key in "${!DIGEST[@]}"; do
    printf '  %-15s %s/kind-kafka-rs/%s@%s\n' "$key" "$REG" "${key%-*}" "${DIGEST[$key]}"
done | sort
