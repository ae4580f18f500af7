#!/usr/bin/env bash
# Fault 7 of issue 8: network trouble between the clients and the broker.
#
#   scripts/netns-fault.sh        (make test-network; root, iproute2, nftables, java)
#
# Runs a second, throw-away Kafka broker inside a network namespace this
# script creates, reachable from the root namespace only over a veth pair
# with addresses it assigns ($SUBNET.1 here, $SUBNET.2 in the namespace).
# The producer and the consumer run here, against $SUBNET.2:19092. While the
# producer sends at a fixed rate:
#   DEGRADE_SECS  DELAY_MS (100) each way and LOSS_PCT (5) % packet loss in
#                 both directions
#   CUT_SECS      every packet on the veth dropped (a silent black hole;
#                 CUT_MODE=down takes the link down instead)
#   then restored.
# How: this machine's kernel has no tc netem (sch_netem), so loss and the
# cut are nftables rules inside the namespace (`numgen random mod 100 < N
# drop`), and the delay comes from a small TCP proxy in the namespace: the
# broker listens on the namespace's own 127.0.0.1 and advertises
# $SUBNET.2:19092 (KAFKA_LOCAL_ADVERTISED_HOST), where the proxy forwards
# every chunk DELAY_MS late in both directions.
# Asserts: the producer gets every record acknowledged (exit 0, acked =
# MESSAGES); the consumer recovers and handles every record: the set of
# (partition, offset) it logged equals every offset below the broker's high
# watermarks, every demo seq was seen, no gaps; and the idempotent producer
# wrote every record exactly once: the topic read back with Kafka's console
# consumer holds each demo seq once. Reports consumer redeliveries and the
# recovery times after the restore.
# Cleans up the namespace, the broker and the processes on every exit.
# Traffic goes only to the namespace's address; every wait is bounded.
#
# Environment: MESSAGES (3000), RATE (100/s), DEGRADE_SECS (10), DELAY_MS
# (100), LOSS_PCT (5), CUT_SECS (10), CUT_MODE (loss|down), SUBNET (10.213.77), BIN_DIR
# (target/debug; built unless SKIP_BUILD=1), REPORT (file to append the
# result lines to), KEEP_LOGS=1 (keep the work dir).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

MESSAGES=${MESSAGES:-3000}
RATE=${RATE:-100}
DEGRADE_SECS=${DEGRADE_SECS:-10}
CUT_SECS=${CUT_SECS:-10}
CUT_MODE=${CUT_MODE:-loss}
DELAY_MS=${DELAY_MS:-100}
LOSS_PCT=${LOSS_PCT:-5}
SUBNET=${SUBNET:-10.213.77}
BIN_DIR=${BIN_DIR:-target/debug}
HOST_IP=$SUBNET.1
NS_IP=$SUBNET.2
NS=kkrs-fault-$$
VETH_H=kkf$$h
VETH_N=kkf$$n
BROKER=$NS_IP:19092

# Timestamped: the log lines are matched against the fault phases.
info() { echo "netns-fault: [$(date +%T.%3N)] $*" >&2; }
now_ms() { date +%s%3N; }

[[ $(id -u) == 0 ]] || die "needs root (ip netns, nft)"
need ip nft java jq curl python3 -- "scripts/install-tools.sh installs them"
[[ $CUT_MODE == loss || $CUT_MODE == down ]] || die "CUT_MODE is loss or down"
[[ $SUBNET =~ ^10\.[0-9]+\.[0-9]+$ ]] || die "SUBNET must be 10.X.Y"
if ip -o addr show | grep -qF " $SUBNET."; then
    die "$SUBNET.0/24 is already in use on this machine; set SUBNET"
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build -q -p producer -p consumer
fi
[[ -x $BIN_DIR/producer && -x $BIN_DIR/consumer ]] || die "no binaries in $BIN_DIR"
# The broker in the namespace has no network to Maven: resolve the jars here.
scripts/kafka-local.sh classpath >/dev/null

