#!/usr/bin/env bash
# train.sh - starts a training job; prints the job id (follow it with watch-job.sh).
#
#   train.sh REQUEST.json
#       posts the request as it is
#   train.sh --adapter NAME --data TRAIN.jsonl [--eval EVAL.jsonl] [--method lora]
#            [--task classification] [--epochs 3] [--labels neg,pos] [--config '{"r": 8}']
#       builds the request from JSON-lines examples ({"text": ..., "label": ...} or
#       {"question": ..., "context": ..., "answer": ...}); labels default to the sorted
#       distinct labels of the training data.
#
# The request is {"adapter", "method", "task", "labels", "config", "train", "eval", "epochs"}
# and the server answers 202 {"job": ID}. Training arrives with its own issue: until the
# server has POST /train this script gets 404 back.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

if [ $# -eq 1 ] && [ -f "$1" ]; then
    body=$(cat "$1")
else
    adapter="" data="" evalf="" method=lora task=classification epochs=3 labels="" config="{}"
    while [ $# -gt 0 ]; do
        case "$1" in
            --adapter) adapter=$2; shift 2 ;;
            --data) data=$2; shift 2 ;;
            --eval) evalf=$2; shift 2 ;;
            --method) method=$2; shift 2 ;;
            --task) task=$2; shift 2 ;;
            --epochs) epochs=$2; shift 2 ;;
            --labels) labels=$2; shift 2 ;;
            --config) config=$2; shift 2 ;;
            *) usage ;;
        esac
    done
    [ -n "$adapter" ] && [ -n "$data" ] || usage
    command -v python3 >/dev/null 2>&1 || { echo "$0: building a request needs python3" >&2; exit 1; }
    body=$(python3 - "$adapter" "$data" "$evalf" "$method" "$task" "$epochs" "$labels" "$config" <<'PY'
import json, sys
adapter, data, evalf, method, task, epochs, labels, config = sys.argv[1:]
def rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]
train = rows(data)
req = {"adapter": adapter, "method": method, "task": task, "config": json.loads(config),
       "train": train, "epochs": int(epochs)}
if task == "classification":
    req["labels"] = labels.split(",") if labels else sorted({r["label"] for r in train})
if evalf:
    req["eval"] = rows(evalf)
print(json.dumps(req))
PY
)
    hdr_adapter=$adapter
fi
name=${hdr_adapter:-$(printf '%s' "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("adapter",""))' 2>/dev/null || true)}
hdr=()
[ -n "$name" ] && hdr=(-H "X-Adapter: $name")
api POST /train "${hdr[@]}" -H 'Content-Type: application/json' --data-binary "$body" | pretty
