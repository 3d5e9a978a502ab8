#!/usr/bin/env bash
# delete.sh NAME - removes adapter NAME (requests already running on it finish first).
# A name starting with "-" goes after "--": delete.sh -- -odd-name
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pd_positional "$@"
[ ${#POS[@]} -eq 1 ] || pd_usage_error "usage: $(basename "$0") NAME"
name=${POS[0]}
rc=0
out=$(api DELETE "/adapters/$name" -H "X-Adapter: $name") || rc=$?
[ "$rc" -eq 0 ] || { printf '%s\n' "$out" | pretty; exit "$rc"; }
if [ -n "$out" ]; then printf '%s\n' "$out" | pretty; else echo "deleted $name"; fi