WORK=$(mktemp -d "${TMPDIR:-/tmp}/netns-fault.XXXXXX")
KDIR=$WORK/kafka
PRODUCER_PID=
CONSUMER_PID=
SAMPLER_PID=
PROXY_PID=
ok=0
in_ns() { ip netns exec "$NS" "$@"; }
broker() {
    in_ns env KAFKA_LOCAL_ADVERTISED_HOST="$NS_IP" KAFKA_LOCAL_DIR="$KDIR" \
        KAFKA_LOCAL_START_TIMEOUT=120 KAFKA_LOCAL_STOP_TIMEOUT=10 scripts/kafka-local.sh "$1"
}
cleanup() {
    local pid
    if [[ -s $WORK/proxy.pid ]]; then kill "$(<"$WORK/proxy.pid")" 2>/dev/null || true; fi
    for pid in "$PRODUCER_PID" "$CONSUMER_PID" "$SAMPLER_PID" "$PROXY_PID"; do
        if [[ -n $pid ]]; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if ip netns list 2>/dev/null | grep -qw "$NS"; then
        if [[ -d $KDIR ]]; then broker stop >/dev/null 2>&1 || true; fi
        ip netns delete "$NS" 2>/dev/null || true
    fi
    ip link delete "$VETH_H" 2>/dev/null || true
    if ((ok)) && [[ ${KEEP_LOGS:-0} != 1 ]]; then
        rm -rf "$WORK"
    else
        echo "netns-fault: logs kept in $WORK" >&2
    fi
}
at_exit cleanup

# ------------------------------------------------------------------ network
info "namespace $NS: $VETH_H $HOST_IP/30 <-> $VETH_N $NS_IP/30"
ip netns add "$NS"
ip link add "$VETH_H" type veth peer name "$VETH_N"
ip link set "$VETH_N" netns "$NS"
ip addr add "$HOST_IP/30" dev "$VETH_H"
ip link set "$VETH_H" up
in_ns ip addr add "$NS_IP/30" dev "$VETH_N"
in_ns ip link set "$VETH_N" up
in_ns ip link set lo up
# Loss and the cut: nftables in the namespace only (the machine's own rules
# are never touched); the table goes away with the namespace.
in_ns nft -f - <<EOF || die "nftables not usable in the namespace"
table inet kkrs_fault {
    chain in { type filter hook input priority 0; policy accept; }
    chain out { type filter hook output priority 0; policy accept; }
}
EOF
echo 0 >"$WORK/delay_ms"
trouble() {  # trouble off | trouble loss PCT | trouble cut
    in_ns nft flush chain inet kkrs_fault in
    in_ns nft flush chain inet kkrs_fault out
    case $1 in
        loss)
            in_ns nft add rule inet kkrs_fault in iifname "$VETH_N" numgen random mod 100 "<" "$2" drop
            in_ns nft add rule inet kkrs_fault out oifname "$VETH_N" numgen random mod 100 "<" "$2" drop ;;
        cut)
            in_ns nft add rule inet kkrs_fault in iifname "$VETH_N" drop
            in_ns nft add rule inet kkrs_fault out oifname "$VETH_N" drop ;;
    esac
}

# The delay: a TCP proxy on the advertised address, in the namespace,
# forwarding to the broker on the namespace's loopback, each chunk
# $DELAY_MS late (read from a file). It stops by itself after an hour.
cat >"$WORK/delay_proxy.py" <<'EOF'
import asyncio, os, sys, time

LISTEN, PORT, TARGET, DELAY_FILE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
OWNER = int(sys.argv[5])
with open(sys.argv[6], "w") as f:
    f.write(str(os.getpid()))
delay = 0.0

async def watch():
    global delay
    while True:
        try:
            os.kill(OWNER, 0)  # the script is gone: so are we
        except ProcessLookupError:
            os._exit(0)
        try:
            with open(DELAY_FILE) as f:
                delay = int(f.read().strip() or 0) / 1000
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.1)

async def pipe(reader, writer):
    queue = asyncio.Queue()
    async def receive():
        while True:
            data = await reader.read(65536)
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                return
    async def send():
        while True:
            due, data = await queue.get()
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            if not data:
                writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    await asyncio.gather(receive(), send())

async def handle(client_r, client_w):
    try:
        broker_r, broker_w = await asyncio.open_connection(TARGET, PORT)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(pipe(client_r, broker_w), pipe(broker_r, client_w))
    except (OSError, RuntimeError):
        pass
    finally:
        client_w.close()
        broker_w.close()

async def main():
    asyncio.get_running_loop().create_task(watch())
    server = await asyncio.start_server(handle, LISTEN, PORT)
    async with server:
        await asyncio.wait_for(server.serve_forever(), 3600)

try:
    asyncio.run(main())
except asyncio.TimeoutError:
    pass
