#!/usr/bin/env bash
# bench/run.sh - peftd's benchmarks (`make bench`). See bench/README.md.
#
# Builds the bench programs, installs the peers on first use, then measures, on this machine
# and in this one run: the sgemm roofline, the encoder's throughput against ONNX Runtime and
# PyTorch on the same weights, the cost of adapters, the HTTP server under load, LoRA training
# against PyTorch and the SST-2 accuracy parity of the two (needs ../shared/data/sst2). Prints
# tables and a PASS/MISS line per target, and writes bench/results/<date>-<host>.json (raw)
# and bench/results/latest.md.
#
# The environment pins OpenBLAS to its AVX2 kernels (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) for
# old-OpenBLAS safety. Every measuring command below runs with both unset (`nb ...`), so each
# program gets the kernel OpenBLAS picks for this CPU; the kernel name is printed. Nothing
# else (tests, CI, your shell) is changed.
#
# Environment knobs:
#   BENCH_QUICK=1     fewer runs and shorter server load (a smoke run, numbers not for quoting)
#   BENCH_ONLY="gemm engine peers adapters server train parity pretrain"   run a subset (default: all)
#   BENCH_ROUNDS=4    rounds of engine/ORT/torch, alternated (engine, ort, torch, torch, ort, engine, ...);
#                     each round takes RUNS (2) samples per batch size, or more for short batches (~3 s)
#   BENCH_QUIET_WAIT=120  seconds a step may wait for other processes to leave the CPU alone
#   BENCH_BUILD=build     build directory (e.g. a private build-<name> while others use build/)
set -uo pipefail
cd "$(dirname "$0")/.."

B=${BENCH_BUILD:-build}
CACHE=bench/.cache
MODEL=$CACHE/bert-base
ONNX=$CACHE/bert-base.onnx
ONNX_INT8=$CACHE/bert-base-int8.onnx   # bench/peers/quantize_int8.py of $ONNX (ORT's dynamic int8)
PY=/usr/bin/python3
QUICK=${BENCH_QUICK:-0}
ONLY=${BENCH_ONLY:-gemm engine peers adapters server train parity pretrain}
SST2=${BENCH_SST2:-${PD_SHARED:-../shared}/data/sst2}   # SST-2 for the parity run (train.tsv, dev.tsv)
ROUNDS=${BENCH_ROUNDS:-4}
QUIET_WAIT=${BENCH_QUIET_WAIT:-120}
OUT=$(mktemp -d /tmp/peftd-bench.XXXXXX)
if [ -n "${BENCH_KEEP:-}" ]; then echo "bench: raw files kept in $OUT"; else trap 'rm -rf "$OUT"' EXIT; fi
mkdir -p "$CACHE" bench/results "$OUT/logs"

if [ "$QUICK" = 1 ]; then RUNS=1; ROUNDS=${BENCH_ROUNDS:-2}; SRV_ARGS=(--seconds-tiny 3 --seconds-bert 5 --versions 5); else RUNS=2; SRV_ARGS=(); fi

# Every measured command goes through nb: OpenBLAS picks its own kernel for this CPU.
nb() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; }
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
say() { printf '\n==== %s ====\n' "$*"; }

