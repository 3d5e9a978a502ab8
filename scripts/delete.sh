#!/usr/bin/env bash
# delete.sh NAME - removes adapter NAME (requests already running on it finish first).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -eq 1 ] || { echo "usage: $0 NAME" >&2; exit 2; }
rc=0
out=$(api DELETE "/adapters/$1" -H "X-Adapter: $1") || rc=$?
[ "$rc" -eq 0 ] || { printf '%s\n' "$out" | pretty; exit "$rc"; }
if [ -n "$out" ]; then printf '%s\n' "$out" | pretty; else echo "deleted $1"; fi
