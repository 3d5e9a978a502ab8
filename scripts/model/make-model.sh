#!/usr/bin/env bash
# make-model.sh - the pipeline that builds peftd's pretrained default model (issue 15);
# `make model` runs it (the whole pipeline, a few hours; see Duration below).
#
#   scripts/model/make-model.sh [--quick] [--work DIR] [--from STAGE] [--to STAGE] [--vocab NAME]
#
# Stages, in order (each prints its wall time; a summary of all of them ends the run):
#   corpus    corpus.py: install the Debian and npm sources, extract, clean, de-duplicate,
#             split, hold out >= 1%, remove sentences of SST-2/SUBJ/WikiQA -> WORK/corpus/
#   vocab     vocab.py: WordPiece vocabularies (8,192 and 16,384; --quick: 2,048) learned from
#             the corpus, measured, checked against peftd's tokenizer (and, full run, against
#             a second implementation, @lenml/tokenizers) -> WORK/vocab/
#   qa        qa_data.py: SQuAD-style QA examples from WordNet -> WORK/qa/
#   pretrain  `peftd pretrain` (train/pretrain.c): masked-LM pretraining -> WORK/pretrain/
#   heads     heads.sh: the checkpoint's own heads (sentiment on SST-2 train, QA on WORK/qa/)
#             merged into the base -> WORK/final/, and the evidence table -> WORK/evidence.json
#   card      card.py: the model card from the manifests and the runs; the full run installs
#             the model, its card and runs/ as models/peftd-mini-en/ (--quick: WORK/final/)
#
# Duration of the full run on 2 shared cores: corpus ~5 min, vocab ~2 min, qa <1 min,
# pretrain ~2.5-5 h (44M tokens, the shipped model's length; checkpointed, `--from pretrain` resumes),
# heads ~1.5 h, card <1 min. (The shipped run's schedule was resized on resume, 85M -> 36M -> 30M, then
# continued 30M -> 44M: docs/PRETRAINING.md "The long run"; a run from scratch decays over 44M from the start.)
# --quick runs every stage on a small slice (a smoke test of a minute or two once the packages
# are installed). --work defaults to build/model (build/model-quick with --quick). PEFTD
# names the peftd binary (default build/peftd, built when missing). ABLATIONS names a directory
# of pretraining ablation runs (docs/PRETRAINING.md) whose results the card should show.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
STAGES=(corpus vocab qa pretrain heads card)

QUICK=0 WORK="" FROM=corpus TO=card VOCAB=""
usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --work) WORK=$2; shift ;;
        --from) FROM=$2; shift ;;
        --to) TO=$2; shift ;;
        --vocab) VOCAB=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "make-model: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$WORK" ] || { [ "$QUICK" = 1 ] && WORK=$ROOT/build/model-quick || WORK=$ROOT/build/model; }
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
QARGS=()
[ "$QUICK" = 1 ] && QARGS=(--quick)
if [ -z "$VOCAB" ]; then [ "$QUICK" = 1 ] && VOCAB=wp2k || VOCAB=wp16k; fi
PEFTD=${PEFTD:-$ROOT/build/peftd}

index_of() { local i; for i in "${!STAGES[@]}"; do [ "${STAGES[$i]}" = "$1" ] && { echo "$i"; return; }; done
             echo "make-model: unknown stage '$1' (stages: ${STAGES[*]})" >&2; exit 2; }
I_FROM=$(index_of "$FROM")
I_TO=$(index_of "$TO")

# ==== Stages ====

# --quick shares the full run's npm install (a minute of npm ci) instead of making its own.
stage_corpus() {
    if [ "$QUICK" = 1 ]; then "$PY" "$HERE/corpus.py" --work "$WORK" --quick --npm-prefix "$ROOT/build/model/npm"
    else "$PY" "$HERE/corpus.py" --work "$WORK"; fi
}

stage_vocab() {
    if [ "$QUICK" = 1 ]; then "$PY" "$HERE/vocab.py" --work "$WORK" --sizes 2048
    else "$PY" "$HERE/vocab.py" --work "$WORK" --sizes 8192,16384 --peer-check; fi
}

