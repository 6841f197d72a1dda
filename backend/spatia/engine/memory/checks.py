"""Checks for point data from outside: memory snapshots and PLY files a client uploads.

The snapshot's own hashes only prove that the file is what its writer meant; they say
nothing about whether it is sane. These checks run before anything is parsed or stored:

- the safetensors header is bounded, flat JSON; every tensor has exactly the schema's dtype
  and trailing shape (no casting, so int8 -1 never becomes rgb 255 and an int64 frame never
  wraps into an int32 one), all fields hold the same point count, offsets lie in the file;
- `next_id` is above every point id and far below int64 overflow (MAX_NEXT_ID);
- the voxel size equals the world's (a different one would make every later fusion fail);
- coordinates and confidences are finite;
- a PLY's declared vertex count matches the data that follows its header.

Each failure is a SnapshotRejected naming the offending field.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import torch

from .cloud import FIELDS, OPTIONAL_FIELDS, SpatialMemory
from .errors import MemoryFormatError

MAX_HEADER_BYTES = 16 * 2**20
MAX_NEXT_ID = 2**53  # ids stay exact as JSON numbers and far from int64 overflow
MIN_VOXEL_SIZE = 1e-4  # metres: 0.1 mm cells; smaller ones overflow the voxel keys of any real scene
MAX_VOXEL_SIZE = 100.0  # metres: a cell larger than a building is no memory of it
MAX_POINTS = 200_000_000
VOXEL_RTOL = 1e-6
SAFETENSORS_DTYPES = {torch.float32: "F32", torch.uint8: "U8", torch.int64: "I64", torch.int32: "I32",
                      torch.float64: "F64", torch.int16: "I16", torch.uint16: "U16", torch.int8: "I8"}
PLY_TYPES = {"char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
             "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}
PLY_HEADER_LIMIT = 64 * 1024


class SnapshotRejected(MemoryFormatError):
    """Uploaded point data failed a check; `field` names what is wrong."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def _reject(message: str, field: str) -> SnapshotRejected:
    return SnapshotRejected(message, field)


def read_header(data: bytes, source: str = "snapshot") -> dict:
    """The safetensors header of `data` as a dict, bounded in size and nesting."""
    if len(data) < 8:
        raise _reject(f"{source}: {len(data)} bytes is too short for a snapshot", "body")
    size = int.from_bytes(data[:8], "little")
    if size > min(len(data) - 8, MAX_HEADER_BYTES):
        raise _reject(f"{source}: header claims {size} bytes; the file holds {len(data) - 8} after the length "
                      f"and headers are at most {MAX_HEADER_BYTES} bytes", "body")
    try:
        header = json.loads(bytes(data[8:8 + size]))
    except RecursionError:
        raise _reject(f"{source}: header nests too deeply", "body") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise _reject(f"{source}: header is not valid JSON ({err})", "body") from None
    if not isinstance(header, dict):
        raise _reject(f"{source}: header is not a JSON object", "body")
    return header


def check_snapshot_layout(data: bytes, source: str = "snapshot") -> dict:
    """Exact dtypes, shapes, offsets and metadata types of a snapshot's header, before parsing.
    Returns the header."""
    header = read_header(data, source)
    return check_header(header, len(data) - 8 - int.from_bytes(data[:8], "little"), source)


def check_header(header: dict, body: int, source: str = "snapshot") -> dict:
    """check_snapshot_layout on a header already read; `body` is the byte count after it."""
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _reject(f"{source}: metadata is missing or not a flat map of strings", "__metadata__")
    extra = sorted(set(header) - set(FIELDS) - {"__metadata__"})
    if extra:
        raise _reject(f"{source}: unknown tensors {extra}; a snapshot holds exactly {list(FIELDS)}", extra[0])
    count = None
    for name, (dtype, trailing) in FIELDS.items():
        info = header.get(name)
        if info is None and name in OPTIONAL_FIELDS:
            continue  # written before the field existed: every point takes its default
        if not isinstance(info, dict):
            raise _reject(f"{source}: tensor {name} is missing", name)
        expected = SAFETENSORS_DTYPES[dtype]
        if info.get("dtype") != expected:
            raise _reject(f"{name} must be {expected} ({dtype}), got {info.get('dtype')!r}; values are never cast", name)
        shape = info.get("shape")
        if (not isinstance(shape, list) or len(shape) != 1 + len(trailing)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
                or tuple(shape[1:]) != trailing):
            raise _reject(f"{name} must have shape [N{''.join(f', {t}' for t in trailing)}], got {shape!r}", name)
        if count is None:
            count = shape[0]
            if count > MAX_POINTS:
                raise _reject(f"{count} points exceed the limit of {MAX_POINTS}", name)
        elif shape[0] != count:
            raise _reject(f"{name} holds {shape[0]} points but xyz holds {count}", name)
        offsets = info.get("data_offsets")
        size = torch.empty((), dtype=dtype).element_size() * math.prod(shape)
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= body or offsets[1] - offsets[0] != size):
            raise _reject(f"{name}: data offsets {offsets!r} do not fit its {size} bytes in the file's {body}", name)
    for key, kind in (("voxel_size", float), ("next_id", int)):
        try:
            value = kind(meta.get(key, ""))
        except ValueError:
            raise _reject(f"metadata {key} must be a number, got {meta.get(key)!r}", key) from None
        if kind is float and not (math.isfinite(value) and MIN_VOXEL_SIZE <= value <= MAX_VOXEL_SIZE):
            raise _reject(f"voxel_size must be in [{MIN_VOXEL_SIZE:g}, {MAX_VOXEL_SIZE:g}] metres, got {value!r}", key)
        if kind is int and not 0 <= value <= MAX_NEXT_ID:
            raise _reject(f"next_id {value} is outside 0..{MAX_NEXT_ID} (ids must stay far from int64 overflow)",
                          key)
    return header