# Runs a measured command (OpenBLAS variables unset) and records how the step went: wall/user/sys of the step and the share of the machine's CPU that
# other processes took meanwhile (from /proc/stat), so noisy numbers can be recognised.
busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
# Other processes' share of the machine's CPU over one second.
other_share() {
    local b0 b1 i0 i1
    read -r b0 i0 < <(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6; exit}' /proc/stat)
    sleep 1
    read -r b1 i1 < <(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6; exit}' /proc/stat)
    awk -v b="$((b1 - b0))" -v i="$((i1 - i0))" 'BEGIN { t = b + i; printf "%.2f", (t > 0 ? b / t : 0) }'
}
# Waits (at most QUIET_WAIT seconds) until other processes use less than 10% of the CPU, so a
# step does not start in the middle of someone else's build. Proceeds anyway after that; the
# report then flags the step.
wait_quiet() {
    local waited=0 share
    while :; do
        share=$(other_share)
        awk -v s="$share" 'BEGIN { exit !(s < 0.10) }' && return 0
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            echo "bench: machine still busy (${share} of the CPU used by others); measuring anyway" >&2
            return 0
        fi
        [ "$waited" -eq 0 ] && echo "bench: waiting for a quiet machine (${share} of the CPU used by others) ..." >&2
        sleep 4
        waited=$((waited + 5))
    done
}
step() {
    local name=$1; shift
    local b0 b1 hz ncpu rc
    hz=$(getconf CLK_TCK); ncpu=$(nproc)
    wait_quiet
    b0=$(busy_jiffies)
    /usr/bin/time -f '%e %U %S' -o "$OUT/time-$name" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"
    rc=$?
    b1=$(busy_jiffies)
    read -r real user sys <"$OUT/time-$name" 2>/dev/null || { real=0; user=0; sys=0; }
    awk -v n="$name" -v rc="$rc" -v r="$real" -v u="$user" -v s="$sys" -v b="$((b1 - b0))" -v hz="$hz" -v c="$ncpu" 'BEGIN {
        other = (b / hz - u - s) / (r * c); if (other < 0) other = 0; if (r <= 0) other = 0;
        printf "{\"step\": \"%s\", \"rc\": %d, \"wall_s\": %.2f, \"user_s\": %.2f, \"sys_s\": %.2f, \"other_cpu_share\": %.3f}\n", n, rc, r, u, s, other
    }' >"$OUT/step-$name.json"
    if [ "$rc" -ne 0 ]; then echo "bench: step $name failed (exit $rc)" >&2; fi
    return "$rc"
}
skip() { printf '{"step": "%s", "skipped": "%s"}\n' "$1" "$2" >"$OUT/step-$1.json"; echo "bench: skipping $1: $2"; }

# ==== Tools ====

say "setup"
apt_install() {
    [ "$(id -u)" -eq 0 ] || { echo "bench: not root; install $* yourself" >&2; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; }
}
want server && ! command -v wrk >/dev/null && { echo "bench: installing wrk"; apt_install wrk; }
if want peers || want train || want parity || want pretrain; then
    "$PY" -c 'import torch, numpy' 2>/dev/null || { echo "bench: installing python3-torch"; apt_install python3-torch python3-numpy; }
    "$PY" -c 'import onnx' 2>/dev/null || { echo "bench: installing python3-onnx"; apt_install python3-onnx; }
    command -v node >/dev/null && command -v npm >/dev/null || { echo "bench: installing nodejs npm"; apt_install nodejs npm; }
    if [ ! -d bench/peers/node_modules/onnxruntime-node ] && command -v npm >/dev/null; then
        echo "bench: installing onnxruntime-node into bench/peers (npm install --ignore-scripts)"
        (cd bench/peers && npm install --ignore-scripts --no-audit --no-fund >"$OUT/logs/npm.log" 2>&1) ||
            { echo "bench: npm install failed:" >&2; tail -5 "$OUT/logs/npm.log" >&2; }
    fi
fi

# ==== Build ====

