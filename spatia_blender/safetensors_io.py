"""Read and write safetensors with numpy alone (the `safetensors` package does not ship with Blender).

The format: an 8-byte little-endian header length, a JSON header mapping each tensor name
to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the buffer that follows)
plus an optional "__metadata__" of string pairs, then the raw little-endian buffers.
"""

from __future__ import annotations

import json

import numpy as np

DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
    "BOOL": np.bool_,
}
NAMES = {np.dtype(v).newbyteorder("<"): k for k, v in DTYPES.items()}
MAX_HEADER = 100 * 2**20


class SafetensorsError(ValueError):
    """The bytes are not a well-formed safetensors file; the message says what is wrong."""


def read_safetensors(data, source: str = "safetensors") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) of a safetensors file given as bytes. Arrays are copies (writable)."""
    view = memoryview(data)
    if len(view) < 8:
        raise SafetensorsError(f"{source}: truncated ({len(view)} bytes)")
    size = int.from_bytes(view[:8], "little")
    if size > MAX_HEADER or 8 + size > len(view):
        raise SafetensorsError(f"{source}: header claims {size} bytes but the file has {len(view) - 8}")
    try:
        header = json.loads(bytes(view[8:8 + size]))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SafetensorsError(f"{source}: header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{source}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    buffer = view[8 + size:]
    tensors = {}
    for name, info in header.items():
        try:
            dtype = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
            shape = tuple(int(n) for n in info["shape"])
            begin, end = (int(n) for n in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{source}: tensor {name!r} has a malformed entry {info!r}") from None
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not 0 <= begin <= end <= len(buffer) or end - begin != expected:
            raise SafetensorsError(f"{source}: tensor {name!r} spans bytes [{begin}, {end}) of {len(buffer)}, "
                                   f"expected {expected} bytes for {info['dtype']} {list(shape)}")
        array = np.frombuffer(buffer[begin:end], dtype=dtype).reshape(shape)
        tensors[name] = array.astype(dtype.newbyteorder("="), copy=True)
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def write_safetensors(tensors: dict[str, np.ndarray], metadata: dict | None = None) -> bytes:
    """The safetensors bytes of named arrays (sorted by name, 8-byte aligned header)."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        little = array.dtype.newbyteorder("<")
        if little not in NAMES:
            raise SafetensorsError(f"tensor {name!r}: dtype {array.dtype} is not supported")
        raw = array.astype(little, copy=False).tobytes()
        header[name] = {"dtype": NAMES[little], "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)