def read_snapshot_file(path, source: str = "snapshot") -> tuple[SpatialMemory, dict[str, str]]:
    """An untrusted snapshot file -> (memory, metadata), read tensor by tensor straight into its
    arrays (the file is never held whole in memory), with the same checks as parse_snapshot:
    layout, schema, metadata hash and content hash."""
    from .errors import MemoryIntegrityError
    from .store import SCHEMA, SCHEMA_VERSION, _meta_hash

    with open(path, "rb") as handle:
        total = os.fstat(handle.fileno()).st_size
        start = handle.read(8)
        if len(start) < 8:
            raise _reject(f"{source}: {total} bytes is too short for a snapshot", "body")
        size = int.from_bytes(start, "little")
        if size > min(total - 8, MAX_HEADER_BYTES):
            raise _reject(f"{source}: header claims {size} bytes; the file holds {total - 8} after the length "
                          f"and headers are at most {MAX_HEADER_BYTES} bytes", "body")
        header = read_header(start + handle.read(size), source)
        check_header(header, total - 8 - size, source)
        meta = header["__metadata__"]
        if meta.get("schema") != SCHEMA:
            raise MemoryIntegrityError(f"{source}: schema is {meta.get('schema')!r}, expected {SCHEMA!r}")
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise MemoryIntegrityError(f"{source}: schema version {meta.get('schema_version')!r} is not supported "
                                       f"(expected {SCHEMA_VERSION})")
        if meta.get("meta_sha256") != _meta_hash(meta):
            raise MemoryIntegrityError(f"{source}: metadata hash mismatch; the header was altered")
        arrays = {}
        for name, (dtype, _) in FIELDS.items():
            if name not in header:
                continue  # an optional field the file predates
            info = header[name]
            array = torch.empty(info["shape"], dtype=dtype)
            handle.seek(8 + size + info["data_offsets"][0])
            view = array.view(torch.uint8).reshape(-1).numpy() if array.numel() else None
            if view is not None and handle.readinto(memoryview(view)) != view.nbytes:
                raise MemoryIntegrityError(f"{source}: {name} is truncated")
            arrays[name] = array
    try:
        memory = SpatialMemory.from_arrays(arrays, voxel_size=float(meta["voxel_size"]), next_id=int(meta["next_id"]))
    except (KeyError, ValueError) as err:
        raise MemoryIntegrityError(f"{source}: content is invalid ({err})") from None
    if memory.sha256() != meta.get("sha256"):
        raise MemoryIntegrityError(f"{source}: content sha256 mismatch; the point data was altered or truncated")
    return memory, meta


def check_memory(memory: SpatialMemory, *, voxel_size: float | None = None) -> SpatialMemory:
    """Values of a parsed memory: finite, ids below next_id, next_id bounded, voxel size as expected."""
    if not torch.isfinite(memory.xyz).all():
        raise _reject("xyz holds NaN or infinite coordinates", "xyz")
    if not torch.isfinite(memory.conf).all() or (memory.conf < 0).any():
        raise _reject("conf must be finite and non-negative", "conf")
    if not 0 <= memory.next_id <= MAX_NEXT_ID:
        raise _reject(f"next_id {memory.next_id} is outside 0..{MAX_NEXT_ID}", "next_id")
    if len(memory):
        if int(memory.point_id.min()) < 0:
            raise _reject("point_id must be non-negative", "point_id")
        if int(memory.point_id.max()) >= memory.next_id:
            raise _reject(f"next_id {memory.next_id} is not above every point id "
                          f"(largest {int(memory.point_id.max())})", "next_id")
        if int(memory.first_frame.min()) < 0:
            raise _reject("first_frame must be non-negative", "first_frame")
    if voxel_size is not None and not math.isclose(memory.voxel_size, voxel_size, rel_tol=VOXEL_RTOL):
        raise _reject(f"voxel_size {memory.voxel_size!r} differs from the world's {voxel_size!r}; "
                      "convert the points to the world's voxel size first", "voxel_size")
    return memory


