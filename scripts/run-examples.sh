#!/usr/bin/env bash
# Builds the hook library, the `corun` launcher and every example (release), runs each example
# with `corun run` (which preloads target/release/libcorun_hook.so), and checks its output.
# Exits non-zero if any example is missing a check, fails, or prints the wrong thing.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --workspace --lib --bins --examples --quiet
LAUNCHER="$PWD/target/release/corun"
BIN="$PWD/target/release/examples"
TIMEOUT=${EXAMPLE_TIMEOUT:-60}
# Extra options of `corun run` for the next check (threads mode for plain_threads).
RUN_OPTIONS=""

failures=0
pass() { printf '  ok    %s\n' "$1"; }
fail() { printf '  FAIL  %s: %s\n' "$1" "$2"; failures=$((failures + 1)); }

# run NAME PATTERN... [-- ARGS...]: runs the example under the hook with ARGS; every PATTERN
# (an extended regex) must match a line of its output (stdout and stderr together).
run() {
    local name=$1; shift
    local patterns=() args=()
    while [ $# -gt 0 ]; do
        if [ "$1" = "--" ]; then shift; args=("$@"); break; fi
        patterns+=("$1"); shift
    done
    local out status=0
    out=$(timeout "$TIMEOUT" "$LAUNCHER" run $RUN_OPTIONS -- "$BIN/$name" "${args[@]}" 2>&1) || status=$?
    if [ "$status" -ne 0 ]; then
        fail "$name" "exit status $status"; printf '%s\n' "$out" | tail -20 | sed 's/^/        /'; return
    fi
    for pattern in "${patterns[@]}"; do
        if ! grep -Eq -- "$pattern" <<<"$out"; then
            fail "$name" "no line matches /$pattern/"; printf '%s\n' "$out" | tail -20 | sed 's/^/        /'; return
        fi
    done
    pass "$name"
}

echo "running examples with $LAUNCHER run"
checked=()
check() { checked+=("$1"); run "$@"; }

check coroutine_basics \
    '^fibonacci: \[0, 1, 1, 2, 3, 5, 8, 13, 21, 34\]$' \
    '^doubler: Yield\(2\) Yield\(20\) Yield\(200\) Return\(7\)$' \
    '^panic payload: Some\("boom"\), done afterwards: true$'
check coroutine_backtrace \
    'corun_probe_inside_coroutine' \
    'coroutine_backtrace::resume_from_here' \
    '^ok: the trace walked'

check sleep \
    '^coroutine [0-4] woke after 50[0-9]\.' \
    '^after 1 s: 5 of 5 coroutines finished$' \
    '^joined all; sum of ids = 10$'
check tcp_listener \
    '^listening on 127\.0\.0\.1:[0-9]+$' \
    '^100 clients greeted with "hello, world"$'

# A plain std program (no corun in it) whose threads become coroutines with --threads: its
# 2,000 echo threads (200 clients) and 1,000 sleepers run on a handful of OS threads.
RUN_OPTIONS="--threads --workers 2"
check plain_threads \
    '^echo: 200 clients, 13107200 bytes echoed and checked, 0 failed, ([1-9]|1[0-4]) OS threads while all were connected' \
    '^sleep: 1000 threads slept 200 ms in [0-9]+ ms, ([1-9]|1[0-4]) OS threads$' \
    '^sync: ok: mpsc, mutex\+condvar, barrier, rwlock, park, scope, names\+thread_local, panic-join, stack-size$'
RUN_OPTIONS=""

check chat_server \
    '^chat server on 127\.0\.0\.1:[0-9]+$' \
    '^10 clients each received all 180 lines from the others \(1800 in all\)$'

# Dumps on: the example sends itself SIGQUIT; its spinner trips the stuck-worker guard.
CORUN_DUMP=1 check introspection \
    '^stats: coroutines: 3 live \(3 spawned, 3 started, 0 finished\)' \
    '^corun: coroutine dump: 3 live coroutine\(s\)' \
    "^coroutine 1 'conn-reader' — parked on worker [0-9]+ for [0-9.]+ s: waiting for fd [0-9]+ to become readable$" \
    'introspection::wait_for_request' \
    "^coroutine 2 'napper' — parked on worker [0-9]+ for [0-9.]+ s: sleeping" \
    "^coroutine 3 'counter' — parked on worker [0-9]+ for [0-9.]+ s: waiting on futex word" \
    '^the program carries on$' \
    "^corun: warning: worker [0-9]+ has run coroutine 4 'spinner' for [0-9]+ ms without switching" \
    '^  where it runs now:$' \
    '^done$'

# The same program, dumped from outside with `corun dump PID --json` while it holds its
# coroutines blocked.
intro_log=$(mktemp)
"$LAUNCHER" run -- "$BIN/introspection" >"$intro_log" 2>&1 &
intro_pid=$!
pid=""
for _ in $(seq 50); do
    pid=$(sed -n 's/^pid \([0-9]*\): .*/\1/p' "$intro_log")
    [ -n "$pid" ] && break
    sleep 0.05
done
dump=$([ -n "$pid" ] && "$LAUNCHER" dump "$pid" --json 2>&1) || true
wait "$intro_pid" || true
if grep -q '"name":"conn-reader","state":"parked"' <<<"$dump" \
    && grep -q '"kind":"fd","fd":[0-9]*,"direction":"read"' <<<"$dump" \
    && grep -q '"function":"introspection::update_shared"' <<<"$dump"; then
    pass "corun dump (introspection)"
else
    fail "corun dump (introspection)" "unexpected dump"; printf '%s\n' "$dump" | head -c 2000 | sed 's/^/        /'
fi
rm -f "$intro_log"

# echo_server runs until killed: start it, drive it with echo_client, stop it.
checked+=(echo_server echo_client)
server_log=$(mktemp)
"$LAUNCHER" run -- "$BIN/echo_server" 127.0.0.1:0 >"$server_log" 2>&1 &
server_pid=$!
addr=""
for _ in $(seq 50); do
    addr=$(sed -n 's/^echo server listening on //p' "$server_log")
    [ -n "$addr" ] && break
    sleep 0.1
done
if [ -z "$addr" ]; then
    fail echo_server "did not print its address"; sed 's/^/        /' "$server_log"
else
    pass echo_server
    run echo_client '^1000 connections x 50 round trips: 50000 verified in .* round trips/s\)$' \
        -- "$addr" 1000 50
fi
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
rm -f "$server_log"

# Every example must have a check above.
for src in examples/*.rs; do
    name=$(basename "$src" .rs)
    if [[ ! " ${checked[*]} " =~ " $name " ]]; then
        fail "$name" "no check in scripts/run-examples.sh"
    fi
done

if [ "$failures" -ne 0 ]; then
    echo "$failures example(s) failed"
    exit 1
fi
echo "all ${#checked[@]} examples passed"
