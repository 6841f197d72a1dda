"""Spatial-memory queries: render along cameras, coverage, points in a box, ray casts.

Pure functions over a SpatialMemory (plus the render cache for frames served as PNG)."""

from __future__ import annotations

import io
import secrets
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from spatia.cameras import Cameras
from spatia.memory import SpatialMemory
from spatia.render import render_memory
from spatia.video import write_frames

from .errors import invalid, not_found

RENDER_CACHE_ENTRIES = 32
RAY_CHUNK_ELEMENTS = 4_000_000  # rays x points compared at once
RAY_RADIUS_VOXELS = 1.0  # a ray hits a point passing within this many voxel sizes of it


def render_arrays(memory: SpatialMemory, cameras: Cameras) -> dict[str, np.ndarray]:
    """rgb uint8 [F,H,W,3], depth float32 [F,H,W] (0 where empty), mask bool [F,H,W]."""
    result = render_memory(memory, cameras)
    depth = result.depth.cpu().numpy()
    mask = result.mask.cpu().numpy()
    return {"rgb": result.rgb.cpu().numpy(), "depth": np.where(mask, depth, 0.0).astype(np.float32), "mask": mask}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def coverage_of(mask: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in mask.reshape(len(mask), -1).mean(axis=1)]


class RenderCache:
    """Rendered frames kept as PNG under a random token, the most recent RENDER_CACHE_ENTRIES renders."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._entries: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        for stale in self.root.iterdir():  # tokens of a previous run are not served again
            shutil.rmtree(stale, ignore_errors=True)

    def put(self, rgb: np.ndarray) -> str:
        token = secrets.token_hex(16)
        folder = self.root / f".{token}"
        write_frames(folder, rgb)
        folder.rename(self.root / token)
        with self._lock:
            self._entries[token] = len(rgb)
            while len(self._entries) > RENDER_CACHE_ENTRIES:
                old, _ = self._entries.popitem(last=False)
                shutil.rmtree(self.root / old, ignore_errors=True)
        return token

    def path(self, token: str, index: int) -> Path:
        with self._lock:
            frames = self._entries.get(token)
        if frames is None:
            raise not_found("render", token)
        if not 0 <= index < frames:
            raise not_found(f"frame of render {token}", index)
        return self.root / token / f"{index:06d}.png"


def points_in_box(memory: SpatialMemory, lo, hi, limit: int) -> dict:
    lo_t = torch.tensor(lo, dtype=torch.float32)
    hi_t = torch.tensor(hi, dtype=torch.float32)
    if (lo_t > hi_t).any():
        raise invalid(f"min {list(lo)} exceeds max {list(hi)} on some axis", "min")
    inside = ((memory.xyz >= lo_t) & (memory.xyz <= hi_t)).all(dim=1)
    positions = torch.nonzero(inside).flatten()
    kept = positions[:limit]
    return {
        "count": len(positions),
        "point_id": memory.point_id[kept].tolist(),
        "xyz": memory.xyz[kept].tolist(),
    }


def raycast(memory: SpatialMemory, origins, directions, radius: float | None = None) -> dict:
    """For each ray the nearest point (along the ray, ahead of the origin) within `radius` of it
    (default: the memory's voxel size).

    distance is measured along the ray to the point's foot on it."""
    if len(origins) != len(directions):
        raise invalid(f"{len(origins)} origins for {len(directions)} directions", "directions")
    o = torch.tensor(origins, dtype=torch.float64)
    d = torch.tensor(directions, dtype=torch.float64)
    norm = d.norm(dim=1)
    if (norm < 1e-12).any():
        i = int(torch.nonzero(norm < 1e-12)[0])
        raise invalid(f"directions[{i}] has zero length", f"directions[{i}]")
    d = (d / norm[:, None]).to(torch.float32)
    o = o.to(torch.float32)
    rays = len(o)
    best_t = torch.full((rays,), float("inf"))
    best = torch.full((rays,), -1, dtype=torch.int64)
    radius2 = (radius if radius is not None else RAY_RADIUS_VOXELS * memory.voxel_size) ** 2
    xyz = memory.xyz
    step = max(1, RAY_CHUNK_ELEMENTS // rays)
    for start in range(0, len(xyz), step):
        rel = xyz[start:start + step][None] - o[:, None]  # [R, n, 3]
        t = (rel * d[:, None]).sum(-1)
        perp2 = (rel * rel).sum(-1) - t * t
        t = torch.where((t > 0) & (perp2 <= radius2), t, torch.full_like(t, float("inf")))
        chunk_t, chunk_i = t.min(dim=1)
        better = chunk_t < best_t
        best_t = torch.where(better, chunk_t, best_t)
        best = torch.where(better, chunk_i + start, best)
    hit = best >= 0
    ids = memory.point_id[best.clamp(min=0)]
    return {
        "hit": hit.tolist(),
        "distance": [float(t) if h else None for t, h in zip(best_t.tolist(), hit.tolist())],
        "point_id": [int(i) if h else None for i, h in zip(ids.tolist(), hit.tolist())],
    }
