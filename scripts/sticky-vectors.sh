#!/usr/bin/env bash
# Regenerates the conformance vectors of our sticky and cooperative-sticky
# assignors with Apache Kafka's own assignor classes.
#
#   scripts/sticky-vectors.sh        (make sticky-vectors)
#
# Runs scripts/sticky-vectors/StickyVectors.java (Java 17+, no build step)
# on the kafka-clients jar that scripts/kafka/pom.xml pins, resolved by
# scripts/kafka-tool.sh; no broker is needed. Writes
# group/tests/data/sticky-vectors.jsonl, which the unit test
# assignor::sticky::vectors reads (cargo test -p kafka-group --lib sticky).
# The cases derive from a fixed seed, so the same jar gives the same file:
# after a Kafka upgrade, a diff here is a change in Kafka's assignor.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"
shopt -s inherit_errexit
cd "$SCRIPT_DIR/.."

out=group/tests/data/sticky-vectors.jsonl
log=$(mktemp)
at_exit rm -f "$log" "$out.tmp"

# Kafka's assignor logs (at ERROR) every conflicting claim the hostile cases
# make; keep that out of the way unless the run fails.
if ! scripts/kafka-tool.sh class scripts/sticky-vectors/StickyVectors.java "$out.tmp" 2>"$log"; then
    grep -v '^\[' "$log" >&2 || true
    die "generation failed"
fi
mv "$out.tmp" "$out"
tail -n 1 "$log" >&2
info "wrote $out"
