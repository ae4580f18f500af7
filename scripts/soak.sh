#!/usr/bin/env bash
# `make soak SECS=N`: the continuous canary against the local broker for N
# seconds (default 600), then a report: records sent / acknowledged /
# received / redelivered / lost / duplicated, ack and end-to-end latency
# (p50, p99, max bucket bounds from the histograms), each process's peak
# RSS (VmHWM) and CPU seconds. Fails when a record was lost or duplicated,
# or not every sent record was acknowledged. Not part of `make test` (the
# short canary run there is e2e/tests/canary.rs).
#
#   1. release binaries (SOAK_BIN=DIR uses DIR/producer and DIR/consumer);
#   2. the local broker (started if not running, stopped again then);
#   3. a consumer, then `producer --continuous` creating topic soak-* with
#      SOAK_PARTITIONS (3) partitions at SOAK_RATE (100) records/s;
#   4. after SECS: SIGTERM to the producer (it drains and logs its summary),
#      the consumer waits until it received every acknowledged record and
#      the loss window (SOAK_LOSS_WINDOW_SECS, 10) passed, then stops;
#   5. the report on stdout, one `key value` line each; the topic is deleted.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

SECS=${SECS:-${1:-600}}
RATE=${SOAK_RATE:-100}
PARTITIONS=${SOAK_PARTITIONS:-3}
LOSS_WINDOW=${SOAK_LOSS_WINDOW_SECS:-10}
BOOTSTRAP=${SOAK_BOOTSTRAP:-127.0.0.1:19092}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || die "SECS=$SECS: a whole number of seconds, 1 or more"
need curl python3 -- "scripts/install-tools.sh installs them"

if [[ -n ${SOAK_BIN:-} ]]; then
    BIN=$SOAK_BIN
else
    cargo build --release -q -p producer -p consumer || die "cargo build --release -p producer -p consumer"
    BIN=target/release
fi
broker_ensure

OUT=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")
TOPIC=soak-$(date +%s)-$$
producer_pid=
consumer_pid=
cleanup() {
    stop_pid "$producer_pid" 15
    stop_pid "$consumer_pid" 15
    "$LIB_DIR/kafka-tool.sh" topics --bootstrap-server "$BOOTSTRAP" --delete --topic "$TOPIC" >/dev/null 2>&1 || true
    rm -rf "$OUT"
}
at_exit cleanup

cport=$(free_port)
pport=$(free_port)
while [[ $pport == "$cport" ]]; do pport=$(free_port); done
export KAFKA_BOOTSTRAP_SERVER=$BOOTSTRAP KAFKA_TOPIC=$TOPIC LOG_FORMAT=json RUST_LOG=info
unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

# The producer creates the topic; the consumer waits for it (it retries).
HTTP_ADDR=127.0.0.1:$pport "$BIN/producer" --continuous true --rate "$RATE" \
    --create-topic true --partitions "$PARTITIONS" >"$OUT/producer.log" 2>&1 &
producer_pid=$!
wait_for 60 "the canary producer's first acknowledgement" \
    bash -c "[ \"\$(curl -s --max-time 2 http://127.0.0.1:$pport/metrics | awk '/^kafka_canary_produce_acks_total/ {s+=\$NF} END {print s+0}')\" -gt 0 ]"
HTTP_ADDR=127.0.0.1:$cport KAFKA_CONSUMER_GROUP=$TOPIC-group CANARY_LOSS_WINDOW_SECS=$LOSS_WINDOW \
    "$BIN/consumer" >"$OUT/consumer.log" 2>&1 &
consumer_pid=$!
info "${SECS}s at $RATE records/s on $PARTITIONS partitions of $TOPIC (producer pid $producer_pid, consumer pid $consumer_pid)"

deadline=$((SECONDS + SECS))
while ((SECONDS < deadline)); do
    kill -0 "$producer_pid" 2>/dev/null || die "the producer exited early: $(tail -n 3 "$OUT/producer.log")"
    kill -0 "$consumer_pid" 2>/dev/null || die "the consumer exited early: $(tail -n 3 "$OUT/consumer.log")"
    sleep $((deadline - SECONDS < 10 ? (deadline - SECONDS > 0 ? deadline - SECONDS : 1) : 10))
done

