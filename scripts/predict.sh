#!/usr/bin/env bash
# predict.sh [OPTIONS] [ADAPTER] INPUT... - runs inputs through an adapter (or the bare base).
#
# INPUT is a JSON value - '"a sentence"', '{"text": "...", "text_pair": "..."}' or
# '{"question": "...", "context": "..."}' - or plain text (anything not starting with { or ")
# which is sent as one sentence. With two or more arguments the first one is the ADAPTER
# ("-" for none: the base model's own head).
#
# Options, anywhere: --logits (add raw logits), --top-k N (0-100), --task classification or
# question_answering; "--" ends them (an input or adapter starting with "-" comes after it).
#
#   scripts/predict.sh demo 'a great movie' 'a boring mess'
#   scripts/predict.sh squad '{"question": "who?", "context": "Ann wrote it."}'
set -euo pipefail
. "$(dirname "$0")/lib.sh"

extra=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --logits) extra+=', "return_logits": true'; shift ;;
        --top-k)
            [ $# -ge 2 ] || pd_usage_error "--top-k needs a value"
            pd_int --top-k "$2" 0
            [ "$2" -le 100 ] || pd_usage_error "--top-k must be at most 100"
            extra+=", \"top_k\": $2"; shift 2 ;;
        --task)
            [ $# -ge 2 ] || pd_usage_error "--task needs a value"
            case "$2" in classification | question_answering) ;; *) pd_usage_error "--task is classification or question_answering" ;; esac
            extra+=", \"task\": $(json_str "$2")"; shift 2 ;;
        --) shift; args+=("$@"); break ;;
        -?*) pd_usage_error "unknown option $1" ;;
        *) args+=("$1"); shift ;;
    esac
done
set -- "${args[@]+"${args[@]}"}"
[ $# -ge 1 ] || pd_usage_error "usage: $(basename "$0") [--logits] [--top-k N] [--task T] [ADAPTER] INPUT..."

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
