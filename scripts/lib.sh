# Shared helpers for the scripts in scripts/, sourced as their first step:
#
#   . "$(dirname "$0")/lib.sh"
#
# POSIX sh on purpose: scripts/deploy.sh runs under /bin/sh (macOS's bash
# 3.2 or dash) and sources this too; the bash scripts use it unchanged.
# `make lint` checks it with `shellcheck --shell=sh`. Nothing here runs at
# source time except setting variables: traps are installed by the first
# at_exit call.
#
#   die MSG / info MSG / step MSG   one line on stderr, prefixed with $PROG
#   at_exit CMD                     run CMD when the script exits (last
#                                   registered first, $EXIT_STATUS set);
#                                   also on INT/TERM/HUP
#   need TOOL... [-- HINT]          die in one line naming what is missing
#   wait_for SECS WHAT CMD...       poll CMD every 0.25 s, die after SECS
#   free_port                       a free TCP port on 127.0.0.1
#   http_code HOST:PORT PATH        the status code (000 when nothing answers)
#   http_is CODE HOST:PORT PATH     it is CODE (a command for wait_for)
#   scrape HOST:PORT METRIC [TEXT]  sum of METRIC's samples whose line
#                                   contains TEXT (e.g. 'topic="t"'); 0 if none
#   metric_is VALUE HOST:PORT METRIC [TEXT]  that sum is VALUE
#   stop_pid PID [SECS]             SIGTERM, SIGKILL after SECS (default 5)
#   detach OUT CMD...               CMD in the background, in its own session,
#                                   no inherited descriptor; $! is its pid
#   broker_ensure                   the local broker (scripts/kafka-local.sh):
#                                   use it when running, else start it and
#                                   stop it at exit (KEEP_BROKER=1 keeps it)

# shellcheck shell=sh
# `local` is not in POSIX, but every sh these scripts meet has it (dash,
# bash and bash-as-sh, busybox ash, zsh): SC3043 is off for this file.
# shellcheck disable=SC3043

PROG=${PROG:-$(basename "$0" .sh)}

# The bash scripts need bash 4.4+; macOS ships 3.2: one line instead of an
# obscure failure. (deploy.sh, POSIX sh, sets LIB_POSIX=1: it runs there.)
if [ -n "${BASH_VERSION:-}" ] && [ "${LIB_POSIX:-0}" != 1 ]; then
    case $BASH_VERSION in
        [0-3].* | 4.[0-3].*)
            printf '%s: needs bash 4.4 or newer, this is %s (macOS: brew install bash, then run it with that bash; or use Linux)\n' "$PROG" "$BASH_VERSION" >&2
            exit 1
            ;;
    esac
fi
LIB_DIR=$(cd "$(dirname "$0")" && pwd)
# Tools the project installs for itself (scripts/install-tools.sh): on PATH
# for every script, after what the system has.
TOOLS_DIR=${KIND_KAFKA_TOOLS:-$HOME/.cache/kind-kafka-rs}
PATH=$PATH:$TOOLS_DIR/bin:$TOOLS_DIR/zig/bin:$TOOLS_DIR/pytools/bin
export TOOLS_DIR PATH
# Keep the resolved Kafka classpath across broker stop/start.
KAFKA_LOCAL_CACHE_DIR=${KAFKA_LOCAL_CACHE_DIR:-$HOME/.cache/kafka-local}
export KAFKA_LOCAL_CACHE_DIR

die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}

info() {
    printf '%s: %s\n' "$PROG" "$*" >&2
}

step() {
    printf '\n\033[1;36m==> %s\033[0m\n' "$*" >&2
}

# ---- exit handling -----------------------------------------------------------
# One EXIT trap for everything a script registers, so a helper's cleanup
# (the broker) and the script's own never replace each other. Commands run
# in the script's shell (so `wait` works on its children), with errexit off,
# newest first; the script's exit status is kept. INT/TERM/HUP exit through
# the same path (dash would skip the EXIT trap otherwise).
_lib_exit_cmds=
_lib_traps=0

at_exit() {
    _lib_exit_cmds="$*
$_lib_exit_cmds"
    if [ "$_lib_traps" = 0 ]; then
        _lib_traps=1
        trap _lib_on_exit EXIT
        trap 'exit 129' HUP
        trap 'exit 130' INT
        trap 'exit 143' TERM
    fi
}

