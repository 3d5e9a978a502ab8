#!/usr/bin/env bash
# onednn.sh - builds and runs bench/peers/onednn_matmul.c: oneDNN's matmul against peftd's
# packed kernels (the library evaluation of docs/ENGINE.md "Low-precision GEMM"). Needs
# Debian's libdnnl-dev, which peftd itself does not depend on. Extra arguments go to the program.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BENCH_BUILD:-build}
[ -f /usr/include/oneapi/dnnl/dnnl.h ] || { echo "onednn: install libdnnl-dev first" >&2; exit 1; }
make -s -j2 B="$B" "$B/peftd" >/dev/null
mkdir -p "$B/peers"
objs=$(ls "$B"/obj/core/*.o)
cc -std=c11 -O2 -D_GNU_SOURCE -Icore -Ibench $(pkg-config --cflags openblas) bench/peers/onednn_matmul.c $objs \
   -o "$B/peers/onednn_matmul" -ldnnl -lgomp $(pkg-config --libs openblas libcjson libmicrohttpd) -lpthread -lm
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$B/peers/onednn_matmul" "$@"
