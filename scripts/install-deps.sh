#!/usr/bin/env bash
# install-deps.sh - installs the Debian packages peftd needs, only those missing.
#
#   scripts/install-deps.sh          build + run: compiler, libmicrohttpd, cJSON, OpenBLAS, curl
#   scripts/install-deps.sh --test   also what the test suite needs (nginx, python3-yaml, node+npm,
#                                    and chromium for the console's browser test, if it can be had)
#
# A no-op (one dpkg-query) when everything is present. Installs as root, or through sudo when
# available; otherwise prints the apt-get command to run and fails. Used by `make run`,
# `make test` and .ci/run. The image build installs its own tools (docker/build-image.sh).
set -euo pipefail
. "$(dirname "$0")/args.sh"

# Each entry is "pkg" or "pkg|alternative": satisfied when any of them is installed, the first
# one is installed otherwise.
RUNTIME=(gcc make libc6-dev pkg-config libmicrohttpd-dev libcjson-dev libopenblas-dev curl python3)
# nginx-light is a transitional package for nginx on bookworm; either provides /usr/sbin/nginx
# with the upstream hash module the replica test and docker/nginx.conf use.
TEST=("nginx-light|nginx" python3-yaml)

want=("${RUNTIME[@]}")
case "$#:${1:-}" in
    1:--test) want+=("${TEST[@]}") ;;
    0:) ;;
    *) pd_usage_error "usage: $(basename "$0") [--test]" ;;
esac

# One dpkg-query for every name: "pkg<TAB>status" per line. It exits 1 when some name is
# unknown to dpkg (never installed), which is an answer here, not an error.
all=()
for entry in "${want[@]}"; do IFS='|' read -r -a alts <<<"$entry"; all+=("${alts[@]}"); done
have=" $(dpkg-query -W -f='${Package}\t${Status}\n' "${all[@]}" 2>/dev/null |
          awk -F'\t' '$2 == "install ok installed" { sub(/:.*/, "", $1); printf "%s ", $1 }' || true)"

missing=()
for entry in "${want[@]}"; do
    IFS='|' read -r -a alts <<<"$entry"
    ok=0
    for p in "${alts[@]}"; do
        case "$have" in *" $p "*) ok=1; break ;; esac
    done
    [ "$ok" = 1 ] || missing+=("${alts[0]}")
done

# The Kubernetes schema check (tests/e2e/test_k8s.py) runs npm's kubernetes-models under Node.
# Node may come from Debian or elsewhere (this machine kind ships it), so look for the commands.
if [ "${1:-}" = --test ]; then
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
fi

# The console's browser test (tests/e2e/test_console.py) drives Debian's chromium. It is
# optional: when it cannot be installed (no network) that test skips with a message (under
# CI=true it fails instead), and everything else still runs.
optional=()
if [ "${1:-}" = --test ] && ! command -v chromium >/dev/null 2>&1; then
    optional+=(chromium)
fi

[ "${#missing[@]}" -eq 0 ] && [ "${#optional[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
elif [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: not root: ${optional[*]} not installed; the console's browser test will be skipped" >&2
    exit 0
else
    echo "install-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install-deps: run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ "${#optional[@]}" -gt 0 ]; then
    echo "install-deps: installing ${optional[*]} (optional)"
    { [ "${#missing[@]}" -gt 0 ] || "${SUDO[@]}" apt-get update -qq; } &&
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${optional[@]}" ||
        echo "install-deps: could not install ${optional[*]}; the console's browser test will be skipped" >&2
fi
