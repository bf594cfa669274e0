#!/usr/bin/env bash
# Side-by-side benchmarks: corun against corosensei, generator, tokio, may, Go and OS threads,
# all in one run, interleaved (A B C A B C …). `make bench` calls this.
#
# Usage: see usage() below (scripts/bench.sh --help). The command line is checked before
# anything is built or installed: an unknown option or a bad value is one line on stderr and
# exit status 2.
#
# Builds the hook (root workspace) and the bench crate (bench/, its own workspace and target
# dir), installs what is missing (golang-go, wrk, fonts-dejavu-core) with apt-get, then runs
# bench/target/release/corun-bench, which prints one table per case and writes
# target/bench/report.md and one PNG chart per scenario.
set -euo pipefail

# The scenarios of corun-bench --only, in the order it runs them (bench/tests/cli.rs checks
# this list against the driver's).
SCENARIOS="switch spawn-join ping-pong yield idle-memory fresh-spawn echo http identity"

# Only shell builtins until the command line is checked.
usage() {
    printf '%s\n' \
        "usage: scripts/bench.sh [--quick] [--reps N] [--only SCENARIO,...] [--out DIR]" \
        "" \
        "  (no options)     the full suite: 3 runs per peer per case, about 17 minutes" \
        "  --quick          1 run, small counts (about 1-2 minutes): a smoke test" \
        "  --reps N         runs per peer in every case, N >= 1" \
        "  --only LIST      only these scenarios, comma-separated, of:" \
        "                   ${SCENARIOS// /,}" \
        "  --out DIR        where report.md and the charts go [target/bench]" \
        "" \
        "example: scripts/bench.sh --only echo,http --reps 5"
}
bad_usage() {
    echo "bench.sh: $1; see \`scripts/bench.sh --help\`" >&2
    exit 2
}
for option in "$@"; do
    case "$option" in
    --help | -h)
        usage
        exit 0
        ;;
    esac
done
driver_args=()
out=
seen=" "
while [ $# -gt 0 ]; do
    option=$1
    shift
    inline=no
    value=
    case "$option" in
    --*=*)
        inline=yes
        value=${option#*=}
        option=${option%%=*}
        ;;
    esac
    case "$option" in
    --quick)
        [ "$inline" = no ] || bad_usage "--quick takes no value"
        ;;
    --reps | --only | --out)
        if [ "$inline" = no ]; then
            [ $# -gt 0 ] && [ "${1#--}" = "$1" ] || bad_usage "$option needs a value"
            value=$1
            shift
        fi
        [ -n "$value" ] || bad_usage "$option needs a value"
        ;;
    -*)
        bad_usage "unknown option \`$option\`"
        ;;
    *)
        bad_usage "unexpected argument \`$option\`"
        ;;
    esac
    case "$seen" in
    *" $option "*) bad_usage "$option is given twice" ;;
    esac
    seen="$seen$option "
    case "$option" in
    --quick) driver_args+=(--quick) ;;
    --reps)
        case "$value" in
        *[!0-9]*) bad_usage "bad value \`$value\` for --reps (expected 1 or more)" ;;
        esac
        [ -n "${value//0/}" ] || bad_usage "bad value \`$value\` for --reps (expected 1 or more)"
        driver_args+=(--reps "$value")
        ;;
    --only)
        IFS=, read -r -a names <<<"$value"
        known=0
        for name in "${names[@]}"; do
            [ -n "$name" ] || continue
            case " $SCENARIOS " in
            *" $name "*) known=$((known + 1)) ;;
            *) bad_usage "unknown scenario \`$name\` in --only" ;;
            esac
        done
        [ "$known" -gt 0 ] || bad_usage "--only needs at least one scenario"
        driver_args+=(--only "$value")
        ;;
    --out)
        case "$value" in
        /*) out=$value ;;
        *) out=$PWD/$value ;;
        esac
        ;;
    esac
done

cd "$(dirname "$0")/.."
ROOT=$PWD
CARGO=${CARGO:-cargo}
OUT=${out:-$ROOT/target/bench}
PIDS=$OUT/children.pids
BENCH_BIN=$ROOT/bench/target/release
GO_PEER=$ROOT/bench/target/go/go-peer
HOOK=${CARGO_TARGET_DIR:-$ROOT/target}/release/libcorun_hook.so

mkdir -p "$OUT"
: >"$PIDS"
DRIVER=

# Kill what is left: the driver, and every program it started that still runs (each leads its
# own process group). PIDs are checked against our own binaries before anything is killed.
cleanup() {
    if [ -n "$DRIVER" ] && kill -0 "$DRIVER" 2>/dev/null; then
        kill -TERM "$DRIVER" 2>/dev/null || true
        wait "$DRIVER" 2>/dev/null || true
    fi
    local pid exe
    while read -r pid; do
        [ -n "$pid" ] || continue
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
        case "$exe" in
        "$BENCH_BIN"/* | "$GO_PEER" | */wrk)
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            ;;
        esac
    done <"$PIDS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ---------------------------------------------------------------------------------
missing=()
command -v go >/dev/null || missing+=(golang-go)
command -v wrk >/dev/null || missing+=(wrk)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
        echo "warning: could not install ${missing[*]}; what needs them is reported as failed"
    fi
fi

# --- builds --------------------------------------------------------------------------------
echo "building the hook and the bench crate (release)"
"$CARGO" build --release --quiet -p corun-hook
"$CARGO" build --release --quiet --manifest-path bench/Cargo.toml --target-dir bench/target
go_args=()
if command -v go >/dev/null; then
    if (cd bench/go && GOPROXY=off GOFLAGS=-buildvcs=false go build -o "$GO_PEER" .); then
        go_args=(--go-peer "$GO_PEER")
    else
        echo "warning: the Go peer did not build; it is reported as failed"
    fi
fi

# --- run -----------------------------------------------------------------------------------
# 10,000 echo connections need 10,000 descriptors in the server and as many in the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open-file limit: $(ulimit -n) per process; vm.max_map_count: $(cat /proc/sys/vm/max_map_count)"

"$BENCH_BIN/corun-bench" --hook "$HOOK" "${go_args[@]}" --out "$OUT" "${driver_args[@]}" &
DRIVER=$!
status=0
wait "$DRIVER" || status=$?
DRIVER=
exit "$status"
