#!/usr/bin/env bash
# list.sh [NAME] - lists the adapters (name, version, method, task, labels, size), or one.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
case $# in
    0) api GET /adapters | pretty ;;
    1) api GET "/adapters/$1" -H "X-Adapter: $1" | pretty ;;
    *) echo "usage: $0 [NAME]" >&2; exit 2 ;;
esac
