#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (issue 8).
#
#   scripts/fuzz.sh [TARGET...]     (make fuzz; default: every target in fuzz/Cargo.toml)
#
# Needs the nightly toolchain (`cargo +nightly`); installs cargo-fuzz with
# `cargo install --locked` when it is missing. Each target starts from its
# committed seeds (fuzz/seeds/TARGET, read only) plus what earlier runs
# found (fuzz/corpus/TARGET, git-ignored), with a dictionary where one
# exists (fuzz/dicts/). A crash, a timeout or an out-of-memory stops that
# target, leaves the input in fuzz/artifacts/TARGET/ and fails the run; the
# others still run. Prints executions/s and total runs per target; the
# libFuzzer output of the last run is in fuzz/artifacts/logs/TARGET.log.
#
# Environment: FUZZ_SECONDS (60 per target), FUZZ_JOBS (1), FUZZ_SANITIZER
# (address; `none` runs faster), FUZZ_TIMEOUT (10 s per input),
# FUZZ_RSS_MB (2048), REPORT (file to append the table to).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
CARGO_FUZZ_VERSION=0.13.2

if ! [[ $FUZZ_SECONDS =~ ^[1-9][0-9]*$ ]]; then die "FUZZ_SECONDS must be a positive number"; fi
cargo +nightly --version >/dev/null 2>&1 ||
    die "the nightly toolchain is missing (rustup toolchain install nightly --profile minimal)"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
((${#targets[@]} > 0)) || die "no fuzz targets"

dict_for() {
    case $1 in
        config | config_file) echo fuzz/dicts/config.dict ;;
        demo_record | producer_input) echo fuzz/dicts/json.dict ;;
    esac
}

echo "fuzz: building ${targets[*]} (sanitizer $FUZZ_SANITIZER)" >&2
cargo +nightly fuzz build -s "$FUZZ_SANITIZER"

# The last run's libFuzzer output per target (git-ignored).
LOGS=fuzz/artifacts/logs
mkdir -p "$LOGS"
rows=()
failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t" "fuzz/artifacts/$t"
    args=(-max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_TIMEOUT" -rss_limit_mb="$FUZZ_RSS_MB"
          -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/")
    dict=$(dict_for "$t")
    [[ -z $dict ]] || args+=(-dict="$dict")
    echo "fuzz: $t for ${FUZZ_SECONDS}s" >&2
    rc=0
    # A hard stop well past the time limit, in case a target hangs.
    timeout --kill-after=30 $((FUZZ_SECONDS + 300)) \
        cargo +nightly fuzz run -s "$FUZZ_SANITIZER" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- "${args[@]}" \
        >"$LOGS/$t.log" 2>&1 || rc=$?
    runs=$(awk '/stat::number_of_executed_units/ {print $NF}' "$LOGS/$t.log" | tail -n 1)
    eps=$(awk '/stat::average_exec_per_sec/ {print $NF}' "$LOGS/$t.log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+' "$LOGS/$t.log" | tail -n 1 | cut -d' ' -f2)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if ((rc == 0)); then
        status=ok
    else
        status="FAILED (exit $rc)"
        failed+=("$t")
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to|Timeout|out-of-memory' "$LOGS/$t.log" | head -n 10 >&2 || true
        tail -n 30 "$LOGS/$t.log" >&2
    fi
    rows+=("| $t | ${runs:-?} | ${eps:-?} | ${cov:-?} | $corpus | $status |")
done

table=$(
    echo "| target | runs | execs/s | coverage | corpus | result |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
)
echo "$table"
[[ -z ${REPORT:-} ]] || printf '%s\n' "$table" >>"$REPORT"
if ((${#failed[@]})); then
    echo "fuzz: FAILED: ${failed[*]}; inputs in fuzz/artifacts/ (reproduce: cargo +nightly fuzz run TARGET ARTIFACT)" >&2
    exit 1
fi
echo "fuzz: OK (${#targets[@]} targets, ${FUZZ_SECONDS}s each)"
