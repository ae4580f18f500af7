#!/usr/bin/env bash
# Probe endpoints under load while the consumer works at full speed (issue 8).
#
#   scripts/load-test.sh          (make test-load; needs the local broker and wrk)
#
# Fills a topic with MESSAGES demo records (our producer), then runs one
# consumer per phase, each a new group reading the whole backlog from the
# start with per-record JSON logging to /dev/null:
#   baseline   no HTTP load
#   /metrics   wrk -t WRK_THREADS -c WRK_CONNECTIONS -d WRK_SECONDS
#   /healthz   same
#   /readyz    same
# and reports, per phase, the consumer's records/s (from its own /metrics)
# and wrk's p50/p99 latency and requests/s. Fails when a probe's p99 is over
# P99_MAX_MS, a probe answers an error, or consumption stalls during a load
# phase (no progress in any 2 s window while backlog remains).
# All traffic is on 127.0.0.1; every wait is bounded. About a minute.
#
# Environment: MESSAGES (500000), WRK_SECONDS (10), WRK_CONNECTIONS (4),
# WRK_THREADS (2), P99_MAX_MS (1000: half the probes' timeoutSeconds in
# k8s/, so a probe under this load cannot fail; a correctness bound, not a
# speed target: the p99 itself is reported), KAFKA_TEST_BOOTSTRAP (127.0.0.1:19092),
# BIN_DIR (target/debug; built with cargo unless SKIP_BUILD=1),
# REPORT (file to append the result table to, optional).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

MESSAGES=${MESSAGES:-500000}
WRK_SECONDS=${WRK_SECONDS:-10}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-4}
WRK_THREADS=${WRK_THREADS:-2}
P99_MAX_MS=${P99_MAX_MS:-1000}
BOOTSTRAP=${KAFKA_TEST_BOOTSTRAP:-127.0.0.1:19092}
BIN_DIR=${BIN_DIR:-target/debug}

need wrk curl -- "scripts/install-tools.sh installs them"
broker_ensure
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build -q -p producer -p consumer
fi
[[ -x $BIN_DIR/producer && -x $BIN_DIR/consumer ]] || die "no binaries in $BIN_DIR"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/load-test.XXXXXX")
CONSUMER_PID=
cleanup() {
    stop_pid "$CONSUMER_PID"
    rm -rf "$WORK"
}
at_exit cleanup

# Sum of kafka_consumer_records_consumed_total over partitions (0 if down).
consumed() { scrape "$HTTP" kafka_consumer_records_consumed_total; }

TOPIC="load-$$-$(date +%s)"
info "filling $TOPIC with $MESSAGES records (3 partitions)"
t0=$(date +%s%N)
env -i PATH="$PATH" LOG_FORMAT=json HTTP_ADDR=127.0.0.1:0 \
    KAFKA_BOOTSTRAP_SERVER="$BOOTSTRAP" KAFKA_TOPIC="$TOPIC" \
    PRODUCER_MESSAGES="$MESSAGES" PRODUCER_CREATE_TOPIC=true PRODUCER_TOPIC_PARTITIONS=3 \
    PRODUCER_RECORD_SIZE=256 PRODUCER_TIMEOUT_SECS=120 \
    timeout 150 "$BIN_DIR/producer" >"$WORK/producer.log" 2>&1 ||
    { tail -n 5 "$WORK/producer.log" >&2; die "producer failed"; }
produce_ms=$((($(date +%s%N) - t0) / 1000000))
info "produced in ${produce_ms} ms: $(tail -n 1 "$WORK/producer.log" | cut -c1-200)"

# Starts a consumer (new group) and waits until it consumes.
start_consumer() {
    HTTP=127.0.0.1:$(free_port)
    env -i PATH="$PATH" LOG_FORMAT=json HTTP_ADDR="$HTTP" \
        KAFKA_BOOTSTRAP_SERVER="$BOOTSTRAP" KAFKA_TOPIC="$TOPIC" \
        KAFKA_CONSUMER_GROUP="load-$1-$$" CONSUMER_AUTO_OFFSET_RESET=earliest \
        CONSUMER_SESSION_TIMEOUT_MS=10000 CONSUMER_HEARTBEAT_INTERVAL_MS=1000 CONSUMER_DRAIN_TIMEOUT_MS=5000 \
        "$BIN_DIR/consumer" >/dev/null 2>"$WORK/consumer-$1.err" &
    CONSUMER_PID=$!
    local deadline=$((SECONDS + 30))
    until (($(consumed) > 0)); do
        ((SECONDS < deadline)) || die "$1: consumer did not start consuming within 30 s"
        kill -0 "$CONSUMER_PID" 2>/dev/null || die "$1: consumer exited: $(cat "$WORK/consumer-$1.err")"
        sleep 0.1
    done
}

