#!/usr/bin/env bash
# A local stand-in for the pinned Rust builder image, for building the
# Dockerfiles where Docker Hub cannot be reached (scripts/image-test.sh).
#
#   scripts/builder-standin.sh IMAGE_NAME   build it into buildah's storage
#                                           (BUILDAH_STORAGE_ARGS) as IMAGE_NAME,
#                                           unless it is there already
#   scripts/builder-standin.sh              only make the cached rootfs (make
#                                           test does this early, in parallel
#                                           with the cargo tiers: it mostly waits
#                                           on downloads and dpkg)
#
# What the Dockerfiles pin (ARG RUST_IMAGE, rust:X.Y.Z-slim-SUITE@sha256:...)
# is Debian SUITE slim + gcc, libc6-dev, ca-certificates + rustup's minimal
# profile of Rust X.Y.Z in /usr/local/{rustup,cargo}. This script makes the
# same from the same sources: the Debian rootfs with mmdebstrap from Debian's
# archive, rustup-init (pinned version and sha256) and the toolchain from
# static.rust-lang.org, and the image's environment (RUSTUP_HOME, CARGO_HOME,
# PATH, RUST_VERSION). Only this base differs from what users build; the
# Dockerfiles themselves are built unchanged on top of it. One addition: the
# stand-in trusts the CA certificates this machine trusts (its network
# inspects TLS with its own CA), with PIP_CERT, SSL_CERT_FILE and
# CARGO_HTTP_CAINFO on that bundle, so the builder stage's pip and cargo
# downloads work here as they do on a user's machine with the official image.
#
# The rootfs tarball is cached in $TOOLS_DIR/standin (about 2 minutes to
# make, seconds to import). Needs root (mmdebstrap --mode=root), curl.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

NAME=${1:-}
# rustup-init as the official images pin it.
RUSTUP_VERSION=1.28.2
declare -A RUSTUP_SHA256=(
    [x86_64-unknown-linux-gnu]=20a06e644b0d9bd2fbdbfd52d42540bdde820ea7df86e92e533c073da0cdd43c
    [aarch64-unknown-linux-gnu]=e3853c5a252fca15252d07cb23a1bdd9377a8c6f3efa01531109281ae47f841c
)
MIRROR=${STANDIN_DEBIAN_MIRROR:-http://deb.debian.org}

# The pinned image, from the Dockerfile: rust:1.95.0-slim-bookworm@sha256:...
pinned=$(sed -n 's/^ARG RUST_IMAGE=\(rust:[^@]*\)@sha256:.*/\1/p' Dockerfile.producer)
[[ $pinned =~ ^rust:([0-9]+\.[0-9]+\.[0-9]+)-slim-([a-z]+)$ ]] ||
    die "no ARG RUST_IMAGE=rust:X.Y.Z-slim-SUITE@sha256:... in Dockerfile.producer (found '$pinned')"
RUST_VERSION=${BASH_REMATCH[1]}
SUITE=${BASH_REMATCH[2]}
case $(uname -m) in
    x86_64) host=x86_64-unknown-linux-gnu ;;
    aarch64) host=aarch64-unknown-linux-gnu ;;
    *) die "no rustup-init for $(uname -m)" ;;
esac

CACHE=$TOOLS_DIR/standin
TARBALL=$CACHE/rust-$RUST_VERSION-slim-$SUITE-$host.tar
if [[ ! -s $TARBALL ]]; then
    need mmdebstrap curl sha256sum -- "apt-get install -y mmdebstrap curl (scripts/install-tools.sh)"
    [[ $(id -u) == 0 ]] || die "needs root (mmdebstrap --mode=root)"
    mkdir -p "$CACHE"
    work=$(mktemp -d "$CACHE/.build.XXXXXX")
    at_exit "rm -rf --one-file-system '$work'"
    curl -fsSL --retry 3 -o "$work/rustup-init" \
        "https://static.rust-lang.org/rustup/archive/$RUSTUP_VERSION/$host/rustup-init"
    echo "${RUSTUP_SHA256[$host]}  $work/rustup-init" | sha256sum -c --quiet - ||
        die "rustup-init $RUSTUP_VERSION ($host) does not match its pinned sha256"
    chmod +x "$work/rustup-init"
    # mmdebstrap writes the tarball itself (it mounts and unmounts /proc in
    # the tree); the toolchain goes in from a hook, run here on the host with
    # the tree as $1, as the official image's rustup-init step does inside.
    info "Debian $SUITE (minbase + gcc, libc6-dev, ca-certificates) and Rust $RUST_VERSION (rustup $RUSTUP_VERSION, minimal profile)"
    # shellcheck disable=SC2016 # the hooks' $1 is mmdebstrap's tree
    mmdebstrap --quiet --mode=root --variant=minbase --include=ca-certificates,gcc,libc6-dev \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --aptopt='APT::Install-Recommends "false"' \
        --customize-hook="RUSTUP_HOME=\"\$1/usr/local/rustup\" CARGO_HOME=\"\$1/usr/local/cargo\" '$work/rustup-init' -y -q --no-modify-path --profile minimal --default-toolchain $RUST_VERSION --default-host $host >/dev/null" \
        --customize-hook='chmod -R a+w "$1/usr/local/rustup" "$1/usr/local/cargo"' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
        "$SUITE" "$work/rootfs.tar" \
        "deb $MIRROR/debian $SUITE main" \
        "deb $MIRROR/debian $SUITE-updates main" \
        "deb $MIRROR/debian-security $SUITE-security main"
    mv "$work/rootfs.tar" "$TARBALL"
    info "cached $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi

[[ -n $NAME ]] || exit 0

# Into buildah's storage as NAME, with the official image's environment;
# kept when NAME is there from the same tarball and trust store (a new
# base image id would rebuild every layer of the builder stage).
read -r -a storage <<<"${BUILDAH_STORAGE_ARGS:-}"
BUNDLE=/etc/ssl/certs/ca-certificates.crt
stamp="$pinned $(basename "$TARBALL") $(stat -c %Y "$TARBALL") ca:$(sha256sum "$BUNDLE" | cut -c1-12)"
if [[ $(buildah "${storage[@]}" inspect --type image --format '{{index .OCIv1.Config.Labels "io.kind-kafka-rs.standin"}}' "$NAME" 2>/dev/null || true) == "$stamp" ]]; then
    info "$NAME: in the build storage already"
    exit 0
fi
ctr=$(buildah "${storage[@]}" from --quiet scratch)
buildah "${storage[@]}" add --quiet "$ctr" "$TARBALL" / >/dev/null
buildah "${storage[@]}" copy --quiet "$ctr" "$BUNDLE" "$BUNDLE" >/dev/null
for crt in /usr/local/share/ca-certificates/*.crt; do
    [[ -e $crt ]] || continue
    buildah "${storage[@]}" copy --quiet "$ctr" "$crt" "$crt" >/dev/null
done
buildah "${storage[@]}" config \
    --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env RUST_VERSION="$RUST_VERSION" --cmd bash \
    --env PIP_CERT="$BUNDLE" --env SSL_CERT_FILE="$BUNDLE" --env CARGO_HTTP_CAINFO="$BUNDLE" \
    --label "io.kind-kafka-rs.standin=$stamp" "$ctr"
buildah "${storage[@]}" commit --quiet --rm "$ctr" "$NAME" >/dev/null
info "$NAME: stand-in for $pinned (Debian $SUITE, Rust $RUST_VERSION, $host)"
