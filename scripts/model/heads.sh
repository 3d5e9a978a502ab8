#!/usr/bin/env bash
# heads.sh - the `heads` stage of make-model.sh: the checkpoint's own heads, then the evidence table.
#
#   scripts/model/heads.sh --work WORK [--quick]
#
#   1. heads.py: sentiment (SST-2 train) and QA (WORK/qa) LoRAs trained through `peftd serve`,
#      merged into WORK/pretrain/model -> WORK/final (F16), checked through /predict -> WORK/heads/heads.json
#   2. evidence.py: LoRA, prefix tuning, bottleneck adapters on SUBJ and WikiQA, two training seeds
#      each, on WORK/final and on a random model of the same shape (WORK/random-init) -> WORK/evidence.json
# Full run: about 1.5 hours on 2 shared cores (SST-2 65k sentences x 3 epochs, 18k QA questions,
# 24 evidence jobs);
# --quick: slices of a few hundred examples, under a minute. PEFTD names the binary.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
WORK="" QARGS=() EVARGS=(--tasks subj,wikiqa --seeds 7,8)
while [ $# -gt 0 ]; do
    case "$1" in
        --work) WORK=$2; shift ;;
        --quick) QARGS=(--quick) EVARGS=(--quick) ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "heads.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$WORK" ] || { echo "heads.sh: --work is required" >&2; exit 2; }
PEFTD=${PEFTD:-$ROOT/build/peftd}
[ -x "$PEFTD" ] || make -C "$ROOT" -s build/peftd
"$PY" "$HERE/heads.py" --peftd "$PEFTD" --pretrained "$WORK/pretrain/model" --qa "$WORK/qa" \
    --work "$WORK/heads" --out "$WORK/final" "${QARGS[@]}"
"$PY" "$HERE/evidence.py" --peftd "$PEFTD" --base "$WORK/final" --out "$WORK/evidence.json" \
    --random "$WORK/random-init" --corpus "$WORK/corpus/heldout.txt" "${EVARGS[@]}"
