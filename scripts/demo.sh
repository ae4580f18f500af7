#!/usr/bin/env bash
# `make demo`: the main job on the embedded default. Starts the local Apache
# Kafka broker, starts the consumer, runs the producer Job against it, and
# shows the records arriving, the lag returning to 0 and a clean shutdown.
#
# Environment: DEMO_MESSAGES (default 20, like the prototype), DEMO_TOPIC,
# DEMO_GROUP, DEMO_KEEP_BROKER=1 to leave the broker running afterwards.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

MESSAGES=${DEMO_MESSAGES:-20}
TOPIC=${DEMO_TOPIC:-demo-$(date +%s)}
GROUP=${DEMO_GROUP:-demo-group-$(date +%s)}
BOOTSTRAP=127.0.0.1:19092

step "Starting the local Apache Kafka broker (KRaft, Maven Central jars)"
KEEP_BROKER=${DEMO_KEEP_BROKER:-0} broker_ensure
consumer_pid=
# shellcheck disable=SC2016 # expanded at exit
at_exit 'stop_pid "$consumer_pid" 15'

step "Building the services"
cargo build -q -p producer -p consumer
BIN=target/debug

export KAFKA_BOOTSTRAP_SERVER=$BOOTSTRAP KAFKA_TOPIC=$TOPIC KAFKA_CONSUMER_GROUP=$GROUP LOG_FORMAT=json

consumer_log=$(mktemp)
step "Consumer Deployment (group $GROUP) starts first and waits for its topic"
HTTP_ADDR=127.0.0.1:18081 CONSUMER_COMMIT_INTERVAL_MS=1000 CONSUMER_SESSION_TIMEOUT_MS=10000 \
    CONSUMER_DRAIN_TIMEOUT_MS=5000 CONSUMER_METADATA_REFRESH_MS=1000 "$BIN/consumer" >"$consumer_log" 2>&1 &
consumer_pid=$!
sleep 1

step "Producer Job: $MESSAGES records to topic $TOPIC (created with 3 partitions)"
HTTP_ADDR=127.0.0.1:18080 "$BIN/producer" --messages "$MESSAGES" --create-topic --partitions 3 \
    --key-template 'key-{seq % 8}' --timeout 60 | tee /tmp/demo-producer.log
echo "producer exit code: ${PIPESTATUS[0]}"

step "Consumer: one JSON line per record"
for _ in $(seq 1 60); do
    n=$(grep -c '"message":"record"' "$consumer_log" || true)
    [[ $n -ge $MESSAGES ]] && break
    sleep 0.5
done
grep '"message":"record"' "$consumer_log" | head -n "$MESSAGES"
echo "records logged by the consumer: $(grep -c '"message":"record"' "$consumer_log" || true) of $MESSAGES"
sleep 2
echo "consumer lag per partition (kafka_consumergroup_lag from its /metrics, after the commit):"
curl -fsS http://127.0.0.1:18081/metrics | grep '^kafka_consumergroup_lag' || true
step "Kafka's own consumer-groups tool describes the group"
scripts/kafka-tool.sh consumer-groups --bootstrap-server "$BOOTSTRAP" --describe --group "$GROUP" || true
step "SIGTERM: the consumer commits, leaves the group and exits"
kill -TERM "$consumer_pid"; wait "$consumer_pid" && echo "consumer exit code: 0" || echo "consumer exit code: $?"
consumer_pid=
grep -E '"message":"(final offsets committed|left group|stopped cleanly)"' "$consumer_log" || true
rm -f "$consumer_log"
step "Done"
