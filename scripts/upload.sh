#!/usr/bin/env bash
# upload.sh NAME DIR - publishes the adapter files in DIR as adapter NAME (a new version if
# NAME exists; requests in flight finish on the old one).
#
# DIR holds a PEFT adapter (adapter_config.json + adapter_model.safetensors) or an AdapterHub
# adapter (adapter_config.json + adapter.safetensors [+ head_config.json + model_head.safetensors]).
# An optional labels.json (a JSON array of label names) overrides the labels in the files.
# Pickle files (*.bin) are refused by the server; convert them to safetensors first.
# A name starting with "-" goes after "--".
set -euo pipefail
. "$(dirname "$0")/lib.sh"

pd_positional "$@"
[ ${#POS[@]} -eq 2 ] || pd_usage_error "usage: $(basename "$0") NAME DIR"
name=${POS[0]} dir=${POS[1]%/}
[ -d "$dir" ] || { echo "$0: $dir is not a directory" >&2; exit 2; }
[ -f "$dir/adapter_config.json" ] || { echo "$0: $dir has no adapter_config.json" >&2; exit 2; }

form=(-F "name=$name" -F "config=@$dir/adapter_config.json;type=application/json")
if [ -f "$dir/adapter_model.safetensors" ]; then
    form+=(-F "weights=@$dir/adapter_model.safetensors;type=application/octet-stream")
elif [ -f "$dir/adapter.safetensors" ]; then
    form+=(-F "weights=@$dir/adapter.safetensors;type=application/octet-stream")
else
    if ls "$dir"/*.bin >/dev/null 2>&1; then
        echo "$0: $dir has only pickle weights (*.bin), which peftd refuses (unpickling runs code)." >&2
        echo "  Convert once: python3 -c \"import torch; from safetensors.torch import save_file; save_file(torch.load('$dir/adapter_model.bin', map_location='cpu'), '$dir/adapter_model.safetensors')\"" >&2
    else
        echo "$0: $dir has no adapter_model.safetensors or adapter.safetensors" >&2
    fi
    exit 2
fi
[ -f "$dir/head_config.json" ] && form+=(-F "head_config=@$dir/head_config.json;type=application/json")
[ -f "$dir/model_head.safetensors" ] && form+=(-F "head_weights=@$dir/model_head.safetensors;type=application/octet-stream")
[ -f "$dir/labels.json" ] && form+=(-F "labels=@$dir/labels.json;type=application/json")

# X-Adapter routes the upload to the replica that will serve NAME (docker/nginx.conf).
api POST /adapters -H "X-Adapter: $name" "${form[@]}" | pretty