stop_consumer() {
    kill -TERM "$CONSUMER_PID"
    local rc=0
    for _ in $(seq 150); do kill -0 "$CONSUMER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$CONSUMER_PID" 2>/dev/null && die "consumer did not stop within 15 s of SIGTERM"
    wait "$CONSUMER_PID" || rc=$?
    CONSUMER_PID=
    ((rc == 0)) || die "consumer exited $rc on SIGTERM"
}

# wrk's latency line for a percentile, in ms.
wrk_ms() {
    awk -v p="$2" '$1 == p {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000;
        printf "%.2f\n", v }' "$1"
}

declare -A RATE P50 P99 RPS ERRS STALLS
run_phase() {
    local name=$1 path=$2 c0 c1 start prev now stalls=0 wrk_pid="" t_start
    start_consumer "$name"
    c0=$(consumed)
    t_start=$(date +%s%N)
    if [[ -n $path ]]; then
        wrk -t "$WRK_THREADS" -c "$WRK_CONNECTIONS" -d "${WRK_SECONDS}s" --timeout 5s --latency \
            "http://$HTTP$path" >"$WORK/wrk-$name.txt" 2>&1 &
        wrk_pid=$!
    fi
    # Progress every 2 s while backlog remains.
    prev=$c0
    start=$SECONDS
    while ((SECONDS - start < WRK_SECONDS)); do
        sleep 2
        now=$(consumed)
        if ((now <= prev && now < MESSAGES)); then
            stalls=$((stalls + 1))
            info "$name: no progress in 2 s at $now records"
        fi
        prev=$now
    done
    if [[ -n $wrk_pid ]]; then
        wait "$wrk_pid" || die "$name: wrk failed: $(cat "$WORK/wrk-$name.txt")"
    fi
    c1=$(consumed)
    local ms=$((($(date +%s%N) - t_start) / 1000000))
    RATE[$name]=$(((c1 - c0) * 1000 / (ms > 0 ? ms : 1)))
    # The backlog ran out within the window: the rate is a lower bound.
    ((c1 < MESSAGES)) || RATE[$name]=">=${RATE[$name]}"
    STALLS[$name]=$stalls
    if [[ -n $path ]]; then
        P50[$name]=$(wrk_ms "$WORK/wrk-$name.txt" 50%)
        P99[$name]=$(wrk_ms "$WORK/wrk-$name.txt" 99%)
        RPS[$name]=$(awk '/^Requests\/sec:/ {printf "%d", $2}' "$WORK/wrk-$name.txt")
        ERRS[$name]=$(awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {n += 1} END {print n + 0}' "$WORK/wrk-$name.txt")
    else
        P50[$name]=-; P99[$name]=-; RPS[$name]=-; ERRS[$name]=0
    fi
    info "$name: ${RATE[$name]} records/s ($((c1 - c0)) in ${ms} ms), p50 ${P50[$name]} ms, p99 ${P99[$name]} ms, ${RPS[$name]} req/s, errors ${ERRS[$name]}"
    stop_consumer
}

run_phase baseline ""
run_phase metrics /metrics
run_phase healthz /healthz
run_phase readyz /readyz

table=$(
    echo "| phase | consumer records/s | probe p50 ms | probe p99 ms | probe req/s | probe errors | stalls |"
    echo "|---|---|---|---|---|---|---|"
    for name in baseline metrics healthz readyz; do
        echo "| $name | ${RATE[$name]} | ${P50[$name]} | ${P99[$name]} | ${RPS[$name]} | ${ERRS[$name]} | ${STALLS[$name]} |"
    done
)
echo "$table"
[[ -z ${REPORT:-} ]] || printf '%s\n' "$table" >>"$REPORT"

fail=0
for name in metrics healthz readyz; do
    if awk -v a="${P99[$name]}" -v b="$P99_MAX_MS" 'BEGIN {exit !(a + 0 > b + 0 || a == "")}'; then
        echo "load-test: FAIL: /$name p99 ${P99[$name]} ms > ${P99_MAX_MS} ms" >&2; fail=1
    fi
    if ((ERRS[$name] > 0)); then
        echo "load-test: FAIL: /$name answered ${ERRS[$name]} errors" >&2; fail=1
    fi
    if ((STALLS[$name] > 0)); then
        echo "load-test: FAIL: consumption stalled during /$name load" >&2; fail=1
    fi
    if [[ ${RATE[$name]} == 0 ]]; then
        echo "load-test: FAIL: no records consumed during /$name load" >&2; fail=1
    fi
done
((fail == 0)) || exit 1
echo "load-test: OK (p99 bound ${P99_MAX_MS} ms, ${WRK_SECONDS} s per probe, $WRK_CONNECTIONS connections)"