EOF
# `ip netns exec` may fork: the proxy records its own pid, and exits by
# itself when this script is gone.
in_ns python3 "$WORK/delay_proxy.py" "$NS_IP" 19092 127.0.0.1 "$WORK/delay_ms" "$$" "$WORK/proxy.pid" \
    >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!

# ------------------------------------------------------------------- broker
info "starting a broker in $NS on $NS_IP"
broker start >"$WORK/broker-start.log" 2>&1 || { cat "$WORK/broker-start.log" >&2; die "broker did not start"; }

TOPIC=netfault-$$
GROUP=netfault-$$
RUN_ID=netfault-$$-$(date +%s)
HTTP_C=127.0.0.1:$(free_port)
common_env=(PATH="$PATH" LOG_FORMAT=json KAFKA_BOOTSTRAP_SERVER="$BROKER" KAFKA_TOPIC="$TOPIC"
            KAFKA_REQUEST_TIMEOUT_MS=5000 KAFKA_BACKOFF_INITIAL_MS=100 KAFKA_BACKOFF_MAX_MS=2000)

# The topic first (3 partitions), with one record that is not part of the run.
env -i "${common_env[@]}" HTTP_ADDR=127.0.0.1:0 PRODUCER_MESSAGES=1 PRODUCER_RUN_ID="$RUN_ID-warmup" \
    PRODUCER_CREATE_TOPIC=true PRODUCER_TOPIC_PARTITIONS=3 PRODUCER_TIMEOUT_SECS=60 \
    timeout 90 "$BIN_DIR/producer" >"$WORK/producer-warmup.log" 2>&1 ||
    { tail -n 5 "$WORK/producer-warmup.log" >&2; die "could not create the topic through the veth"; }

env -i "${common_env[@]}" HTTP_ADDR="$HTTP_C" KAFKA_CONSUMER_GROUP="$GROUP" \
    CONSUMER_AUTO_OFFSET_RESET=earliest CONSUMER_SESSION_TIMEOUT_MS=6000 \
    CONSUMER_HEARTBEAT_INTERVAL_MS=1000 CONSUMER_COMMIT_INTERVAL_MS=1000 \
    CONSUMER_DRAIN_TIMEOUT_MS=4000 CONSUMER_FETCH_MAX_WAIT_MS=200 CONSUMER_STALL_SECS=5 \
    "$BIN_DIR/consumer" >"$WORK/consumer.log" 2>&1 &
CONSUMER_PID=$!

metric() {  # sum of a metric's samples for our topic (or all, for label-less ones)
    curl -s --max-time 2 "http://$HTTP_C/metrics" 2>/dev/null |
        awk -v m="$1" -v t="topic=\"$TOPIC\"" '
            index($0, m) == 1 && (substr($0, length(m) + 1, 1) == "{" || substr($0, length(m) + 1, 1) == " ") &&
            (index($0, "topic=") == 0 || index($0, t) > 0) { s += $NF }
            END { printf "%d\n", s }'
}
wait_consumer() {  # wait_consumer SECONDS WHAT CMD...: CMD holds while the consumer lives
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    until "$@"; do
        ((SECONDS < deadline)) || die "$what not within ${deadline}s"
        kill -0 "$CONSUMER_PID" 2>/dev/null || die "consumer exited: $(tail -n 3 "$WORK/consumer.log")"
        sleep 0.2
    done
}
consumed_at_least() { (($(metric kafka_consumer_records_consumed_total) >= $1)); }
wait_consumer 60 "consumer handling the warm-up record" consumed_at_least 1
info "consumer is a member and consuming"

# ------------------------------------------------------------------ the run
env -i "${common_env[@]}" HTTP_ADDR=127.0.0.1:0 PRODUCER_MESSAGES="$MESSAGES" PRODUCER_RATE="$RATE" \
    PRODUCER_RUN_ID="$RUN_ID" PRODUCER_KEY_TEMPLATE='key-{seq % 16}' PRODUCER_TIMEOUT_SECS=180 \
    PRODUCER_PROGRESS_SECS=1 \
    "$BIN_DIR/producer" >"$WORK/producer.log" 2>&1 &
PRODUCER_PID=$!
t_start=$(now_ms)
info "producer: $MESSAGES records at $RATE/s"

