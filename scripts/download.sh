#!/usr/bin/env bash
# download.sh NAME FILE [OUT] - saves one file of adapter NAME's current version
# (e.g. adapter_config.json, adapter_model.safetensors) to OUT (default: ./FILE).
# A name starting with "-" goes after "--".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pd_positional "$@"
[ ${#POS[@]} -ge 2 ] && [ ${#POS[@]} -le 3 ] || pd_usage_error "usage: $(basename "$0") NAME FILE [OUT]"
name=${POS[0]} file=${POS[1]} out=${POS[2]:-$(basename "${POS[1]}")}
tmp="$out.part.$$"
trap 'rm -f "$tmp"' EXIT
# Errors come back as a JSON body: show it instead of saving it as the file.
if ! api GET "/adapters/$name/files/$file" -H "X-Adapter: $name" -o "$tmp"; then
    cat "$tmp" >&2 2>/dev/null && echo >&2
    exit 1
fi
mv "$tmp" "$out"
echo "saved $out ($(wc -c <"$out") bytes)"
