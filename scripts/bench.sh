#!/usr/bin/env bash
# Side-by-side benchmarks: corun against corosensei, generator, tokio, may, Go and OS threads,
# all in one run, interleaved (A B C A B C …). `make bench` calls this.
#
#   scripts/bench.sh            the full suite (3 runs per peer per case, about 17 minutes)
#   scripts/bench.sh --quick    1 run, small counts (about 1–2 minutes): a smoke test
#   scripts/bench.sh --only echo,http --reps 5    a subset, more repetitions
#
# Builds the hook (root workspace) and the bench crate (bench/, its own workspace and target
# dir), installs what is missing (golang-go, wrk, fonts-dejavu-core) with apt-get, then runs
# bench/target/release/corun-bench, which prints one table per case and writes
# target/bench/report.md and one PNG chart per scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARGO=${CARGO:-cargo}
OUT=$ROOT/target/bench
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

"$BENCH_BIN/corun-bench" --hook "$HOOK" "${go_args[@]}" --out "$OUT" "$@" &
DRIVER=$!
status=0
wait "$DRIVER" || status=$?
DRIVER=
exit "$status"
