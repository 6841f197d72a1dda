"""PLY export and import of the memory, through trimesh.

Export: binary little endian; vertex x, y, z float, red, green, blue, alpha uchar (the
standard properties Blender, Open3D and plyfile read), then conf float, point_id int,
first_frame int, last_frame int, side, rank and level uchar as extra vertex properties, plus a
`comment spatia voxel_size=... next_id=...` header line. Import reads any PLY trimesh
reads; files without conf / point_id get conf 1 and fresh ids.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import trimesh

from .cloud import RANK_USER, SpatialMemory
from .errors import MemoryFormatError

PLY_ID_LIMIT = 2**31 - 1  # PLY has no 64-bit integer type; ids are written as int32
TRIMESH_COMMENT = b"comment https://github.com/mikedh/trimesh\n"
SPATIA_COMMENT = re.compile(rb"^comment spatia voxel_size=(\S+) next_id=(\d+)\s*$", re.MULTILINE)
DEFAULT_GREY = 128
MAX_HEADER_BYTES = 1 << 16


def ply_bytes(memory: SpatialMemory) -> bytes:
    arrays = memory.arrays()
    if len(memory) and int(arrays["point_id"].max()) > PLY_ID_LIMIT:
        raise MemoryFormatError(f"point ids above {PLY_ID_LIMIT} do not fit the PLY int property")
    colours = np.concatenate([arrays["rgb"], np.full((len(memory), 1), 255, dtype=np.uint8)], axis=1)
    cloud = trimesh.Trimesh(
        vertices=arrays["xyz"],
        faces=np.zeros((0, 3), dtype=np.int64),
        vertex_colors=colours,
        vertex_attributes={
            "conf": arrays["conf"],
            "point_id": arrays["point_id"].astype(np.int32),
            "first_frame": arrays["first_frame"],
            "last_frame": arrays["last_frame"],
            "side": arrays["side"],
            "rank": arrays["rank"],
            "level": arrays["level"],
        },
        process=False,
    )
    data = cloud.export(file_type="ply", encoding="binary")
    comment = f"comment spatia voxel_size={memory.voxel_size!r} next_id={memory.next_id}\n".encode()
    return data.replace(TRIMESH_COMMENT, TRIMESH_COMMENT + comment, 1)


def export_ply(memory: SpatialMemory, path) -> Path:
    path = Path(path)
    path.write_bytes(ply_bytes(memory))
    return path


def _header_settings(path: Path) -> tuple[float | None, int | None]:
    with open(path, "rb") as handle:
        head = handle.read(MAX_HEADER_BYTES)
    match = SPATIA_COMMENT.search(head.split(b"end_header", 1)[0])
    if not match:
        return None, None
    return float(match.group(1)), int(match.group(2))


def _vertex_properties(loaded) -> dict[str, np.ndarray]:
    """Vertex property name -> 1-D array, from trimesh's raw PLY elements (binary or ascii layout)."""
    raw = (getattr(loaded, "metadata", None) or {}).get("_ply_raw", {})
    vertex = raw.get("vertex", {}) if isinstance(raw, dict) else {}
    data = vertex.get("data") if isinstance(vertex, dict) else None
    if isinstance(data, np.ndarray) and data.dtype.names:
        return {name: data[name].reshape(len(data), -1)[:, 0] for name in data.dtype.names}
    if isinstance(data, dict):
        return {name: np.asarray(values).reshape(len(values), -1)[:, 0] for name, values in data.items()}
    return {}


def import_ply(path, *, voxel_size: float | None = None, frame: int = 0, device: torch.device | str = "cpu") -> SpatialMemory:
    """A memory from a PLY file's vertices.

    conf and point_id vertex properties are used when present (and ids unique); otherwise
    conf is 1 and ids are fresh. Colours come from red/green/blue (mid grey without them).
    `voxel_size` defaults to the one recorded by export_ply and must be given otherwise.
    """
    path = Path(path)
    recorded_size, recorded_next = _header_settings(path)
    size = voxel_size if voxel_size is not None else recorded_size
    if size is None:
        raise MemoryFormatError(f"{path.name} records no voxel size; pass voxel_size")
    try:
        loaded = trimesh.load(path, file_type="ply", process=False)
    except Exception as err:  # trimesh raises assorted errors for malformed files
        raise MemoryFormatError(f"{path.name} is not a readable PLY file ({err})") from None
    if not hasattr(loaded, "vertices"):
        raise MemoryFormatError(f"{path.name} holds no vertex element")
    xyz = np.asarray(loaded.vertices, dtype=np.float32)
    table = _vertex_properties(loaded)
    count = len(xyz)
    if {"red", "green", "blue"} <= table.keys():
        rgb = np.stack([table[c] for c in ("red", "green", "blue")], axis=1)
        if rgb.dtype.kind == "f":
            rgb = np.clip(rgb * (255.0 if rgb.max(initial=0) <= 1 else 1.0), 0, 255).round()
        rgb = rgb.astype(np.uint8)
    else:
        rgb = np.full((count, 3), DEFAULT_GREY, dtype=np.uint8)
    conf = table["conf"].astype(np.float32) if "conf" in table else np.ones(count, dtype=np.float32)
    ids = table["point_id"].astype(np.int64) if "point_id" in table else None
    if ids is None or len(np.unique(ids)) != count or (count and ids.min() < 0):
        memory = SpatialMemory.from_points(xyz, rgb, conf, voxel_size=size, frame=frame, device=device)
        return memory
    next_id = int(ids.max()) + 1 if count else 0
    if recorded_next is not None:
        next_id = max(next_id, recorded_next)
    frames = np.full(count, frame, dtype=np.int32)
    arrays = {"xyz": xyz, "rgb": rgb, "conf": conf, "point_id": ids, "first_frame": frames, "last_frame": frames}
    arrays["rank"] = np.full(count, RANK_USER, dtype=np.uint8)  # a point cloud the user brings is theirs
    arrays.update({name: table[name] for name in ("first_frame", "last_frame", "side", "rank", "level") if name in table})
    return SpatialMemory.from_arrays(arrays, voxel_size=size, next_id=next_id, device=device)
