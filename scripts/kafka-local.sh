#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for tests
# and demos, run from the official jars on Maven Central (scripts/kafka/pom.xml).
#
#   scripts/kafka-local.sh start|stop|status|env|restart
#
# Listeners (all on 127.0.0.1; port env vars in brackets):
#   PLAINTEXT      19092  [KAFKA_LOCAL_PLAINTEXT_PORT]       also inter-broker
#   SASL_PLAINTEXT 19093  [KAFKA_LOCAL_SASL_PLAINTEXT_PORT]  PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
#   SSL            19094  [KAFKA_LOCAL_SSL_PORT]             client cert requested, not required
#   SASL_SSL       19095  [KAFKA_LOCAL_SASL_SSL_PORT]        PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
#   CONTROLLER     19099  [KAFKA_LOCAL_CONTROLLER_PORT]      KRaft only
# Users (PLAIN and both SCRAM mechanisms): demo/demo-secret, admin/admin-secret.
#
# Environment:
#   KAFKA_LOCAL_DIR            state dir (default ${TMPDIR:-/tmp}/kafka-local-$(id -u))
#   KAFKA_LOCAL_KEEP=1         stop/restart keep the state dir (data, certs, users)
#   KAFKA_LOCAL_START_TIMEOUT  seconds to wait for the broker (default 90)
#   KAFKA_LOCAL_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (default 30)
#   KAFKA_LOCAL_HEAP_OPTS      broker heap (default -Xms256m -Xmx512m)
#   KAFKA_LOCAL_LOG_LEVEL      broker log4j2 root level (default WARN)
#   KAFKA_LOCAL_CACHE_DIR      where the resolved classpath is cached (default:
#                              the state dir; point it elsewhere, e.g.
#                              ~/.cache/kafka-local, to skip Maven after a stop)
#
# Files in the state dir: env (KEY=value, sourceable, GITHUB_ENV-compatible),
# client-*.properties (for --command-config / --consumer.config / ...),
# tls/{ca,broker,client}{,-key}.pem, kafka.out (stdout/stderr), logs/server.log.
#
# Internal subcommands used by scripts/kafka-tool.sh: classpath, tool-jvm-args.
set -euo pipefail
shopt -s inherit_errexit

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
POM="$SCRIPT_DIR/kafka/pom.xml"