stage_qa() { "$PY" "$HERE/qa_data.py" --work "$WORK" "${QARGS[@]}"; }

# missing WHAT WHO: stops the pipeline at a stage whose command is not written yet.
missing() {
    echo "make-model: stage '$STAGE' cannot run: $1 does not exist yet ($2)." >&2
    echo "make-model: the stages before it are done; their outputs are in $WORK." >&2
    return 3
}

peftd_has() { # peftd_has SUBCOMMAND: the peftd binary knows the subcommand
    [ -x "$PEFTD" ] || make -C "$ROOT" -s "${PEFTD#"$ROOT"/}" >/dev/null 2>&1 || return 1
    "$PEFTD" "$1" --help >/dev/null 2>&1
}

stage_pretrain() {
    peftd_has pretrain || { missing "'peftd pretrain'" "train/pretrain.c, engineer pretrain"; return; }
    local args=(--corpus "$WORK/corpus/train.txt" --heldout "$WORK/corpus/heldout.txt"
                --vocab "$WORK/vocab/$VOCAB" --out "$WORK/pretrain")
    if [ "$QUICK" = 1 ]; then args+=(--quick)
    else args+=(--layers 4 --hidden 256 --heads 4 --ffn 1024 --seq 128 --batch 32 --lr 1e-3 --warmup 0.04
                --tokens 44e6 --seed 1 --threads 2 --ckpt-minutes 10 --eval-minutes 10 --eval-windows 512)
         [ -f "$WORK/pretrain/state.safetensors" ] && args+=(--resume); fi
    "$PEFTD" pretrain "${args[@]}"
}

stage_heads() {
    [ -x "$HERE/heads.sh" ] || { missing "scripts/model/heads.sh" "the heads' fine-tuning, a later engineer"; return; }
    "$HERE/heads.sh" --work "$WORK" "${QARGS[@]}"
}

stage_card() {
    [ -f "$HERE/card.py" ] || { missing "scripts/model/card.py" "the model card, a later engineer"; return; }
    [ -z "${ABLATIONS:-}" ] || "$PY" "$HERE/ablations.py" --dir "$ABLATIONS" --out "$WORK/ablations.json"
    if [ "$QUICK" = 1 ]; then "$PY" "$HERE/card.py" --work "$WORK" --quick
    else "$PY" "$HERE/card.py" --work "$WORK" --out "$ROOT/models/peftd-mini-en"; fi
}

# ==== Driver ====

TIMES=()
T_ALL=$SECONDS
rc=0
for i in "${!STAGES[@]}"; do
    [ "$i" -ge "$I_FROM" ] && [ "$i" -le "$I_TO" ] || continue
    STAGE=${STAGES[$i]}
    echo "== make-model: stage $STAGE (work dir $WORK$([ "$QUICK" = 1 ] && echo ', quick'))"
    t0=$EPOCHREALTIME
    set +e
    "stage_$STAGE"
    rc=$?
    set -e
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    TIMES+=("$(printf '%-9s %8.1f s  %s' "$STAGE" "$secs" "$([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)")")")
    echo "== make-model: stage $STAGE $([ $rc = 0 ] && echo done || echo failed) in $(printf '%.1f' "$secs") s"
    [ $rc = 0 ] || break
done

echo
echo "make-model: stage wall times"
printf '  %s\n' "${TIMES[@]}"
echo "  total     $((SECONDS - T_ALL)) s"
sizes=()
for f in corpus/train.txt corpus/heldout.txt vocab/$VOCAB/vocab.txt qa/train.jsonl qa/heldout.jsonl; do
    [ -f "$WORK/$f" ] && sizes+=("$(printf '%-22s %12d bytes' "$f" "$(stat -c %s "$WORK/$f")")")
done
[ "${#sizes[@]}" -gt 0 ] && { echo "make-model: outputs in $WORK"; printf '  %s\n' "${sizes[@]}"; }
exit $rc
