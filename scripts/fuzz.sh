#!/bin/bash
# fuzz.sh - builds the libFuzzer targets of tests/fuzz/ with clang (ASan + UBSan) and runs each
# for FUZZ_SECONDS (default 60) on a seed corpus made from tests/reference. `make fuzz` calls it;
# not part of `make test` (a fuzzing run is open-ended; the tests replay known bad inputs).
#
#   FUZZ_SECONDS=600 make fuzz        longer
#   FUZZ_TARGETS="adapter" make fuzz  some of: safetensors tokenizer_json tokenize adapter adapter_config http_head multipart
#                                  predict_body train_request jsonl
#
# Needs clang (Debian's clang package; libFuzzer ships with it). Builds into build-fuzz/ with
# -march=native: clang does not read core/kernels.c's `#pragma GCC target` regions, so the
# SIMD bodies need the ISA on the command line; the binaries are for this machine only.
# Findings (crash-*, leak-*, timeout-*) land in build-fuzz/findings/<target>/; the script
# exits 1 if any target found one.
set -u
. "$(dirname "$0")/args.sh"
pd_positional "$@"
[ ${#POS[@]} -eq 0 ] || pd_usage_error "takes no arguments (settings: FUZZ_SECONDS, FUZZ_TARGETS)"
cd "$(dirname "$0")/.." || exit 1
SECS=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-safetensors tokenizer_json tokenize adapter adapter_config http_head multipart predict_body train_request jsonl server}
OUT=build-fuzz
command -v clang >/dev/null || { echo "fuzz: clang is not installed (apt-get install clang)" >&2; exit 1; }
PKGS="libcjson openblas libmicrohttpd"
CFLAGS="-std=c11 -O1 -g -march=native -D_GNU_SOURCE -w -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        $(pkg-config --cflags $PKGS) -Icore -Iadapters -Iserver -Itrain"
LIBS="$(pkg-config --libs $PKGS) -lpthread -lm"
mkdir -p "$OUT"

sources() { # the project sources a target links
    case $1 in
    safetensors) echo core/safetensors.c core/json.c core/common.c core/fs.c ;;
    tokenizer_json | tokenize) echo core/tokenizer.c core/json.c core/fs.c core/unicode_tables.c core/common.c ;;
    adapter | adapter_config) echo core/*.c adapters/*.c ;;
    http_head) echo server/gate.c core/common.c ;;
    multipart) echo server/multipart.c core/common.c ;;
    predict_body) echo core/*.c adapters/*.c server/jsonio.c ;;
    train_request | jsonl) echo core/*.c adapters/*.c train/spec.c train/engine.c train/optim.c ;;
    server) echo core/*.c adapters/*.c train/*.c $(ls server/*.c | grep -v server/main.c) build/gen/console_files.c build/gen/openapi_json.c ;;
    esac
}

seed() { # target corpus-dir
    mkdir -p "$2"
    case $1 in
    safetensors) for f in tests/reference/adapters/*/*.safetensors; do cp "$f" "$2/$(echo "$f" | md5sum | cut -c1-12)"; done ;;
    tokenizer_json) for d in tests/reference/models/*_cls_f32; do cp "$d/tokenizer.json" "$2/$(basename "$d").json"; done ;;
    tokenize) printf 'Hello, world!\n' >"$2/hello"; printf 'caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xff\xfe broken' >"$2/utf8"
        [ -f ../shared/data/sst2/train.tsv ] && head -100 ../shared/data/sst2/train.tsv | split -l 1 - "$2/sst2-" ;;
    adapter) for d in tests/reference/adapters/bert_cls_f32__*; do
            w=$(ls "$d"/adapter_model.safetensors "$d"/adapter.safetensors "$d"/pytorch_adapter.safetensors 2>/dev/null | head -1)
            [ -f "$d/adapter_config.json" ] && [ -n "$w" ] || continue
            python3 -c 'import struct,sys; c=open(sys.argv[1],"rb").read(); w=open(sys.argv[2],"rb").read()
sys.stdout.buffer.write(struct.pack("<I", len(c)) + c + w)' "$d/adapter_config.json" "$w" >"$2/$(basename "$d")"
        done ;;
    adapter_config) # <weights index><config>[\0<labels>[\0<head_config>]], the index in name order as the target counts
        python3 -c 'import glob, os, sys
dirs = sorted(glob.glob("tests/reference/adapters/bert_cls_f32__*"))
for i, d in enumerate(dirs):
    c = open(d + "/adapter_config.json", "rb").read()
    h = open(d + "/head_config.json", "rb").read() if os.path.exists(d + "/head_config.json") else None
    for k, tail in enumerate([b"", b"\0[\"neg\", \"pos\"]"] + ([b"\0\0" + h, b"\0[\"a\", \"b\"]\0" + h] if h else [])):
        open("%s/%s-%d" % (sys.argv[1], os.path.basename(d), k), "wb").write(bytes([i]) + c + tail)' "$2" ;;
    http_head | server) python3 tests/e2e/test_hostile.py --dump-corpus "$2" >/dev/null ;; # server: the hostile suite's raw requests (predict, uploads, train, adapters, ...)
    multipart) # the hostile suite's multipart requests: boundary, '\n', body
        d=$(mktemp -d)
        python3 tests/e2e/test_hostile.py --dump-corpus "$d" >/dev/null
        python3 -c 'import os, re, sys
src, dst = sys.argv[1], sys.argv[2]
for f in os.listdir(src):
    raw = open(os.path.join(src, f), "rb").read()
    head, _, body = raw.partition(b"\r\n\r\n")
    m = re.search(rb"boundary=\"?([^\";\r\n]{1,70})", head)
    if m:
        open(os.path.join(dst, f), "wb").write(m.group(1) + b"\n" + body)' "$d" "$2"
        rm -rf "$d" ;;
    predict_body | train_request | jsonl) # the hostile suite's bodies for the route, and tests/fuzz/seeds/<target>
        d=$(mktemp -d)
        python3 tests/e2e/test_hostile.py --dump-corpus "$d" >/dev/null
        python3 tests/fuzz/seed_requests.py "$1" "$d" "$2"
        rm -rf "$d" ;;
    esac
}

found=0
case " $TARGETS " in *" server "*) make -s build/gen/console_files.c build/gen/openapi_json.c || exit 1 ;; esac
for t in $TARGETS; do
    echo "== fuzz_$t: building"
    # shellcheck disable=SC2046,SC2086
    clang $CFLAGS "tests/fuzz/fuzz_$t.c" $(sources "$t") -o "$OUT/fuzz_$t" $LIBS || { found=1; continue; }
    corpus=$OUT/corpus/$t
    [ -d "$corpus" ] || seed "$t" "$corpus"
    mkdir -p "$OUT/findings/$t"
    echo "== fuzz_$t: ${SECS} s"
    "$OUT/fuzz_$t" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$OUT/findings/$t/" "$corpus" >"$OUT/fuzz_$t.log" 2>&1
    grep -E '^(Done|#[0-9]+ +DONE)' "$OUT/fuzz_$t.log" | tail -1
    if ls "$OUT/findings/$t"/* >/dev/null 2>&1; then
        echo "fuzz_$t: FOUND $(ls "$OUT/findings/$t" | wc -l) input(s) in $OUT/findings/$t (log: $OUT/fuzz_$t.log)"
        found=1
    fi
done
exit $found
