"""Minimal, dependency-free safetensors writer and reader (torch + numpy only).

Format (https://github.com/huggingface/safetensors, README "Format"):
  8 bytes   little-endian u64 N = length of the JSON header
  N bytes   UTF-8 JSON: {"__metadata__": {str: str}, name: {"dtype", "shape",
            "data_offsets": [begin, end]}, ...}; offsets are relative to the
            first byte after the header. We pad the header with spaces so the
            data section starts on an 8-byte boundary (what the Rust crate does).
  rest      raw little-endian tensor bytes, row-major, no gaps.

Tensors are written in sorted name order, so output is byte-identical for the
same input. bf16 is handled by reinterpreting the storage as int16.
"""

import json
import struct

import numpy as np
import torch

_DT_TO_STR = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_STR_TO_DT = {v: k for k, v in _DT_TO_STR.items()}
_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4,
             "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        arr = t.view(torch.int16).numpy()
    else:
        arr = t.numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def tensor_nbytes(t):
    return t.numel() * _ITEMSIZE[_DT_TO_STR[t.dtype]]


def save_file(tensors, path, metadata=None):
    """Write {name: torch.Tensor} to `path` in safetensors format."""
    if metadata is None:
        metadata = {"format": "pt"}
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        b = _tensor_bytes(t)
        header[name] = {
            "dtype": _DT_TO_STR[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(b)],
        }
        blobs.append(b)
        offset += len(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def load_file(path):
    """Read a safetensors file; returns ({name: torch.Tensor}, metadata)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    meta = header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        b0, b1 = info["data_offsets"]
        dt = info["dtype"]
        shape = tuple(info["shape"])
        buf = raw[base + b0: base + b1]
        count = int(np.prod(shape)) if shape else 1
        assert len(buf) == count * _ITEMSIZE[dt], (name, len(buf))
        if dt == "BF16":
            arr = np.frombuffer(buf, dtype="<i2").reshape(shape)
            t = torch.from_numpy(arr.copy()).view(torch.bfloat16)
        else:
            npdt = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8",
                    "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1",
                    "BOOL": "?"}[dt]
            arr = np.frombuffer(buf, dtype=npdt).reshape(shape)
            t = torch.from_numpy(arr.copy())
        out[name] = t
    return out, meta