DIR=${KAFKA_LOCAL_DIR:-${TMPDIR:-/tmp}/kafka-local-$(id -u)}
DIR=${DIR%/}
[[ $DIR == /* ]] || DIR="$PWD/$DIR"   # the broker and tools get absolute paths
CACHE_DIR=${KAFKA_LOCAL_CACHE_DIR:-$DIR}
[[ $CACHE_DIR == /* ]] || CACHE_DIR="$PWD/$CACHE_DIR"
HOST=127.0.0.1
PLAINTEXT_PORT=${KAFKA_LOCAL_PLAINTEXT_PORT:-19092}
SASL_PLAINTEXT_PORT=${KAFKA_LOCAL_SASL_PLAINTEXT_PORT:-19093}
SSL_PORT=${KAFKA_LOCAL_SSL_PORT:-19094}
SASL_SSL_PORT=${KAFKA_LOCAL_SASL_SSL_PORT:-19095}
CONTROLLER_PORT=${KAFKA_LOCAL_CONTROLLER_PORT:-19099}
START_TIMEOUT=${KAFKA_LOCAL_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_LOCAL_STOP_TIMEOUT:-30}
HEAP_OPTS=${KAFKA_LOCAL_HEAP_OPTS:--Xms256m -Xmx512m}
LOG_LEVEL=${KAFKA_LOCAL_LOG_LEVEL:-WARN}

USER_NAME=demo
USER_PASSWORD=demo-secret
ADMIN_NAME="admin"
ADMIN_PASSWORD=admin-secret

TLS="$DIR/tls"
DATA="$DIR/data"
PID_FILE="$DIR/kafka.pid"
OUT_FILE="$DIR/kafka.out"
SERVER_LOG="$DIR/logs/server.log"
CONFIG="$DIR/server.properties"
ENV_FILE="$DIR/env"

die() { echo "kafka-local: $*" >&2; exit 1; }
info() { echo "kafka-local: $*" >&2; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

now_ms() {
    local t
    t=$(date +%s%3N)
    [[ $t =~ ^[0-9]+$ ]] || t=$(($(date +%s) * 1000))  # BSD date has no %N
    echo "$t"
}

sha256() {
    if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi
}

# ---------------------------------------------------------------- classpath

# Prints the broker/tools classpath. Resolved with Maven once per pom content
# (file name keyed by the pom's sha256), offline first so a warm ~/.m2 needs no
# network; written atomically so concurrent callers are safe.
classpath() {
    command -v java >/dev/null || die "java not found (Java 17+ required)"
    local hash cp_file tmp jar ok=1
    hash=$(sha256 "$POM" | cut -c1-16)
    cp_file="$CACHE_DIR/classpath-$hash.txt"
    if [[ -s $cp_file ]]; then
        # ~/.m2 may have been cleaned since: check the jars are still there.
        local -a jars
        IFS=: read -r -a jars <"$cp_file" || true  # no trailing newline
        for jar in "${jars[@]}"; do [[ -f $jar ]] || { ok=0; break; }; done
        if ((ok)); then cat "$cp_file"; return; fi
    fi
    command -v mvn >/dev/null || die "mvn not found (Maven 3.8+ required)"
    mkdir -p "$CACHE_DIR"
    tmp=$(mktemp "$CACHE_DIR/.classpath.XXXXXX")
    info "resolving Kafka jars with Maven ($POM)"
    if ! mvn -q -B -o -f "$POM" dependency:build-classpath \
            -Dmdep.outputFile="$tmp" >"$tmp.log" 2>&1 || [[ ! -s $tmp ]]; then
        if ! mvn -q -B -f "$POM" dependency:build-classpath \
                -Dmdep.outputFile="$tmp" >"$tmp.log" 2>&1 || [[ ! -s $tmp ]]; then
            tail -n 30 "$tmp.log" >&2 || true
            rm -f "$tmp" "$tmp.log"
            die "mvn dependency:build-classpath failed for $POM"
        fi
    fi
    rm -f "$tmp.log"
    mv -f "$tmp" "$cp_file"
    cat "$cp_file"
}

write_tools_log4j() {
    # Tools log WARN and above to stderr only: stdout stays clean for
    # console-consumer output and scripting.
    mkdir -p "$DIR"
    [[ -s $DIR/tools-log4j2.properties ]] && return
    cat >"$DIR/tools-log4j2.properties.tmp" <<'EOF'
status = warn
shutdownHook = disable
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = STDERR
EOF
    mv -f "$DIR/tools-log4j2.properties.tmp" "$DIR/tools-log4j2.properties"
}

# One JVM argument per line, for scripts/kafka-tool.sh.
tool_jvm_args() {
    local cp
    cp=$(classpath)
    write_tools_log4j
    printf '%s\n' -cp "$cp" "-Dlog4j2.configurationFile=$DIR/tools-log4j2.properties"
}

# Runs a Kafka tool class from the jars (used for format and readiness).
run_tool() {
    local cls=$1; shift
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -cp "$CP" "-Dlog4j2.configurationFile=$DIR/tools-log4j2.properties" \
        "$cls" "$@"
}

# ---------------------------------------------------------------- process

# Prints the broker pid if our broker (kafka.Kafka with our config) is alive.
broker_pid() {
    local pid
    [[ -r $PID_FILE ]] || return 1
    pid=$(<"$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        # Guard against pid reuse: must be kafka.Kafka with this config.
        tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF "$CONFIG" || return 1
    fi
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

all_ports() {
    echo "$PLAINTEXT_PORT $SASL_PLAINTEXT_PORT $SSL_PORT $SASL_SSL_PORT $CONTROLLER_PORT"
}

print_addresses() {
    cat <<EOF
PLAINTEXT      $HOST:$PLAINTEXT_PORT
SASL_PLAINTEXT $HOST:$SASL_PLAINTEXT_PORT  (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; $USER_NAME/$USER_PASSWORD)
SSL            $HOST:$SSL_PORT  (CA $TLS/ca.pem; client cert optional)
SASL_SSL       $HOST:$SASL_SSL_PORT  (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; $USER_NAME/$USER_PASSWORD)
env file       $ENV_FILE
EOF
}

log_tail() {
    local f
    for f in "$OUT_FILE" "$SERVER_LOG"; do
        [[ -s $f ]] || continue
        echo "----- last lines of $f -----" >&2
        tail -n 40 "$f" >&2
    done
}

# ---------------------------------------------------------------- TLS

gen_tls() {
    local f missing=0
    for f in ca.pem ca-key.pem broker.pem broker-key.pem client.pem client-key.pem \
             broker-keystore.pem client-keystore.pem; do
        [[ -s $TLS/$f ]] || missing=1
    done
    ((missing)) || return 0
    command -v openssl >/dev/null || die "openssl not found"
    local t
    t=$(mktemp -d "$DIR/.tls.XXXXXX")
    (
        set -e
        cd "$t"
        umask 077
        serial() { echo "0x$(openssl rand -hex 15)"; }
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca-key.pem
        openssl req -x509 -new -key ca-key.pem -sha256 -days 3650 -set_serial "$(serial)" \
            -subj "/CN=kafka-local CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -addext "subjectKeyIdentifier=hash" \
            -out ca.pem
        # name, subject, extensions
        leaf() {
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1-key.pem"
            openssl req -new -key "$1-key.pem" -subj "$2" -out "$1.csr"
            printf '%s\n' "$3" >"$1.ext"
            openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -sha256 -days 825 \
                -set_serial "$(serial)" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
            # Kafka's PEM keystore (ssl.keystore.location): PKCS#8 key + chain.
            cat "$1-key.pem" "$1.pem" >"$1-keystore.pem"
            rm -f "$1.csr" "$1.ext"
        }
        leaf broker "/CN=localhost" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"
        leaf client "/CN=$USER_NAME" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"
        openssl verify -CAfile ca.pem broker.pem client.pem >/dev/null
        chmod 644 ca.pem broker.pem client.pem
    ) || { rm -rf "$t"; die "TLS material generation failed"; }
    rm -rf "$TLS"
    mv "$t" "$TLS"
    chmod 755 "$TLS"
}

# ---------------------------------------------------------------- config

write_config() {
    local sasl_mechs="PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    local plain_jaas scram_jaas l
    plain_jaas="org.apache.kafka.common.security.plain.PlainLoginModule required user_$USER_NAME=\"$USER_PASSWORD\" user_$ADMIN_NAME=\"$ADMIN_PASSWORD\";"
    scram_jaas="org.apache.kafka.common.security.scram.ScramLoginModule required;"
    {
        cat <<EOF
# generated by scripts/kafka-local.sh; rewritten on every start
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$PLAINTEXT_PORT,SASL_PLAINTEXT://$HOST:$SASL_PLAINTEXT_PORT,SSL://$HOST:$SSL_PORT,SASL_SSL://$HOST:$SASL_SSL_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PLAINTEXT_PORT,SASL_PLAINTEXT://$HOST:$SASL_PLAINTEXT_PORT,SSL://$HOST:$SSL_PORT,SASL_SSL://$HOST:$SASL_SSL_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA

# SASL (JAAS per listener and mechanism; SCRAM users are created at format time)
sasl.enabled.mechanisms=$sasl_mechs
EOF
        for l in sasl_plaintext sasl_ssl; do
            cat <<EOF
listener.name.$l.sasl.enabled.mechanisms=$sasl_mechs
listener.name.$l.plain.sasl.jaas.config=$plain_jaas
listener.name.$l.scram-sha-256.sasl.jaas.config=$scram_jaas
listener.name.$l.scram-sha-512.sasl.jaas.config=$scram_jaas
EOF
        done
        cat <<EOF

# TLS (PEM files, no JKS/PKCS12)
ssl.keystore.type=PEM
ssl.keystore.location=$TLS/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
listener.name.ssl.ssl.client.auth=requested

# small single node
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
    } >"$CONFIG.tmp"
    mv -f "$CONFIG.tmp" "$CONFIG"

    cat >"$DIR/log4j2.properties" <<EOF
status = warn
shutdownHook = disable
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $SERVER_LOG
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = $LOG_LEVEL
rootLogger.appenderRef.file.ref = FILE
EOF
}

write_client_files() {
    local scram512 plain  # SCRAM login module is the same for 256 and 512
    scram512="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$USER_NAME\" password=\"$USER_PASSWORD\";"
    plain="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"$USER_NAME\" password=\"$USER_PASSWORD\";"
    local trust="ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem"
    printf '%s\n' "security.protocol=PLAINTEXT" >"$DIR/client-plaintext.properties"
    printf '%s\n' "security.protocol=SASL_PLAINTEXT" "sasl.mechanism=SCRAM-SHA-512" \
        "sasl.jaas.config=$scram512" >"$DIR/client-sasl-scram512.properties"
    printf '%s\n' "security.protocol=SASL_PLAINTEXT" "sasl.mechanism=SCRAM-SHA-256" \
        "sasl.jaas.config=$scram512" >"$DIR/client-sasl-scram256.properties"
    printf '%s\n' "security.protocol=SASL_PLAINTEXT" "sasl.mechanism=PLAIN" \
        "sasl.jaas.config=$plain" >"$DIR/client-sasl-plain.properties"
    printf '%s\n' "security.protocol=SSL" "$trust" >"$DIR/client-ssl.properties"
    printf '%s\n' "security.protocol=SSL" "$trust" "ssl.keystore.type=PEM" \
        "ssl.keystore.location=$TLS/client-keystore.pem" >"$DIR/client-ssl-mtls.properties"
    printf '%s\n' "security.protocol=SASL_SSL" "sasl.mechanism=SCRAM-SHA-512" \
        "sasl.jaas.config=$scram512" "$trust" >"$DIR/client-sasl-ssl-scram512.properties"
    printf '%s\n' "security.protocol=SASL_SSL" "sasl.mechanism=PLAIN" \
        "sasl.jaas.config=$plain" "$trust" >"$DIR/client-sasl-ssl-plain.properties"
}

write_env() {
    cat >"$ENV_FILE.tmp" <<EOF
KAFKA_LOCAL_DIR=$DIR
KAFKA_LOCAL_PLAINTEXT=$HOST:$PLAINTEXT_PORT
KAFKA_LOCAL_SASL_PLAINTEXT=$HOST:$SASL_PLAINTEXT_PORT
KAFKA_LOCAL_SSL=$HOST:$SSL_PORT
KAFKA_LOCAL_SASL_SSL=$HOST:$SASL_SSL_PORT
KAFKA_LOCAL_CA=$TLS/ca.pem
KAFKA_LOCAL_CLIENT_CERT=$TLS/client.pem
KAFKA_LOCAL_CLIENT_KEY=$TLS/client-key.pem
KAFKA_LOCAL_USER=$USER_NAME
KAFKA_LOCAL_PASSWORD=$USER_PASSWORD
KAFKA_LOCAL_ADMIN_USER=$ADMIN_NAME
KAFKA_LOCAL_ADMIN_PASSWORD=$ADMIN_PASSWORD
KAFKA_LOCAL_SASL_MECHANISMS=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
EOF
    mv -f "$ENV_FILE.tmp" "$ENV_FILE"
}

format_storage() {
    [[ -s $DATA/meta.properties ]] && return 0
    local cluster_id
    # 16 random bytes, URL-safe base64 without padding: a Kafka Uuid.
    # (Kafka never issues one starting with '-': it would parse as an option.)
    cluster_id=-
    while [[ $cluster_id == -* ]]; do
        cluster_id=$(openssl rand -base64 16 | tr '+/' '-_' | tr -d '=\n')
    done
    mkdir -p "$DATA"
    local -a scram=()
    local mech u
    for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
        for u in "$USER_NAME=$USER_PASSWORD" "$ADMIN_NAME=$ADMIN_PASSWORD"; do
            scram+=(--add-scram "$mech=[name=${u%%=*},password=${u#*=}]")
        done
    done
    if ! run_tool kafka.tools.StorageTool format --config "$CONFIG" \
            --cluster-id "$cluster_id" --standalone "${scram[@]}" \
            >"$DIR/format.log" 2>&1; then
        cat "$DIR/format.log" >&2
        die "kafka-storage format failed"
    fi
}

# ---------------------------------------------------------------- commands

cmd_start() {
    local t0 pid
    t0=$(now_ms)
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    lock
    if pid=$(broker_pid); then
        info "already running (pid $pid)"
        print_addresses
        return 0
    fi
    rm -f "$PID_FILE"
    local p
    for p in $(all_ports); do
        port_open "$p" && die "port $HOST:$p is already in use by another process (set KAFKA_LOCAL_*_PORT)"
    done

    CP=$(classpath)
    write_tools_log4j
    gen_tls
    mkdir -p "$DIR/logs"
    write_config
    write_client_files
    format_storage

    local -a jvm
    read -r -a jvm <<<"$HEAP_OPTS"
    jvm+=(-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
          -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
          "-Dlog4j2.configurationFile=$DIR/log4j2.properties"
          "-Dkafka.logs.dir=$DIR/logs")
    # setsid: own session, so the broker survives the caller's terminal/job
    # control; nohup+setsid exec in place, so $! is the java pid. Inherited
    # descriptors other than stdio are closed: the lock (fd 9) must not be
    # held by the broker, nor a CI runner's pipes.
    (
        exec 9>&-
        for fd in "/proc/$BASHPID/fd/"*; do
            fd=${fd##*/}
            if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then eval "exec $fd>&-"; fi
        done
        setsid=()
        command -v setsid >/dev/null && setsid=(setsid)  # absent on macOS
        exec "${setsid[@]}" nohup java "${jvm[@]}" -cp "$CP" kafka.Kafka "$CONFIG" \
            >"$OUT_FILE" 2>&1 </dev/null
    ) &
    pid=$!
    echo "$pid" >"$PID_FILE"

    # Wait until a metadata round trip succeeds (TopicCommand --list, Kafka's
    # own admin client) and all listener ports accept connections. The probe
    # JVM is launched right away and retries the connection itself, so its
    # own startup overlaps the broker's.
    printf '%s\n' "default.api.timeout.ms=$((START_TIMEOUT * 1000))" \
        request.timeout.ms=1000 reconnect.backoff.ms=50 reconnect.backoff.max.ms=250 \
        retry.backoff.ms=100 retry.backoff.max.ms=250 >"$DIR/ready.properties"
    local deadline=$((SECONDS + START_TIMEOUT)) up=0 probe=
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            [[ -z $probe ]] || kill "$probe" 2>/dev/null || true
            log_tail; rm -f "$PID_FILE"
            die "broker exited during startup"
        fi
        if [[ -z $probe ]]; then
            run_tool org.apache.kafka.tools.TopicCommand --list \
                --bootstrap-server "$HOST:$PLAINTEXT_PORT" \
                --command-config "$DIR/ready.properties" >"$DIR/ready.log" 2>&1 &
            probe=$!
        elif ! kill -0 "$probe" 2>/dev/null; then
            if wait "$probe"; then
                up=1
                for p in $(all_ports); do port_open "$p" || { up=0; break; }; done
                ((up)) && break
            else
                probe=  # failed early: start another one
            fi
        fi
        sleep 0.1
    done
    if ((!up)); then
        [[ -z $probe ]] || kill "$probe" 2>/dev/null || true
        log_tail
        [[ -s $DIR/ready.log ]] && { echo "----- readiness probe -----"; tail -n 10 "$DIR/ready.log"; } >&2
        die "broker did not come up within ${START_TIMEOUT}s (still running as pid $pid; '$0 stop' to clean up)"
    fi

    write_env
    info "started (pid $pid) in $(( $(now_ms) - t0 )) ms; state dir $DIR"
    print_addresses
}

