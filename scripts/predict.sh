#!/usr/bin/env bash
# predict.sh [OPTIONS] [ADAPTER] INPUT... - runs inputs through an adapter (or the bare base).
#
# INPUT is a JSON value - '"a sentence"', '{"text": "...", "text_pair": "..."}' or
# '{"question": "...", "context": "..."}' - or plain text (anything not starting with { or ")
# which is sent as one sentence. With two or more arguments the first one is the ADAPTER
# ("-" for none: the base model's own head).
#
# Options: --logits (add raw logits), --top-k N, --task classification|question_answering.
#
#   scripts/predict.sh demo 'a great movie' 'a boring mess'
#   scripts/predict.sh squad '{"question": "who?", "context": "Ann wrote it."}'
set -euo pipefail
. "$(dirname "$0")/lib.sh"

extra=""
while [ $# -gt 0 ]; do
    case "$1" in
        --logits) extra+=', "return_logits": true'; shift ;;
        --top-k) extra+=", \"top_k\": $2"; shift 2 ;;
        --task) extra+=", \"task\": $(json_str "$2")"; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--logits] [--top-k N] [--task T] [ADAPTER] INPUT..." >&2; exit 2; }

adapter=""
if [ $# -ge 2 ]; then
    adapter=$1
    shift
    [ "$adapter" = - ] && adapter=""
fi

inputs=""
for a in "$@"; do
    case "$a" in
        \{*|\"*) v=$a ;;
        *) v=$(json_str "$a") ;;
    esac
    inputs+="${inputs:+, }$v"
done

hdr=()
if [ -n "$adapter" ]; then
    body="{\"adapter\": $(json_str "$adapter"), \"inputs\": [$inputs]$extra}"
    hdr=(-H "X-Adapter: $adapter")
else
    body="{\"inputs\": [$inputs]$extra}"
fi
api POST /predict "${hdr[@]}" -H 'Content-Type: application/json' --data-binary "$body" | pretty
