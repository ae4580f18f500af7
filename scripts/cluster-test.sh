#!/usr/bin/env bash
# `make test-cluster` (a tier of `make test`): the faults of a 3-broker
# cluster under load (e2e/tests/cluster/). Uses the cluster of
# scripts/kafka-cluster.sh when it runs; else starts it (while the tests
# compile) and stops it at exit (KEEP_CLUSTER=1 keeps it). The tests run one
# at a time: each takes brokers down and leaves the cluster healthy.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

start_pid=
if scripts/kafka-cluster.sh status >/dev/null 2>&1; then
    info "using the 3-broker cluster that is already running"
else
    mkdir -p target
    scripts/kafka-cluster.sh start >target/kafka-cluster-start.log 2>&1 &
    start_pid=$!
    # shellcheck disable=SC2016 # expanded when the exit handler runs
    [[ ${KEEP_CLUSTER:-0} == 1 ]] || at_exit 'scripts/kafka-cluster.sh stop >/dev/null 2>&1'
fi
# --workspace, not -p e2e: the same features as `make test`'s cargo-test
# tier, so its build is used as it is instead of compiled again.
cargo test --workspace --test cluster --no-run
# The binaries the tests run, built as testkit::process::service_bin does
# (SKIP_BUILD=1 in `make test`: the cargo-test tier built them).
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    for bin in producer consumer; do cargo build -p "$bin" --bin "$bin"; done
fi
if [[ -n $start_pid ]]; then
    wait "$start_pid" || { cat target/kafka-cluster-start.log >&2; die "the 3-broker cluster did not start"; }
    cat target/kafka-cluster-start.log >&2
fi
cargo test --workspace --test cluster -- --test-threads=1 --nocapture
