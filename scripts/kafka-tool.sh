#!/usr/bin/env bash
# Runs Apache Kafka's own CLI tools from the jars that scripts/kafka-local.sh
# resolves (scripts/kafka/pom.xml), without a Kafka distribution.
#
#   scripts/kafka-tool.sh NAME [args...]      e.g. topics --bootstrap-server 127.0.0.1:19092 --list
#   scripts/kafka-tool.sh class FQCN [args...]  any main class on the classpath
#   scripts/kafka-tool.sh list                  the NAME -> class table
#
# Client property files for --command-config / --consumer.config /
# --producer.config are written by `kafka-local.sh start` into the state dir
# ($KAFKA_LOCAL_DIR, default ${TMPDIR:-/tmp}/kafka-local-$(id -u)):
#   client-plaintext.properties, client-sasl-scram512.properties,
#   client-sasl-scram256.properties, client-sasl-plain.properties,
#   client-ssl.properties, client-ssl-mtls.properties,
#   client-sasl-ssl-scram512.properties, client-sasl-ssl-plain.properties
#
# Tool logs (WARN and above) go to stderr; stdout carries only tool output.
# KAFKA_TOOL_OPTS replaces the default JVM options (fast start: C1 only,
# serial GC; the perf tests default to the full JIT instead).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"
shopt -s inherit_errexit

TOOLS='console-producer      org.apache.kafka.tools.ConsoleProducer
console-consumer      org.apache.kafka.tools.consumer.ConsoleConsumer
consumer-groups       org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
topics                org.apache.kafka.tools.TopicCommand
configs               org.apache.kafka.tools.ConfigCommand
producer-perf-test    org.apache.kafka.tools.ProducerPerformance
consumer-perf-test    org.apache.kafka.tools.ConsumerPerformance
broker-api-versions   org.apache.kafka.tools.BrokerApiVersionsCommand
get-offsets           org.apache.kafka.tools.GetOffsetShell
acls                  org.apache.kafka.tools.AclCommand
delete-records        org.apache.kafka.tools.DeleteRecordsCommand
dump-log              org.apache.kafka.tools.DumpLogSegments
e2e-latency           org.apache.kafka.tools.EndToEndLatency
features              org.apache.kafka.tools.FeatureCommand
groups                org.apache.kafka.tools.GroupsCommand
leader-election       org.apache.kafka.tools.LeaderElectionCommand
log-dirs              org.apache.kafka.tools.LogDirsCommand
metadata-quorum       org.apache.kafka.tools.MetadataQuorumCommand
reassign-partitions   org.apache.kafka.tools.reassign.ReassignPartitionsCommand
share-groups          org.apache.kafka.tools.consumer.group.ShareGroupCommand
streams-groups        org.apache.kafka.tools.streams.StreamsGroupCommand
transactions          org.apache.kafka.tools.TransactionsCommand
verifiable-producer   org.apache.kafka.tools.VerifiableProducer
verifiable-consumer   org.apache.kafka.tools.VerifiableConsumer
storage               kafka.tools.StorageTool'

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    echo "Tools:" >&2
    printf '%s\n' "$TOOLS" | sed 's/^/  /' >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
name=$1; shift
case $name in
    -h|--help|help) usage ;;
    list) printf '%s\n' "$TOOLS"; exit 0 ;;
    class)
        [[ $# -ge 1 ]] || usage
        cls=$1; shift ;;
    *)
        cls=$(printf '%s\n' "$TOOLS" | awk -v n="$name" '$1 == n { print $2 }')
        [[ -n $cls ]] || { echo "kafka-tool: unknown tool '$name'" >&2; usage; } ;;
esac

if [[ -n ${KAFKA_TOOL_OPTS:-} ]]; then
    read -r -a opts <<<"$KAFKA_TOOL_OPTS"
else
    case $name in
        producer-perf-test|consumer-perf-test|e2e-latency) opts=(-Xmx512m) ;;
        *) opts=(-Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1) ;;
    esac
fi

# -cp CLASSPATH -Dlog4j2.configurationFile=... (one per line)
jvm_args_text=$("$SCRIPT_DIR/kafka-local.sh" tool-jvm-args)
mapfile -t jvm_args <<<"$jvm_args_text"

exec java "${opts[@]}" -Djava.awt.headless=true "${jvm_args[@]}" "$cls" "$@"
