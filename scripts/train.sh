#!/usr/bin/env bash
# train.sh - starts a training job (docs/TRAINING.md); prints {"job": ID, "status": "queued"}.
# Follow it with watch-job.sh ID.
#
#   train.sh REQUEST.json
#       posts a complete JSON request as it is.
#   train.sh --adapter NAME --data TRAIN.jsonl [--eval EVAL.jsonl] [--method lora]
#            [--task classification] [--labels negative,positive] [--config '{"r": 8}']
#            [--epochs N] [--batch-size N] [--learning-rate X] [--eval-fraction F]
#            [--set KEY=JSON]...
#       sends the spec and the JSON-lines files as a multipart body (parts spec, train, eval),
#       so large data never has to fit in one JSON document. Without --method an existing
#       adapter continues training from its current version.
#
#   scripts/train.sh --adapter sst2 --method lora --data examples/sst2-small.jsonl --epochs 3
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() { pd_help >&2; exit 2; }

if [ $# -eq 1 ] && [ -f "$1" ]; then
    name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("adapter", ""))' "$1" 2>/dev/null || true)
    hdr=()
    [ -n "$name" ] && hdr=(-H "X-Adapter: $name")
    api POST /train "${hdr[@]}" -H 'Content-Type: application/json' --data-binary "@$1" | pretty
    exit
fi

adapter="" data="" evalf="" spec="" method="" task=""
add() { spec+="${spec:+, }$(json_str "$1"): $2"; }   # add KEY JSON-VALUE
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || pd_usage_error "$1 needs a value"
    case "$1" in
        --adapter) adapter=$2; add adapter "$(json_str "$2")" ;;
        --data) data=$2 ;;
        --eval) evalf=$2 ;;
        --method) method=$2; add method "$(json_str "$2")" ;;
        --task) task=$2; add task "$(json_str "$2")" ;;
        --labels)
            l=""
            IFS=, read -r -a parts <<<"$2"
            for p in "${parts[@]}"; do l+="${l:+, }$(json_str "$p")"; done
            add labels "[$l]" ;;
        --config) add config "$2" ;;
        --epochs) pd_int --epochs "$2" 1; add epochs "$2" ;;
        --batch-size) pd_int --batch-size "$2" 1; add batch_size "$2" ;;
        --learning-rate) pd_number --learning-rate "$2"; add learning_rate "$2" ;;
        --eval-fraction) pd_number --eval-fraction "$2"; add eval_fraction "$2" ;;
        --set) add "${2%%=*}" "${2#*=}" ;;
        *) pd_usage_error "unknown option $1" ;;
    esac
    shift 2
done
[ -n "$adapter" ] && [ -n "$data" ] || usage
[ -f "$data" ] || { echo "$0: $data: no such file" >&2; exit 2; }
# A new adapter (--method given) needs a task: without --task, take it from the data's first
# example ("question" -> question_answering, else classification).
if [ -n "$method" ] && [ -z "$task" ]; then
    if head -n 1 "$data" | grep -q '"question"'; then task=question_answering; else task=classification; fi
    add task "$(json_str "$task")"
fi
# --form-string: the spec is sent verbatim (curl -F would read ";" "@" "<" in it as directives).
form=(--form-string "spec={$spec}" -F "train=@$data;type=application/jsonl")
if [ -n "$evalf" ]; then
    [ -f "$evalf" ] || { echo "$0: $evalf: no such file" >&2; exit 2; }
    form+=(-F "eval=@$evalf;type=application/jsonl")
fi
api POST /train -H "X-Adapter: $adapter" "${form[@]}" | pretty
