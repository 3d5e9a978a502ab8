#!/usr/bin/env bash
# run-tests.sh - the whole test suite, as `make test` and CI run it.
#
#  1. builds with -Werror: the normal build, the ASan+UBSan build of every test, and the
#     TSan build of the concurrency tests;
#  2. runs every build-asan/tests/test_* program, then the concurrency tests under TSan,
#     then every tests/e2e/test_*.py (Debian's /usr/bin/python3, against build-asan/peftd)
#     and tests/e2e/*.sh;
#  3. reads each program's "name: N passed, N failed" line, prints a table and a last line
#     "N passed, N failed" with the totals. Exits 1 if anything failed, crashed (a non-zero
#     exit, or no summary line: counted as one failure) or did not build.
#
# Environment: PD_SHARED (default ../shared), JOBS (default 2), TEST_TIMEOUT (seconds per
# program, default 900), KEEP_LOGS=1 keeps the per-program logs (printed path).
set -uo pipefail
. "$(dirname "$0")/args.sh"
pd_positional "$@"
[ ${#POS[@]} -eq 0 ] || pd_usage_error "takes no arguments (settings come from the environment)"

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
export PD_SHARED=${PD_SHARED:-../shared}
JOBS=${JOBS:-2}
TEST_TIMEOUT=${TEST_TIMEOUT:-900}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
PYTHON=/usr/bin/python3

LOGS=$(mktemp -d /tmp/peftd-tests.XXXXXX)
cleanup() { if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $LOGS"; else rm -rf "$LOGS"; fi; }
trap cleanup EXIT

scripts/install-deps.sh --test || { echo "run-tests: installing test dependencies failed"; exit 1; }

ROWS=()          # "name|passed|failed|skipped|status|seconds"
TOTAL_PASS=0
TOTAL_FAIL=0
TOTAL_SKIP=0

record() { # name passed failed skipped status seconds
    ROWS+=("$1|$2|$3|$4|$5|$6")
    TOTAL_PASS=$((TOTAL_PASS + $2))
    TOTAL_FAIL=$((TOTAL_FAIL + $3))
    TOTAL_SKIP=$((TOTAL_SKIP + $4))
}

show_log() { # log: the end of a failed step's output, enough for a stack trace
    echo "----- last lines of $(basename "$1") -----"
    tail -n 80 "$1"
    echo "-----"
}

# ==== Build ====

# build LABEL make-args...: a failed build is recorded as one failure; returns its status.
build() {
    local label=$1; shift
    local log="$LOGS/build-$label.log" t0=$SECONDS
    echo "== build ($label): make -j$JOBS WERROR=1 $*"
    if make -j"$JOBS" WERROR=1 "$@" >"$log" 2>&1; then
        return 0
    fi
    show_log "$log"
    record "build:$label" 0 1 0 "FAIL" $((SECONDS - t0))
    return 1
}

build normal all
build asan SANITIZER=address tests; OK_ASAN=$?

# The concurrency tests: the registry, the thread pool/kernels, and anything about
# concurrency or training (trainer threads run beside inference).
TSAN_TESTS=()
for src in tests/test_registry.c tests/test_kernels.c tests/test_*concurr*.c tests/test_train*.c; do
    [ -f "$src" ] || continue
    name=$(basename "$src" .c)
    case " ${TSAN_TESTS[*]-} " in *" $name "*) continue ;; esac
    TSAN_TESTS+=("$name")
done
OK_TSAN=1
if [ "${#TSAN_TESTS[@]}" -gt 0 ]; then
    # build-tsan/peftd too: the server's own concurrency (HTTP threads, scheduler, trainer
    # beside inference) runs under TSan in the end-to-end server and training tests below.
    build tsan SANITIZER=thread "${TSAN_TESTS[@]/#/build-tsan/tests/}" build-tsan/peftd; OK_TSAN=$?
fi

# ==== Run ====

# run NAME LOG CMD...: runs one program with a timeout and records its summary line.
run() {
    local name=$1 log=$2; shift 2
    local t0=$SECONDS rc
    timeout -k 10 "$TEST_TIMEOUT" "$@" >"$log" 2>&1 </dev/null
    rc=$?
    local secs=$((SECONDS - t0))
    # The last "word: N passed, N failed[, N skipped]" line the program printed.
    local line p f s
    line=$(grep -aE '^[A-Za-z0-9_.+-]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")
        f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
        s=$(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$line")
        s=${s:-0}
    else
        p=0 f=0 s=0
    fi
    local status=ok
    if [ "$rc" -ne 0 ] || [ -z "$line" ] || [ "$f" -gt 0 ]; then
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status="TIMEOUT"
        elif [ -z "$line" ]; then status="CRASH(rc=$rc)"
        elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then status="FAIL(rc=$rc)"
        else status="FAIL"
        fi
        # A crash, a sanitizer report after the summary or a timeout is one more failure.
        [ "$f" -eq 0 ] && f=1
        show_log "$log"
    fi
    printf '%-34s %s (%ss)\n' "$name" "$status" "$secs"
    record "$name" "$p" "$f" "$s" "$status" "$secs"
}

echo "== unit tests (ASan+UBSan)"
if [ "$OK_ASAN" = 0 ]; then
    for t in build-asan/tests/test_*; do
        [ -x "$t" ] && [ -f "tests/$(basename "$t").c" ] || continue
        run "$(basename "$t")" "$LOGS/asan-$(basename "$t").log" "$t"
    done
fi

echo "== concurrency tests (TSan)"
if [ "$OK_TSAN" = 0 ]; then
    for name in "${TSAN_TESTS[@]}"; do
        [ -x "build-tsan/tests/$name" ] || continue
        run "tsan:$name" "$LOGS/tsan-$name.log" "build-tsan/tests/$name"
    done
fi

echo "== end-to-end tests"
if [ "$OK_ASAN" = 0 ] && [ -x build-asan/peftd ]; then
    export PEFTD_BIN=$ROOT/build-asan/peftd
    # test_hostile.py measures its big bodies on the normal build (glibc's allocator)
    export PEFTD_NORMAL_BIN=$ROOT/build/peftd
    for t in tests/e2e/test_*.py; do
        [ -f "$t" ] || continue
        run "e2e:$(basename "$t")" "$LOGS/e2e-$(basename "$t").log" "$PYTHON" "$t"
    done
    for t in tests/e2e/*.sh; do
        [ -f "$t" ] || continue
        run "e2e:$(basename "$t")" "$LOGS/e2e-$(basename "$t").log" bash "$t"
    done
fi
if [ "$OK_TSAN" = 0 ] && [ -x build-tsan/peftd ]; then
    # Hot swap under load, and training while 16 clients predict, under ThreadSanitizer.
    for t in tests/e2e/test_server.py tests/e2e/test_train.py tests/e2e/test_dtype.py; do
        [ -f "$t" ] || continue
        PEFTD_BIN=$ROOT/build-tsan/peftd run "e2e-tsan:$(basename "$t")" "$LOGS/e2e-tsan-$(basename "$t").log" "$PYTHON" "$t"
    done
fi

# ==== Summary ====

echo
printf '%-34s %7s %7s %7s  %-14s %5s\n' program passed failed skipped status secs
printf '%-34s %7s %7s %7s  %-14s %5s\n' ---------------------------------- ------- ------- ------- -------------- -----
for row in "${ROWS[@]}"; do
    IFS='|' read -r n p f s st secs <<<"$row"
    printf '%-34s %7d %7d %7d  %-14s %5d\n' "$n" "$p" "$f" "$s" "$st" "$secs"
done
echo
[ "$TOTAL_SKIP" -gt 0 ] && echo "($TOTAL_SKIP checks skipped)"
echo "$TOTAL_PASS passed, $TOTAL_FAIL failed"
[ "$TOTAL_FAIL" -eq 0 ] && [ "${#ROWS[@]}" -gt 0 ]