cmd_stop() {
    local pid
    if [[ -d $DIR ]]; then
        lock
        if pid=$(broker_pid); then
            kill -TERM "$pid" 2>/dev/null || true
            local deadline=$((SECONDS + STOP_TIMEOUT))
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then
                info "broker (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s, sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
            fi
            info "stopped (pid $pid)"
        else
            info "not running"
        fi
        rm -f "$PID_FILE" "$ENV_FILE"
        if [[ ${KAFKA_LOCAL_KEEP:-0} == 1 ]]; then
            info "kept state dir $DIR"
        else
            rm -rf "$DIR"
        fi
    else
        info "not running"
    fi
}

cmd_status() {
    local pid
    if pid=$(broker_pid) && port_open "$PLAINTEXT_PORT"; then
        echo "kafka-local: running (pid $pid), PLAINTEXT $HOST:$PLAINTEXT_PORT, env $ENV_FILE"
        return 0
    fi
    echo "kafka-local: not running ($DIR)"
    return 1
}

cmd_env() {
    [[ -s $ENV_FILE ]] || die "no env file: broker not started ($ENV_FILE)"
    cat "$ENV_FILE"
}

# Serialises start/stop/restart (e.g. parallel CI steps) when flock exists.
lock() {
    command -v flock >/dev/null || return 0
    exec 9>"$DIR/.lock"
    flock -w $((START_TIMEOUT + STOP_TIMEOUT + 60)) 9 || die "could not lock $DIR/.lock"
}

main() {
    [[ $# -ge 1 ]] || usage
    local cmd=$1; shift
    [[ $# -eq 0 ]] || usage
    case $cmd in
        start) cmd_start ;;
        stop) cmd_stop ;;
        restart) cmd_stop; cmd_start ;;
        status) cmd_status ;;
        env) cmd_env ;;
        classpath) classpath ;;
        tool-jvm-args) tool_jvm_args ;;
        -h|--help|help) usage ;;
        *) usage ;;
    esac
}

main "$@"
