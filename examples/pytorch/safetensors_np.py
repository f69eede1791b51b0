"""Read and write safetensors files with numpy alone.

Debian's python3-torch (1.13) comes without the `safetensors` package, and
the format is small: an 8-byte little-endian header length, a JSON header
mapping each tensor name to its dtype, shape and byte range, then the
tensors' bytes (little-endian, C order). This module reads what fedguard's
agent writes (F32) and writes what it reads back, so a trainer needs
nothing beyond numpy. See the `safetensors` Go package for the format and
what fedguard refuses.
"""

import json
import struct
from collections import OrderedDict

import numpy as np

# Bound on the JSON header, as in the reference implementation.
MAX_HEADER = 100_000_000

_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "F64": np.dtype("<f8"),
}


def load(path):
    """Return the tensors of a safetensors file as an ordered dict of
    numpy arrays (in file order), and its metadata dict."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: shorter than 8 bytes")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER:
            raise ValueError(f"{path}: header of {n} bytes is over {MAX_HEADER}")
        header = json.loads(f.read(n).decode("utf-8"))
        data = f.read()
    meta = header.pop("__metadata__", {}) or {}
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    out = OrderedDict()
    end = 0
    for name, e in entries:
        dt = _DTYPES.get(e["dtype"])
        if dt is None:
            raise ValueError(f"{path}: tensor {name}: dtype {e['dtype']} not supported")
        begin, stop = e["data_offsets"]
        shape = tuple(e["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if begin != end or stop - begin != count * dt.itemsize or stop > len(data):
            raise ValueError(f"{path}: tensor {name}: bad data offsets {begin}, {stop}")
        out[name] = np.frombuffer(data, dtype=dt, count=count, offset=begin).reshape(shape).astype(np.float32)
        end = stop
    if end != len(data):
        raise ValueError(f"{path}: {len(data) - end} bytes after the last tensor")
    return out, meta


def save(path, tensors, metadata=None):
    """Write tensors (name -> array, in the dict's order) as F32
    safetensors; the header is padded with spaces to a multiple of 8
    bytes, as the reference writer does."""
    header = OrderedDict()
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, value in tensors.items():
        # Not np.ascontiguousarray: it turns a scalar (shape ()) into shape (1,).
        a = np.array(value, dtype="<f4", order="C")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
