#!/usr/bin/env bash
# list.sh [NAME] - lists the adapters (name, version, method, task, labels, size), or one.
# A name starting with "-" goes after "--".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pd_positional "$@"
case ${#POS[@]} in
    0) api GET /adapters | pretty ;;
    1) api GET "/adapters/${POS[0]}" -H "X-Adapter: ${POS[0]}" | pretty ;;
    *) pd_usage_error "usage: $(basename "$0") [NAME]" ;;
esac