def check_ply(data: bytes, source: str = "PLY file") -> int:
    """The vertex count of a PLY file whose header's counts match the data that follows it."""
    end = data.find(b"end_header", 0, PLY_HEADER_LIMIT)
    if not data.startswith(b"ply") or end < 0:
        raise _reject(f"{source}: not a PLY file (no `end_header` in its first {PLY_HEADER_LIMIT} bytes)", "points")
    newline = data.find(b"\n", end)
    body = data[newline + 1:] if newline >= 0 else b""
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt = None
    elements: list[list] = []  # [name, count, [(type, is_list, count_type)]]
    for line in lines:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info", "ply"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            if not re.fullmatch(r"\d{1,12}", words[2]):
                raise _reject(f"{source}: element {words[1]} has an invalid count {words[2]!r}", "points")
            elements.append([words[1], int(words[2]), []])
        elif words[0] == "property" and elements:
            if len(words) >= 5 and words[1] == "list":
                elements[-1][2].append((words[3], True, words[2]))
            elif len(words) == 3:
                elements[-1][2].append((words[1], False, None))
            else:
                raise _reject(f"{source}: malformed property line {line!r}", "points")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise _reject(f"{source}: unknown format {fmt!r}", "points")
    vertex = next((e for e in elements if e[0] == "vertex"), None)
    if vertex is None:
        raise _reject(f"{source}: no vertex element", "points")
    count = vertex[1]
    if count > MAX_POINTS:
        raise _reject(f"{source}: {count} vertices exceed the limit of {MAX_POINTS}", "points")
    for _, _, props in elements:
        for kind, _, count_type in props:
            if kind not in PLY_TYPES or (count_type is not None and count_type not in PLY_TYPES):
                raise _reject(f"{source}: unknown property type {kind!r}", "points")
    if fmt == "ascii":
        rows = [row for row in body.splitlines() if row.strip()]
        needed = sum(e[1] for e in elements)
        fixed = all(not is_list for e in elements for _, is_list, _ in e[2])
        if len(rows) < needed or (fixed and len(rows) != needed):
            raise _reject(f"{source}: the header declares {needed} rows ({count} vertices) but {len(rows)} follow",
                          "points")
        return count
    needed = 0
    for name, n, props in elements:
        if any(is_list for _, is_list, _ in props):
            if name == "vertex":
                raise _reject(f"{source}: list properties on vertices are not supported", "points")
            needed = None  # variable-size element: only the vertices before it can be checked
            break
        needed += n * sum(PLY_TYPES[kind] for kind, _, _ in props)
    stride = sum(PLY_TYPES[kind] for kind, _, _ in vertex[2])
    if needed is None:
        if len(body) < count * stride:
            raise _reject(f"{source}: the header declares {count} vertices of {stride} bytes but only {len(body)} "
                          "bytes follow", "points")
    elif len(body) != needed:
        raise _reject(f"{source}: the header declares {count} vertices ({needed} bytes of data) but {len(body)} bytes "
                      "follow", "points")
    return count


def check_npy_header(data: bytes, field: str, max_bytes: int) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of `.npy` bytes whose header's claim fits the data and `max_bytes`."""
    import io

    from numpy.lib import format as npy_format

    stream = io.BytesIO(data)
    try:
        version = npy_format.read_magic(stream)
        shape, fortran, dtype = npy_format._read_array_header(stream, version, max_header_size=10000)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as err:
        raise _reject(f"{field}: cannot read the .npy header ({err})", field) from None
    if dtype.hasobject:
        raise _reject(f"{field}: object arrays (pickles) are refused", field)
    size = math.prod(shape) * dtype.itemsize
    if size > max_bytes:
        raise _reject(f"{field}: the array {list(shape)} of {dtype} needs {size} bytes, over the limit of {max_bytes}",
                      field)
    if size > len(data) - stream.tell():
        raise _reject(f"{field}: the header claims {list(shape)} ({size} bytes) but {len(data) - stream.tell()} bytes "
                      "follow", field)
    return shape, dtype


__all__ = ["MAX_NEXT_ID", "SnapshotRejected", "check_header", "check_memory", "check_npy_header", "check_ply",
           "check_snapshot_layout", "read_header", "read_snapshot_file"]