proc() { # PID: "peak_rss_kib cpu_secs"
    awk '/^VmHWM:/ {print $2}' "/proc/$1/status"
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
read -r -d '' p_rss p_cpu < <(proc "$producer_pid") || true
curl -s --max-time 3 "http://127.0.0.1:$pport/metrics" >"$OUT/producer.prom"
kill -TERM "$producer_pid"
rc=0
wait "$producer_pid" || rc=$?
producer_pid=
((rc == 0)) || die "the producer exited $rc after SIGTERM: $(tail -n 3 "$OUT/producer.log")"

acked=$(python3 - "$OUT/producer.log" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    f = j.get("fields", j)
    if f.get("message") == "summary":
        print(f["acked"], f["records"])
EOF
)
read -r acked sent <<<"$acked"
[[ -n ${sent:-} ]] || die "no summary line in the producer's log"
wait_for 120 "the consumer to receive all $acked acknowledged records" \
    bash -c "[ \"\$(curl -s --max-time 2 http://127.0.0.1:$cport/metrics | awk '/^kafka_canary_records_received_total/ {s+=\$NF} END {printf \"%d\", s}')\" -ge $acked ]"
sleep $((LOSS_WINDOW + 3))
read -r -d '' c_rss c_cpu < <(proc "$consumer_pid") || true
curl -s --max-time 3 "http://127.0.0.1:$cport/metrics" >"$OUT/consumer.prom"
stop_pid "$consumer_pid" 15
consumer_pid=

python3 - "$OUT" "$SECS" "$RATE" "$PARTITIONS" "$sent" "$acked" "$p_rss" "$p_cpu" "$c_rss" "$c_cpu" <<'EOF'
import os, re, sys
out, secs, rate, parts, sent, acked, p_rss, p_cpu, c_rss, c_cpu = sys.argv[1:]
def samples(svc):
    s = []
    for line in open(os.path.join(out, svc + ".prom")):
        m = re.match(r'([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)', line)
        if m and not line.startswith("#"):
            s.append((m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or "")), float(m.group(4))))
    return s
def total(s, name):
    return sum(v for n, _, v in s if n == name)
def quantiles(s, name):
    buckets = {}
    for n, l, v in s:
        if n == name + "_bucket":
            le = float("inf") if l["le"] == "+Inf" else float(l["le"])
            buckets[le] = buckets.get(le, 0) + v
    les = sorted(buckets)
    count = buckets.get(float("inf"), 0)
    def q(x):
        for le in les:
            if count and buckets[le] >= x * count:
                return "<= %g s" % le if le != float("inf") else "> %g s" % les[-2]
        return "n/a"
    top = next((le for le in les if buckets[le] >= count), None) if count else None
    mean = total(s, name + "_sum") / count if count else float("nan")
    return f"p50 {q(0.5)}, p99 {q(0.99)}, p99.9 {q(0.999)}, all {('<= %g s' % top) if top not in (None, float('inf')) else 'n/a'}, mean {mean * 1000:.2f} ms"
p, c = samples("producer"), samples("consumer")
lost = total(c, "kafka_canary_records_lost_total")
dup = total(c, "kafka_canary_records_duplicated_total")
rows = [
    ("seconds", secs), ("rate_per_sec", rate), ("partitions", parts),
    ("sent", sent), ("acked", acked),
    ("produce_attempts_before_sigterm", int(total(p, "kafka_canary_produce_attempts_total"))),
    ("produce_errors_before_sigterm", int(total(p, "kafka_canary_produce_errors_total"))),
    ("received", int(total(c, "kafka_canary_records_received_total"))),
    ("redelivered", int(total(c, "kafka_canary_records_redelivered_total"))),
    ("lost", int(lost)), ("duplicated", int(dup)),
    ("late", int(total(c, "kafka_canary_records_late_total"))),
    ("ack_latency", quantiles(p, "kafka_canary_produce_ack_latency_seconds")),
    ("e2e_latency", quantiles(c, "kafka_canary_e2e_latency_seconds")),
    ("producer_peak_rss_mib", "%.1f" % (int(p_rss) / 1024)), ("producer_cpu_secs", p_cpu),
    ("consumer_peak_rss_mib", "%.1f" % (int(c_rss) / 1024)), ("consumer_cpu_secs", c_cpu),
]
for k, v in rows:
    print(f"{k} {v}")
bad = lost or dup or int(sent) != int(acked)
sys.exit(1 if bad else 0)
EOF
