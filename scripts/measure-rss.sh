#!/usr/bin/env bash
# Peak memory (VmHWM) of the static binaries against the local broker: the
# figures behind the requests/limits in k8s/base.
#
#   scripts/measure-rss.sh [MESSAGES] [RECORD_SIZE]   (default 100000 256)
#
# The producer sends MESSAGES records of RECORD_SIZE bytes to a new 6-partition
# topic (VmHWM sampled every 50 ms: it exits at the end); then one consumer
# reads them all (one member owns all 6 partitions, the worst case) and its
# VmHWM and VmRSS are read from /proc/PID/status, and again after 10 s idle.
# Uses target/static (scripts/build-static.sh; MEASURE_BIN=DIR: DIR/producer
# and DIR/consumer instead, e.g. target/release) and a running local broker
# (scripts/kafka-local.sh start).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

N=${1:-100000}
SIZE=${2:-256}
BIN=${MEASURE_BIN:-target/static}
# As the images run them (Dockerfile.*: ENV).
export MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:-10}
BOOTSTRAP=${MEASURE_BOOTSTRAP:-127.0.0.1:19092}
TOPIC=rss-$$-$(date +%s)
LOG=$(mktemp -d "${TMPDIR:-/tmp}/measure-rss.XXXXXX")
consumer_pid=
cleanup() {
    stop_pid "$consumer_pid" 15
    rm -rf "$LOG"
}
at_exit cleanup

for b in producer consumer; do [[ -x $BIN/$b ]] || die "$BIN/$b missing: scripts/build-static.sh"; done
broker_ensure

kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$2/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }

export KAFKA_BOOTSTRAP_SERVER=$BOOTSTRAP KAFKA_TOPIC=$TOPIC LOG_FORMAT=json
HTTP_ADDR=127.0.0.1:0 "$BIN/producer" --messages "$N" --record-size "$SIZE" --create-topic --partitions 6 \
    --key-template 'key-{seq % 64}' --timeout 120 >"$LOG/producer.log" 2>&1 &
pp=$!
peak=0
while kill -0 "$pp" 2>/dev/null; do
    h=$(kb VmHWM "$pp")
    ((${h:-0} > peak)) && peak=$h
    sleep 0.05
done
wait "$pp" || { tail -n 3 "$LOG/producer.log" >&2; exit 1; }
echo "producer  $N x $SIZE B: VmHWM $(mib "$peak") (sampled)"

port=$(free_port)
HTTP_ADDR=127.0.0.1:$port KAFKA_CONSUMER_GROUP=rss-$TOPIC "$BIN/consumer" >"$LOG/consumer.log" 2>&1 &
consumer_pid=$!
start=$SECONDS
n=0
while ((n < N)); do
    ((SECONDS - start < 300)) || die "consumer read $n of $N in 300 s"
    sleep 0.2
    n=$(scrape "127.0.0.1:$port" kafka_consumer_records_consumed_total)
done
echo "consumer  $N x $SIZE B, 6 partitions, 1 member: VmHWM $(mib "$(kb VmHWM "$consumer_pid")"), VmRSS $(mib "$(kb VmRSS "$consumer_pid")") after $((SECONDS - start)) s"
sleep 10
echo "consumer  idle 10 s later: VmRSS $(mib "$(kb VmRSS "$consumer_pid")")"