# Samples /readyz and the records handled every 250 ms into a file:
# "epoch_ms status consumed". (Record log lines carry the record's own
# timestamp, so the log cannot tell when a record was handled.)
(
    for _ in $(seq 1200); do
        printf '%s %s %s\n' "$(now_ms)" \
            "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HTTP_C/readyz" || true)" \
            "$(metric kafka_consumer_records_consumed_total)"
        sleep 0.25
    done
) >"$WORK/readyz.samples" 2>/dev/null &
SAMPLER_PID=$!

sleep 5
info "degrade: ${DELAY_MS} ms each way, ${LOSS_PCT}% packet loss both ways, for ${DEGRADE_SECS}s"
t_degrade=$(now_ms)
echo "$DELAY_MS" >"$WORK/delay_ms"
trouble loss "$LOSS_PCT"
sleep "$DEGRADE_SECS"
t_cut=$(now_ms)
if [[ $CUT_MODE == down ]]; then
    info "cut: link down for ${CUT_SECS}s"
    ip link set "$VETH_H" down
else
    info "cut: every packet dropped both ways for ${CUT_SECS}s"
    trouble cut
fi
sleep "$CUT_SECS"
t_restore=$(now_ms)
trouble off
echo 0 >"$WORK/delay_ms"
ip link set "$VETH_H" up
info "restored"

# ------------------------------------------------------------ the outcome
rc=0
deadline=$((SECONDS + 200))
while kill -0 "$PRODUCER_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
kill -0 "$PRODUCER_PID" 2>/dev/null && die "producer still running 200 s after the restore"
wait "$PRODUCER_PID" || rc=$?
PRODUCER_PID=
summary=$(tail -n 1 "$WORK/producer.log")
acked=$(jq -r '.acked // empty' <<<"$summary" 2>/dev/null || true)
info "producer exited $rc: $(cut -c1-300 <<<"$summary")"
((rc == 0)) || die "producer exit $rc (acked ${acked:-?} of $MESSAGES): $summary"
[[ $acked == "$MESSAGES" ]] || die "producer acked $acked of $MESSAGES"
t_producer_done=$(now_ms)

# Every offset below the high watermarks, read with Kafka's own tool.
offsets=$(KAFKA_LOCAL_DIR="$KDIR" scripts/kafka-tool.sh get-offsets --bootstrap-server "$BROKER" --topic "$TOPIC" 2>"$WORK/get-offsets.err") ||
    die "get-offsets failed: $(cat "$WORK/get-offsets.err")"
total=0
: >"$WORK/expected"
while IFS=: read -r _ p hw; do
    total=$((total + hw))
    ((hw > 0)) && seq 0 $((hw - 1)) | sed "s/^/$p /" >>"$WORK/expected"
done <<<"$offsets"
sort -u "$WORK/expected" -o "$WORK/expected"
info "broker high watermarks: $(tr '\n' ' ' <<<"$offsets")(total $total)"

# The topic read back with Kafka's console consumer: each demo seq of the
# run once (the idempotent producer's retries wrote nothing twice).
KAFKA_LOCAL_DIR="$KDIR" scripts/kafka-tool.sh console-consumer --bootstrap-server "$BROKER" \
    --topic "$TOPIC" --from-beginning --max-messages "$total" --timeout-ms 60000 \
    >"$WORK/console.out" 2>"$WORK/console.err" || true
jq -r --arg r "$RUN_ID" 'select(.run_id == $r) | .seq' "$WORK/console.out" 2>/dev/null |
    sort -n >"$WORK/console.seqs" || true
console_read=$(wc -l <"$WORK/console.out")
console_dups=$(($(wc -l <"$WORK/console.seqs") - $(sort -u "$WORK/console.seqs" | wc -l)))
console_missing=$(comm -23 <(seq 0 $((MESSAGES - 1)) | sort) <(sort -u "$WORK/console.seqs") | wc -l)

logged_pairs() {
    jq -r 'select(.message == "record") | "\(.partition) \(.offset)"' "$WORK/consumer.log" 2>/dev/null
}
all_handled() {
    logged_pairs | sort -u >"$WORK/logged"
    [[ $(wc -l <"$WORK/logged") -ge $total ]]
}
wait_consumer 120 "consumer handling every record" all_handled
t_consumer_done=$(now_ms)
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=