# The Makefile links every bench program with all project objects. If another part of the tree
# does not build right now, fall back to compiling a program from the sources it needs.
CFLAGS_FB="-std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wno-unused-parameter -O2 -g -D_GNU_SOURCE -Icore -Iadapters -Iserver"
PKGS="libmicrohttpd libcjson openblas"
build_bench() {
    local prog=$1; shift
    make -s "$B/bench/$prog" >"$OUT/logs/make-$prog.log" 2>&1 && return 0
    echo "bench: make $B/bench/$prog failed; compiling it from its sources directly" >&2
    tail -3 "$OUT/logs/make-$prog.log" >&2
    mkdir -p "$B/bench"
    # shellcheck disable=SC2086,SC2046
    cc $CFLAGS_FB $(pkg-config --cflags $PKGS) "bench/$prog.c" "$@" -o "$B/bench/$prog" $(pkg-config --libs $PKGS) -lpthread -lm
}
build_bench gemm core/*.c || exit 1
build_bench engine core/*.c || exit 1
ADAPTERS_OK=1
build_bench adapters core/*.c adapters/*.c 2>/dev/null ||
    build_bench adapters core/*.c adapters/adapter.c adapters/peft.c adapters/bottleneck.c || ADAPTERS_OK=0
TRAIN_OK=1
if want train || want parity; then
    { build_bench train core/*.c adapters/*.c && build_bench parity_data core/*.c adapters/*.c; } || TRAIN_OK=0
fi
PRETRAIN_OK=1
if want pretrain; then build_bench pretrain core/*.c adapters/*.c train/*.c server/options.c || PRETRAIN_OK=0; fi
PEFTD_OK=1
make -s "$B/peftd" >"$OUT/logs/make-peftd.log" 2>&1 || { PEFTD_OK=0; tail -3 "$OUT/logs/make-peftd.log" >&2; }

# ==== Benchmarks ====

if want gemm; then
    say "roofline and GEMM threading designs"
    step gemm "$B/bench/gemm" --json "$OUT/gemm.json" --runs 5
fi

engine() { # round
    step "engine-$1" "$B/bench/engine" --model "$MODEL" --json "$OUT/engine-$1.json" --runs "$RUNS" --warmup 1 \
        --threads 2 --batches 1,8,32 --seq 128 ${2:+--dump "$CACHE/check"}
}
# The same forward with the base in bf16 and int8 (--dtype; the pool design only): run right after
# each fp32 engine round, so report.py pairs them round by round with fp32 and the peers.
engine_dtypes() { # round
    local dt
    for dt in bf16 int8; do
        step "engine_$dt-$1" "$B/bench/engine" --model "$MODEL" --dtype "$dt" --json "$OUT/engine_$dt-$1.json" --runs "$RUNS" \
            --warmup 1 --threads 2 --batches 1,8,32 --seq 128 --roof-samples 0
    done
}
ort() {
    [ -f bench/peers/node_modules/onnxruntime-node/package.json ] || { skip "ort-$1" "onnxruntime-node is not installed"; return; }
    [ -f "$ONNX" ] || { skip "ort-$1" "no ONNX export"; return; }
    step "ort-$1" node bench/peers/ort_bench.js --model "$ONNX" --config "$MODEL/config.json" --threads 2 --seq 128 \
        --batches 1,8,32 --runs "$RUNS" --warmup 1 --bench --json "$OUT/ort-$1.json" ${2:+--check "$CACHE/check"}
}
# ONNX Runtime on the int8 graph (DynamicQuantizeLinear + MatMulInteger, per-channel weights):
# the peer of --dtype int8. Its --check against peftd's fp32 dump is informational (int8 error).
ort8() {
    [ -f bench/peers/node_modules/onnxruntime-node/package.json ] || { skip "ort_int8-$1" "onnxruntime-node is not installed"; return; }
    [ -f "$ONNX_INT8" ] || { skip "ort_int8-$1" "no int8 ONNX graph"; return; }
    step "ort_int8-$1" node bench/peers/ort_bench.js --model "$ONNX_INT8" --config "$MODEL/config.json" --threads 2 --seq 128 \
        --batches 1,8,32 --runs "$RUNS" --warmup 1 --bench --json "$OUT/ort_int8-$1.json" ${2:+--check "$CACHE/check"}
}
torchb() {
    "$PY" -c 'import torch' 2>/dev/null || { skip "torch-$1" "python3-torch is not installed"; return; }
    step "torch-$1" "$PY" bench/peers/torch_bert.py --model "$MODEL" --threads 2 --seq 128 --batches 1,8,32 \
        --runs "$RUNS" --warmup 1 --bench --json "$OUT/torch-$1.json" ${2:+--check "$CACHE/check"}
}

if want engine; then
    say "engine round 1 (writes the checkpoint on first use)"
    engine 1 dump || exit 1
    engine_dtypes 1
    if want peers; then
        if [ ! -f "$ONNX" ] || [ "$MODEL/model.safetensors" -nt "$ONNX" ]; then
            say "exporting the checkpoint to ONNX (torch.onnx.export)"
            nb "$PY" bench/peers/torch_bert.py --model "$MODEL" --export "$ONNX" || echo "bench: ONNX export failed" >&2
        fi
        if [ -f "$ONNX" ] && { [ ! -f "$ONNX_INT8" ] || [ "$ONNX" -nt "$ONNX_INT8" ]; }; then
            say "quantizing the ONNX graph to int8 (bench/peers/quantize_int8.py)"
            "$PY" bench/peers/quantize_int8.py "$ONNX" "$ONNX_INT8" || echo "bench: int8 quantization failed" >&2
        fi
        say "ONNX Runtime round 1"; ort 1 check; ort8 1 check
        say "PyTorch round 1"; torchb 1 check
        for ((r = 2; r <= ROUNDS; r++)); do
            if ((r % 2 == 0)); then
                say "PyTorch round $r"; torchb "$r"
                say "ONNX Runtime round $r"; ort "$r"; ort8 "$r"
                say "engine round $r"; engine "$r"; engine_dtypes "$r"
            else
                say "engine round $r"; engine "$r"; engine_dtypes "$r"
                say "ONNX Runtime round $r"; ort "$r"; ort8 "$r"
                say "PyTorch round $r"; torchb "$r"
            fi
        done
    fi
fi

if want adapters; then
    say "adapters"
    if [ "$ADAPTERS_OK" = 1 ]; then
        step adapters "$B/bench/adapters" --model "$MODEL" --json "$OUT/adapters.json" --batch 32 --seq 128 \
            --runs $((RUNS + 3)) --threads 2 --loras 32
        # The same with the base in bf16 and int8 (adapters fp32 on top): adapters_<dtype>.json.
        for dt in bf16 int8; do
            step "adapters_$dt" "$B/bench/adapters" --model "$MODEL" --dtype "$dt" --json "$OUT/adapters_$dt.json" --batch 32 \
                --seq 128 --runs $((RUNS + 3)) --threads 2 --loras 32
        done
    else
        skip adapters "bench/adapters did not build (adapters/ incomplete?)"
    fi
fi

if want server; then
    say "server"
    if [ "$PEFTD_OK" = 0 ]; then skip server "build/peftd did not build"
    elif ! command -v wrk >/dev/null; then skip server "wrk is not installed"
    else
        step server "$PY" bench/server_bench.py --peftd "$B/peftd" --bert "$MODEL" --json "$OUT/server.json" \
            --logdir "$OUT/logs" --threads 2 "${SRV_ARGS[@]}"
        # The BERT-base table again with `peftd serve --dtype bf16|int8`: server_<dtype>.json.
        for dt in bf16 int8; do
            step "server_$dt" "$PY" bench/server_bench.py --peftd "$B/peftd" --bert "$MODEL" --dtype "$dt" --skip-tiny \
                --json "$OUT/server_$dt.json" --logdir "$OUT/logs" --threads 2 "${SRV_ARGS[@]}"
        done
    fi
fi

# Training: peftd's LoRA training step (bench/train.c, the trainer's pd_train_engine_step) against the same step
# in PyTorch (peers/torch_lora_train.py), BERT-base shape, batch 16 x 128, r=8 on query+value, AdamW, 2 threads;
# alternated rounds (peftd, torch, torch, peftd, ...), the ratio taken per round as for the engine. Each peftd
# round also trains through a bf16 and an int8 base, right after its fp32 step, for the per-dtype ratios.
if want train; then
    say "training throughput"
    if [ "$TRAIN_OK" = 0 ]; then skip train "bench/train did not build"
    else
        TSTEPS=5; TROUNDS=4 # the ratio is the median of the rounds: single rounds vary by +-15% here
        [ "$QUICK" = 1 ] && { TSTEPS=2; TROUNDS=1; }
        # peftd fp32 (train-peftd-N), then the same step through a bf16 and an int8 base (train_bf16-N, train_int8-N:
        # bench/train --dtype, the base POST /train trains through on a server started with that --dtype).
        trainp() {
            step "train-peftd-$1" "$B/bench/train" --model "$MODEL" --json "$OUT/train-peftd-$1.json" --steps "$TSTEPS" \
                --warmup 1 --threads 2 --batch 16 --seq 128 --r 8 --alpha 16
            local dt
            for dt in bf16 int8; do
                step "train_$dt-$1" "$B/bench/train" --model "$MODEL" --dtype "$dt" --json "$OUT/train_$dt-$1.json" \
                    --steps "$TSTEPS" --warmup 1 --threads 2 --batch 16 --seq 128 --r 8 --alpha 16
            done
        }
        traint() {
            "$PY" -c 'import torch' 2>/dev/null || { skip "train-torch-$1" "python3-torch is not installed"; return; }
            step "train-torch-$1" "$PY" bench/peers/torch_lora_train.py --model "$MODEL" --json "$OUT/train-torch-$1.json" \
                --steps "$TSTEPS" --warmup 1 --threads 2 --batch 16 --seq 128 --r 8 --alpha 16
        }
        for ((r = 1; r <= TROUNDS; r++)); do
            if ((r % 2)); then trainp "$r"; traint "$r"; else traint "$r"; trainp "$r"; fi
        done
    fi
fi

# Accuracy parity: the same SST-2 LoRA run (default model, same ids, same initial adapter, same order) through
# peftd's trainer (peftd serve, POST /train) and in PyTorch; dev accuracy of both (bench/parity.py).
if want parity; then
    say "training accuracy parity (SST-2, default model)"
    if [ "$TRAIN_OK" = 0 ] || [ "$PEFTD_OK" = 0 ]; then skip parity "peftd or bench/parity_data did not build"
    elif ! "$PY" -c 'import torch' 2>/dev/null; then skip parity "python3-torch is not installed"
    elif [ ! -f "$SST2/train.tsv" ] || [ ! -f "$SST2/dev.tsv" ]; then skip parity "no SST-2 at $SST2 (set BENCH_SST2 or PD_SHARED)"
    else
        [ -f "$CACHE/default/model.safetensors" ] || "$B/peftd" gen-model --out "$CACHE/default" >/dev/null ||
            echo "bench: peftd gen-model failed" >&2
        PN=20000; PE=2
        [ "$QUICK" = 1 ] && { PN=2000; PE=1; }
        step parity "$PY" bench/parity.py --peftd "$B/peftd" --prep "$B/bench/parity_data" --model "$CACHE/default" \
            --data "$SST2" --n-train "$PN" --epochs "$PE" --threads 2 --json "$OUT/parity.json"
    fi
fi

# Pretraining: peftd's masked-LM step (bench/pretrain.c, train/pretrain.c's pd_pretrainer_step, with the sgemm
# roofline timed in the same process) against the same step in PyTorch (peers/torch_mlm.py): 4 x 256, FFN 1024,
# vocabulary 16k, batch 32 x 128, fp32, 2 threads; alternated rounds as for training.
if want pretrain; then
    say "pretraining throughput"
    if [ "$PRETRAIN_OK" = 0 ]; then skip pretrain "bench/pretrain did not build"
    else
        PSTEPS=5; PROUNDS=4
        [ "$QUICK" = 1 ] && { PSTEPS=2; PROUNDS=1; }
        PSHAPE=(--layers 4 --hidden 256 --heads 4 --ffn 1024 --vocab 16384 --batch 32 --seq 128 --threads 2)
        pretrainp() { step "pretrain-peftd-$1" "$B/bench/pretrain" --json "$OUT/pretrain-peftd-$1.json" --steps "$PSTEPS" \
            --warmup 1 "${PSHAPE[@]}"; }
        pretraint() {
            "$PY" -c 'import torch' 2>/dev/null || { skip "pretrain-torch-$1" "python3-torch is not installed"; return; }
            step "pretrain-torch-$1" "$PY" bench/peers/torch_mlm.py --json "$OUT/pretrain-torch-$1.json" --steps "$PSTEPS" \
                --warmup 1 "${PSHAPE[@]}"
        }
        for ((r = 1; r <= PROUNDS; r++)); do
            if ((r % 2)); then pretrainp "$r"; pretraint "$r"; else pretraint "$r"; pretrainp "$r"; fi
        done
    fi
fi

# ==== Report ====

say "report"
PARTIAL=0
[ "$QUICK" = 1 ] || [ "$ONLY" != "gemm engine peers adapters server train parity pretrain" ] && PARTIAL=1
"$PY" bench/report.py --dir "$OUT" --results bench/results --quick "$QUICK" --partial "$PARTIAL" \
    --env-coretype "${OPENBLAS_CORETYPE:-}" --env-l2 "${OPENBLAS_L2_SIZE:-}"
