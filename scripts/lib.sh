# shellcheck shell=bash
# lib.sh - sourced by the ops scripts: --help and argument checks (args.sh), the server URL,
# the API key and one curl wrapper.
#
#   PEFTD_URL       server (or load balancer) address, default http://127.0.0.1:8080
#   PEFTD_API_KEY   sent as "Authorization: Bearer KEY" when set
#   PEFTD_API_KEY_FILE  read the key from this file instead (first line), as the server does
#
# api METHOD PATH [curl args...] prints the response body; on an HTTP error it prints the
# server's {"error": ...} body to stderr and returns curl's status (22).

. "$(dirname "${BASH_SOURCE[0]}")/args.sh"

PEFTD_URL=${PEFTD_URL:-http://127.0.0.1:8080}
PEFTD_URL=${PEFTD_URL%/}
if [ -z "${PEFTD_API_KEY:-}" ] && [ -n "${PEFTD_API_KEY_FILE:-}" ]; then
    IFS= read -r PEFTD_API_KEY <"$PEFTD_API_KEY_FILE" || true
fi

command -v curl >/dev/null 2>&1 || { echo "curl is required (apt-get install curl)" >&2; exit 1; }

api() {
    local method=$1 path=$2
    shift 2
    local auth=()
    [ -n "${PEFTD_API_KEY:-}" ] && auth=(-H "Authorization: Bearer $PEFTD_API_KEY")
    local rc=0
    curl -sS --fail-with-body -X "$method" "${auth[@]}" "$@" "$PEFTD_URL$path" || rc=$?
    [ "$rc" -eq 0 ] && return 0
    echo "$(basename "$0"): $method $path failed" >&2
    return "$rc"
}

# Encodes a string as a JSON string literal (quotes included), with Python's json module
# when available, else a sed fallback for the usual escapes.
json_str() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"
    else
        printf '"%s"\n' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g')"
    fi
}

# Pretty-prints JSON from stdin when python3 is there; passes it through otherwise.
pretty() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json,sys
d=sys.stdin.read()
try: print(json.dumps(json.loads(d), indent=2, ensure_ascii=False))
except ValueError: sys.stdout.write(d)'
    else
        cat
    fi
}
