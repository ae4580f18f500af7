#!/usr/bin/env bash
# `make test`: install what is missing (scripts/install-tools.sh), start the
# real broker, run every test tier and the linters, and stop the broker
# again even when something fails (only when it was started here). A broker
# that does not come up is a failure, never a skip. Prints each tier's time.
#
# Environment: TEST_THREADS (cargo test threads, default 4); TEST_TIERS
# (space-separated subset of the tier names below, default all).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

TIERS=${TEST_TIERS:-install cargo-test doc-test rskafka-unit lint deploy-check k8s-check images monitoring bench-smoke load network cluster}
TIMES=()
tier() { # name command...
    local name=$1 t0=$SECONDS
    shift
    [[ " $TIERS " == *" $name "* ]] || return 0
    step "make test: $name"
    "$@"
    TIMES+=("$(printf '%-13s %5ss' "$name" "$((SECONDS - t0))")")
}
report() { ((${#TIMES[@]} == 0)) || { echo "make test: tier times"; printf '  %s\n' "${TIMES[@]}"; } >&2; }
at_exit report

tier install scripts/install-tools.sh
broker_ensure
# The images tier's base stand-in (Debian rootfs + Rust toolchain, cached) is
# mostly downloads and dpkg: made while the cargo tiers compile.
standin_pid=
if [[ " $TIERS " == *" images "* ]]; then
    mkdir -p target
    scripts/builder-standin.sh >target/builder-standin.log 2>&1 &
    standin_pid=$!
    # shellcheck disable=SC2016 # expanded at exit: empty once waited for
    at_exit 'stop_pid "$standin_pid" 30'
fi
export KAFKA_TEST_BOOTSTRAP=${KAFKA_TEST_BOOTSTRAP:-127.0.0.1:19092}
# Integration tests start several in-process services; a few test threads
# keep a 2-core machine responsive and the broker's group rebalances timely.
# SKIP_BUILD=1: the end-to-end tests run the binaries this same command
# builds first (testkit::process::service_bin), not a second `cargo build -p`.
tier cargo-test env SKIP_BUILD=1 cargo test --workspace --all-targets -- --test-threads="${TEST_THREADS:-4}"
# The later tiers run the debug binaries cargo test just built for the
# integration tests (CARGO_BIN_EXE_*, target/debug): a `cargo build` of them
# would compile again every crate whose features the dev-dependencies widen
# (reqwest, figment, then common and both services).
[[ " $TIERS " != *" cargo-test "* ]] || export SKIP_BUILD=1 BENCH_SKIP_BUILD=1 MONITORING_CHECK_BIN=target/debug
tier doc-test cargo test --workspace --doc
# The vendored rskafka's own unit tests (its decoders; vendor/rskafka/PATCHES.md):
# outside the workspace, so its own lock file and target directory. test_consumer
# waits 1-10 µs for its mock stream and fails on a busy machine (we do not use
# rskafka's StreamConsumer).
tier rskafka-unit cargo test --manifest-path vendor/rskafka/Cargo.toml --lib --target-dir target/rskafka \
    -- --exact --skip client::consumer::tests::test_consumer
tier lint make --no-print-directory lint
# The deployment, offline: deploy.sh's logic with stub docker/kind/kubectl
# (under dash and bash), then the rendered manifests.
tier deploy-check scripts/deploy-check.sh
tier k8s-check scripts/k8s-check.sh
# The Dockerfiles built for real (amd64 and arm64, builder stage included),
# run under runc and qemu against this broker; leaves the host's static
# binaries in target/static for bench smoke's static rows.
if [[ -n $standin_pid ]]; then
    standin_rc=0
    wait "$standin_pid" || standin_rc=$?
    standin_pid=
    ((standin_rc == 0)) || { cat target/builder-standin.log >&2; die "the builder stand-in could not be made (above)"; }
fi
tier images scripts/image-test.sh
tier monitoring scripts/monitoring-check.sh
tier bench-smoke scripts/bench.sh smoke # the benchmark harness with tiny counts; asserts no speed
# The two fault runs that need more than cargo: probes under wrk load while
# the consumer drains a backlog, and the broker behind a degraded then cut
# network (its own broker in a network namespace).
tier load scripts/load-test.sh
tier network scripts/netns-fault.sh
# The 3-broker cluster (its own ports, beside the broker above): kill -9 of a
# leader and of the group coordinator, a rolling restart, two brokers down,
# leader moves, under load.
tier cluster scripts/cluster-test.sh
