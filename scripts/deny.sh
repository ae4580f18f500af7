#!/usr/bin/env bash
# cargo deny on the workspace (deny.toml): licenses, bans and sources always;
# advisories only where the RustSec advisory database is on this machine.
#
#   scripts/deny.sh          (make lint; make deny)
#
# The database is a git repository on github.com, which some machines cannot
# reach: `cargo deny fetch db` (scripts/install-tools.sh tries it) puts it in
# $CARGO_HOME/advisory-dbs. Without it the advisories check is skipped with
# one line saying so; nothing is fetched here, so lint never waits on the
# network. DENY_ADVISORIES=require makes a missing database an error (CI
# where github.com is reachable). Warnings (two versions of a crate) and
# notes are shown with DENY_LOG_LEVEL=warn or note; errors always.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

command -v cargo-deny >/dev/null 2>&1 ||
    die "cargo-deny not installed: scripts/install-tools.sh (make install-tools)"

db_root=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs
have_db=false
for db in "$db_root"/*/; do
    [[ -d ${db}crates ]] && have_db=true
done

checks=(licenses bans sources)
if $have_db; then
    checks=(advisories "${checks[@]}")
elif [[ ${DENY_ADVISORIES:-} == require ]]; then
    die "no RustSec advisory database in $db_root (cargo deny fetch db needs github.com)"
else
    info "advisories skipped: no RustSec advisory database in $db_root (cargo deny fetch db needs github.com); checking ${checks[*]}"
fi
# cargo deny reads `cargo metadata` for every platform, so it needs the
# packages of targets never built here (windows-sys, ...), which a fresh
# machine has not downloaded: fetch what is missing (nothing, and no
# network, when all is there).
cargo fetch --locked --offline >/dev/null 2>&1 || cargo fetch --locked ||
    die "cargo fetch --locked failed: cargo deny needs every package in Cargo.lock"
# --offline: the database as it is on disk, never a network wait.
cargo deny --locked --offline --log-level "${DENY_LOG_LEVEL:-error}" check --show-stats "${checks[@]}"