missing=$(comm -23 "$WORK/expected" "$WORK/logged" | wc -l)
extra=$(comm -13 "$WORK/expected" "$WORK/logged" | wc -l)
lines=$(logged_pairs | wc -l)
redelivered=$((lines - $(wc -l <"$WORK/logged")))
producer_dups=$((total - 1 - MESSAGES))  # minus the warm-up record
demo=$(metric kafka_consumer_demo_records_total)
demo_dups=$(metric kafka_consumer_demo_duplicates_total)
gaps=$(metric kafka_consumer_demo_gaps)
rebalances=$(metric kafka_consumer_rebalances_total)
errors=$(metric kafka_consumer_errors_total)

# Recovery after the restore: the first record the consumer handled, the
# first producer progress line with more acks, /readyz back to 200.
consumed_at_restore=$(awk -v t="$t_restore" '$1 <= t {c = $3} END {print c + 0}' "$WORK/readyz.samples")
first_record_after=$(awk -v t="$t_restore" -v c="$consumed_at_restore" '$1 > t && $3 > c {print $1; exit}' "$WORK/readyz.samples")
acks_before=$(jq -r --argjson t "$t_restore" '
    select(.acked != null) | (.timestamp | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601) as $s
    | (.timestamp | capture("\\.(?<f>[0-9]{3})").f | tonumber) as $ms
    | select($s * 1000 + $ms <= $t) | .acked' "$WORK/producer.log" | tail -n 1 || true)
producer_resumed=$(jq -r --argjson t "$t_restore" --argjson a "${acks_before:-0}" '
    select(.acked != null and .acked > $a) | (.timestamp | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601) as $s
    | (.timestamp | capture("\\.(?<f>[0-9]{3})").f | tonumber) as $ms
    | ($s * 1000 + $ms) | select(. >= $t)' "$WORK/producer.log" | head -n 1 || true)
ready_again=$(awk -v t="$t_restore" '$1 >= t && $2 == 200 {print $1; exit}' "$WORK/readyz.samples")
not_ready=$(awk -v a="$t_cut" -v b="$t_restore" '$1 >= a && $1 <= b + 5000 && $2 != 200 {n++} END {print n + 0}' "$WORK/readyz.samples")
secs() { [[ -n $1 ]] && awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f s", (a - b) / 1000}' || echo "n/a"; }

kill -TERM "$CONSUMER_PID"
crc=0
for _ in $(seq 100); do kill -0 "$CONSUMER_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$CONSUMER_PID" 2>/dev/null && die "consumer did not stop within 10 s of SIGTERM"
wait "$CONSUMER_PID" || crc=$?
CONSUMER_PID=

report=$(cat <<EOF
network fault (CUT_MODE=$CUT_MODE): degrade ${DEGRADE_SECS}s (${DELAY_MS} ms each way, ${LOSS_PCT}% loss), cut ${CUT_SECS}s, then restored
  producer: exit $rc, acked $acked of $MESSAGES, done $(secs "$t_producer_done" "$t_start") after start; acks resumed $(secs "$producer_resumed" "$t_restore") after the restore
  broker: $total records in $TOPIC (1 warm-up), producer-retry duplicates $producer_dups; console consumer read $console_read, duplicates $console_dups, missing $console_missing
  consumer: handled $(wc -l <"$WORK/logged") distinct (partition, offset) of $total, missing $missing, unknown $extra, redelivered $redelivered; demo records $demo, demo duplicates $demo_dups, gaps $gaps; rebalances $rebalances, errors $errors; exit $crc on SIGTERM
  recovery: records handled again $(secs "$first_record_after" "$t_restore") after the restore, /readyz 200 again $(secs "$ready_again" "$t_restore") after it ($not_ready non-200 samples during the cut), all handled $(secs "$t_consumer_done" "$t_restore") after it
EOF
)
echo "$report"
[[ -z ${REPORT:-} ]] || printf '%s\n' "$report" >>"$REPORT"
: "$t_degrade"

((producer_dups == 0)) || die "$producer_dups records written twice (idempotent producer)"
((console_dups == 0 && console_missing == 0)) || die "console consumer: $console_dups duplicated, $console_missing missing demo seqs"
((missing == 0)) || die "$missing records never handled: $(comm -23 "$WORK/expected" "$WORK/logged" | head -n 5 | tr '\n' ',')"
((extra == 0)) || die "$extra offsets handled that the broker does not have"
((gaps == 0)) || die "demo gaps $gaps"
((demo - demo_dups >= MESSAGES)) || die "only $((demo - demo_dups)) distinct demo records of $MESSAGES"
((crc == 0)) || die "consumer exit $crc on SIGTERM"
ok=1
echo "netns-fault: OK"