_lib_on_exit() {
    _lib_rc=$?
    # The status the script exits with, for the registered commands ($? is
    # not it by the time they run).
    # shellcheck disable=SC2034 # read by the registered commands
    EXIT_STATUS=$_lib_rc
    set +e
    trap - EXIT HUP INT TERM
    # fd 3: a cleanup command that reads stdin must not eat the list.
    while IFS= read -r _lib_cmd <&3; do
        [ -n "$_lib_cmd" ] && eval "$_lib_cmd"
    done 3<<EOF
$_lib_exit_cmds
EOF
    exit "$_lib_rc"
}

# ---- tools -------------------------------------------------------------------
# need TOOL... [-- HINT]: one line naming every missing tool.
need() {
    local missing="" hint=""
    while [ $# -gt 0 ]; do
        if [ "$1" = -- ]; then
            shift
            hint=$*
            break
        fi
        command -v "$1" >/dev/null 2>&1 || missing="$missing $1"
        shift
    done
    [ -z "$missing" ] || die "missing${missing}${hint:+: $hint}"
}

# ---- waiting -----------------------------------------------------------------
# wait_for SECS WHAT CMD...: until CMD succeeds (its output hidden), bounded.
wait_for() {
    local limit="$1" what="$2" deadline
    shift 2
    deadline=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${limit}s waiting for $what"
        sleep 0.25
    done
}

# ---- processes -----------------------------------------------------------------
# stop_pid PID [SECS]: SIGTERM, then SIGKILL when still alive after SECS.
# Reaps the child when it is ours. Never fails.
stop_pid() {
    local pid="$1" n
    n=$((${2:-5} * 10))
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while [ "$n" -gt 0 ] && kill -0 "$pid" 2>/dev/null; do
        sleep 0.1
        n=$((n - 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# detach OUT CMD...: runs CMD in the background, output to OUT, stdin from
# /dev/null. setsid (absent on macOS) gives it its own session, so it
# survives the caller's terminal and job control; nohup and setsid exec in
# place, so $! after this call is CMD's pid. Descriptors other than stdio
# are closed first: a lock the caller holds (flock on fd 9) must not be held
# by a broker, nor a CI runner's pipes.
detach() {
    local out="$1" fd
    shift
    (
        exec 9>&-
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            case $fd in '' | *[!0-9]*) continue ;; esac
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        if command -v setsid >/dev/null 2>&1; then
            exec setsid nohup "$@" >"$out" 2>&1 </dev/null
        fi
        exec nohup "$@" >"$out" 2>&1 </dev/null
    ) &
}

# ---- network -------------------------------------------------------------------
# A port the kernel reports free on 127.0.0.1 (bound and released at once).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$1$2" || true
}

# http_is CODE HOST:PORT PATH, e.g. in `wait_for 20 /healthz http_is 200 ...`
# (a command, so that wait_for asks again each time).
http_is() {
    [ "$(http_code "$2" "$3")" = "$1" ]
}

# scrape HOST:PORT METRIC [TEXT]: the sum over METRIC's samples (exact name)
# whose line contains TEXT; 0 when the endpoint does not answer.
scrape() {
    curl -s --max-time 3 "http://$1/metrics" 2>/dev/null |
        awk -v m="$2" -v t="${3:-}" '
            index($0, m) == 1 && (substr($0, length(m) + 1, 1) == "{" || substr($0, length(m) + 1, 1) == " ") &&
            (t == "" || index($0, t) > 0) { s += $NF }
            END { printf "%d\n", s }'
}

# metric_is VALUE HOST:PORT METRIC [TEXT]: scrape's sum equals VALUE.
metric_is() {
    [ "$(scrape "$2" "$3" "${4:-}")" = "$1" ]
}

# ---- the local broker ------------------------------------------------------------
# Uses the broker when it is up; otherwise starts it and stops it again when
# this script exits (a broker someone else started is never stopped).
broker_ensure() {
    local out
    if "$LIB_DIR/kafka-local.sh" status >/dev/null 2>&1; then
        info "using the broker that is already running"
        return 0
    fi
    out=$("$LIB_DIR/kafka-local.sh" start 2>&1) || { printf '%s\n' "$out" >&2; die "the local broker did not start"; }
    printf '%s\n' "$out"
    # Another script may have started it between our status and start.
    case $out in
        *"already running"*) return 0 ;;
    esac
    # shellcheck disable=SC2016 # expanded when the exit handler runs
    [ "${KEEP_BROKER:-0}" = 1 ] || at_exit '"$LIB_DIR/kafka-local.sh" stop >/dev/null 2>&1'
}
