#!/usr/bin/env bash
# Benchmarks (issue 7): our producer and consumer against Kafka's own perf
# tools, librdkafka (kcat, confluent-kafka) and kafka-python, on one local
# broker in one run. See BENCHMARKS.md for the method and the results.
#
#   scripts/bench.sh full  [bench.py args]   make bench: release build, waits for a
#                                            quiet machine, writes docs/bench/results.json,
#                                            BENCHMARKS.md and docs/bench/*.png
#   scripts/bench.sh smoke [bench.py args]   make bench-smoke: tiny counts, debug build,
#                                            asserts only that every tool ran (seconds);
#                                            output in target/bench-smoke
#   scripts/bench.sh rebalance [rebalance.py args]
#                                            make bench-rebalance: the rebalance-pause table
#                                            (issue 15; ours and the Java consumer, eager range,
#                                            cooperative-sticky, KIP-848; ~10 min): writes
#                                            docs/bench/rebalance.json and its BENCHMARKS.md
#                                            section. The full run includes it (BENCH_REBALANCE=0:
#                                            not).
#
# Needs kcat and GNU time (apt-get install kcat time), Java 17 and Maven (the
# broker and Kafka's tools), python3; the Python clients and matplotlib are
# installed into a venv on first use (bench/requirements.txt).
#
# Environment: BENCH_VENV (default ${KIND_KAFKA_TOOLS:-~/.cache/kind-kafka-rs}/bench-venv),
# BENCH_SKIP_BUILD=1 (use the binaries as they are), BENCH_QUIET_WAIT_SECS
# (full: how long to wait for a quiet machine, default 1800), BENCH_QUIET_LOAD
# (1-minute load average counted as quiet, default 1.0); BENCH_STATIC_DIR (static
# musl binaries, default target/static); the BENCH_* sizes
# of bench/bench.py; rebalance: BENCH_REBALANCE_BIN_DIR (default target/release;
# target/debug builds the debug binaries), BENCH_REBALANCE_RATE (records/s, 300),
# BENCH_REBALANCE_ROWS (e.g. ours/range,java/consumer; default all six). A broker
# already running is used, else one is started and stopped again.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

mode=${1:-full}
[[ $# -gt 0 ]] && shift
case $mode in
    full) bin_dir=target/release; budget=${BENCH_BUDGET_SECS:-5400} ;;
    smoke) bin_dir=target/debug; budget=${BENCH_BUDGET_SECS:-240} ;;
    rebalance) bin_dir=${BENCH_REBALANCE_BIN_DIR:-target/release} ;;
    -h|--help|help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "bench: unknown mode '$mode' (full, smoke or rebalance)" >&2; exit 2 ;;
esac

need kcat java python3 -- "scripts/install-tools.sh installs kcat; Java 17 is a prerequisite"
[[ -x /usr/bin/time ]] || die "GNU time missing (apt-get install -y time)"

VENV=${BENCH_VENV:-${KIND_KAFKA_TOOLS:-$HOME/.cache/kind-kafka-rs}/bench-venv}
if ! "$VENV/bin/python" -c 'import confluent_kafka, kafka, lz4, matplotlib' 2>/dev/null; then
    echo "bench: installing the Python clients into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r bench/requirements.txt
fi

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    if [[ $bin_dir == target/release ]]; then
        cargo build --release -p producer -p consumer
    else
        cargo build -q -p producer -p consumer
    fi
fi

broker_ensure

# Figures taken while compilers run are worth little on 2 cores: wait (up
# to BENCH_QUIET_WAIT_SECS) for a quiet machine; the report gives the load.
if [[ $mode == full ]]; then
    wait_max=${BENCH_QUIET_WAIT_SECS:-1800}
    quiet_load=${BENCH_QUIET_LOAD:-1.0}
    waited=0
    while :; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        compiling=0
        for c in cargo rustc cc1 cc1plus javac mvn; do
            compiling=$((compiling + $(pgrep -cx "$c" || true)))
        done
        if awk -v l="$load" -v q="$quiet_load" 'BEGIN {exit !(l < q)}' && ((compiling == 0)); then
            break
        fi
        if ((waited >= wait_max)); then
            echo "bench: machine still busy after ${waited} s (load $load, $compiling compiler processes); running anyway" >&2
            break
        fi
        echo "bench: waiting for a quiet machine (load $load, $compiling compiler processes; ${waited}/${wait_max} s)" >&2
        sleep 60
        waited=$((waited + 60))
    done
fi

py=$VENV/bin/python
# Six rows of about 1.5 min each (KIP-848's rows wait out the broker's
# 45 s session timeout); the Java members start a JVM each.
rebalance() {
    timeout --signal=TERM --kill-after=60 1800 \
        "$py" bench/rebalance.py --bin-dir "$1" --out docs/bench/rebalance.json "${@:2}"
}
if [[ $mode == full ]]; then
    out=docs/bench
    timeout --signal=TERM --kill-after=60 $((budget + 600)) \
        "$py" bench/bench.py --mode full --bin-dir "$bin_dir" --out "$out" "$@"
    if [[ ${BENCH_REBALANCE:-1} != 0 ]]; then
        rebalance "$bin_dir" || echo "bench: the rebalance benchmark failed; BENCHMARKS.md keeps its last results" >&2
    fi
    "$py" bench/report.py "$out/results.json" --markdown BENCHMARKS.md --charts "$out" --chart-prefix docs/bench \
        --rebalance "$out/rebalance.json"
elif [[ $mode == rebalance ]]; then
    rebalance "$bin_dir" "$@"
    # Only the new section changes: the charts of the last full run are
    # drawn again into a scratch directory, not over the committed ones.
    "$py" bench/report.py docs/bench/results.json --markdown BENCHMARKS.md --charts target/bench-rebalance/charts \
        --chart-prefix docs/bench --rebalance docs/bench/rebalance.json
else
    out=target/bench-smoke
    start=$SECONDS
    timeout --signal=TERM --kill-after=30 $((budget + 60)) \
        "$py" bench/bench.py --mode smoke --bin-dir "$bin_dir" --out "$out" "$@"
    "$py" bench/report.py "$out/results.json" --markdown "$out/BENCHMARKS.md" --charts "$out" --chart-prefix .
    echo "bench: smoke run passed in $((SECONDS - start)) s (report: $out/BENCHMARKS.md)"
fi
