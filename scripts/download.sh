#!/usr/bin/env bash
# download.sh NAME FILE [OUT] - saves one file of adapter NAME's current version
# (e.g. adapter_config.json, adapter_model.safetensors) to OUT (default: ./FILE).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -ge 2 ] && [ $# -le 3 ] || { echo "usage: $0 NAME FILE [OUT]" >&2; exit 2; }
name=$1 file=$2 out=${3:-$(basename "$2")}
tmp="$out.part.$$"
trap 'rm -f "$tmp"' EXIT
# Errors come back as a JSON body: show it instead of saving it as the file.
if ! api GET "/adapters/$name/files/$file" -H "X-Adapter: $name" -o "$tmp"; then
    cat "$tmp" >&2 2>/dev/null && echo >&2
    exit 1
fi
mv "$tmp" "$out"
echo "saved $out ($(wc -c <"$out") bytes)"
