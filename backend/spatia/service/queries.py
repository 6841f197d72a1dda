"""Spatial-memory queries: render along cameras, coverage, points in a box, ray casts.

Pure functions over a SpatialMemory (plus the render cache for frames served as PNG)."""

from __future__ import annotations

import io
import secrets
import shutil
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from spatia.cameras import Cameras
from spatia.engine.memory import SpatialMemory
from spatia.engine.render import render_memory
from spatia.formats.video import write_frames

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


BRUTE_FORCE_ELEMENTS = 16_000_000  # rays x points below which every pair is compared
SAMPLES_PER_CHUNK = 32  # samples per ray per k-d tree round
MAX_SAMPLES_PER_RAY = 4096


def raycast(memory: SpatialMemory, origins, directions, radius: float | None = None) -> dict:
    """For each ray the nearest point (along the ray, ahead of the origin) within `radius` of it
    (default: the memory's voxel size). distance is measured along the ray to the point's foot on it.

    Small queries compare every ray with every point; larger ones walk each ray through a k-d
    tree of the points (samples along the ray, each with a ball that covers the gap to the
    next), front to back, and stop a ray at its first hit, so 4,096 rays over a million points
    take seconds, not minutes."""
    if len(origins) != len(directions):
        raise invalid(f"{len(origins)} origins for {len(directions)} directions", "directions")
    o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    norm = np.linalg.norm(d, axis=1)
    if (norm < 1e-12).any():
        i = int(np.flatnonzero(norm < 1e-12)[0])
        raise invalid(f"directions[{i}] has zero length", f"directions[{i}]")
    d = d / norm[:, None]
    rays = len(o)
    r = float(radius if radius is not None else RAY_RADIUS_VOXELS * memory.voxel_size)
    if len(memory) == 0:
        best_t, best = np.full(rays, np.inf), np.full(rays, -1, dtype=np.int64)
    elif rays * len(memory) <= BRUTE_FORCE_ELEMENTS:
        best_t, best = _raycast_brute(memory.xyz, o, d, r)
    else:
        best_t, best = _raycast_tree(memory.xyz.cpu().numpy().astype(np.float64), o, d, r)
    hit = best >= 0
    ids = memory.point_id.cpu().numpy()[np.clip(best, 0, None)] if len(memory) else np.zeros(rays, dtype=np.int64)
    return {
        "hit": hit.tolist(),
        "distance": [float(t) if h else None for t, h in zip(best_t.tolist(), hit.tolist())],
        "point_id": [int(i) if h else None for i, h in zip(ids.tolist(), hit.tolist())],
    }


def _raycast_brute(xyz: torch.Tensor, o: np.ndarray, d: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    o_t = torch.as_tensor(o, dtype=torch.float32)
    d_t = torch.as_tensor(d, dtype=torch.float32)
    rays = len(o_t)
    best_t = torch.full((rays,), float("inf"))
    best = torch.full((rays,), -1, dtype=torch.int64)
    xyz = xyz.cpu()
    step = max(1, RAY_CHUNK_ELEMENTS // rays)
    for start in range(0, len(xyz), step):
        rel = xyz[start:start + step][None] - o_t[:, None]  # [R, n, 3]
        t = (rel * d_t[:, None]).sum(-1)
        perp2 = (rel * rel).sum(-1) - t * t
        t = torch.where((t > 0) & (perp2 <= r * r), t, torch.full_like(t, float("inf")))
        chunk_t, chunk_i = t.min(dim=1)
        better = chunk_t < best_t
        best_t = torch.where(better, chunk_t, best_t)
        best = torch.where(better, chunk_i + start, best)
    best[~torch.isfinite(best_t)] = -1
    return best_t.numpy().astype(np.float64), best.numpy()


def _raycast_tree(xyz: np.ndarray, o: np.ndarray, d: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    rays = len(o)
    best_t = np.full(rays, np.inf)
    best = np.full(rays, -1, dtype=np.int64)
    lo, hi = xyz.min(axis=0) - r, xyz.max(axis=0) + r
    # the part of each ray inside the points' bounding box (slab test), ahead of the origin
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1, t2 = (lo - o) * inv, (hi - o) * inv
    t1 = np.where(np.isnan(t1), -np.inf, t1)
    t2 = np.where(np.isnan(t2), np.inf, t2)
    t_in = np.maximum(np.minimum(t1, t2).max(axis=1), 0.0)
    t_out = np.maximum(t1, t2).min(axis=1)
    active = np.flatnonzero(t_in <= t_out)
    if not len(active):
        return best_t, best
    tree = cKDTree(xyz, balanced_tree=False, compact_nodes=False)
    length = t_out - t_in
    step = np.maximum(r, length / MAX_SAMPLES_PER_RAY)  # sample spacing per ray
    ball = np.sqrt(r * r + (step / 2) ** 2)  # covers every point within r of the ray between samples
    start = np.maximum(t_in - step, 0.0)
    count = np.ceil((t_out + step - start) / step).astype(np.int64) + 1
    done = 0
    while len(active):
        k = np.arange(done, done + SAMPLES_PER_CHUNK)
        ray = np.repeat(active, len(k))
        j = np.tile(k, len(active))
        keep = j < count[ray]
        ray, j = ray[keep], j[keep]
        t_sample = start[ray] + j * step[ray]
        samples = o[ray] + d[ray] * t_sample[:, None]
        found = tree.query_ball_point(samples, ball[ray], return_sorted=False)
        sizes = np.fromiter((len(f) for f in found), dtype=np.int64, count=len(found))
        if sizes.sum():
            point = np.concatenate([np.asarray(f, dtype=np.int64) for f in found if len(f)])
            owner = np.repeat(ray, sizes)
            rel = xyz[point] - o[owner]
            t = np.einsum("ij,ij->i", rel, d[owner])
            perp2 = np.einsum("ij,ij->i", rel, rel) - t * t
            valid = (t > 0) & (perp2 <= r * r)
            owner, t, point = owner[valid], t[valid], point[valid]
            order = np.lexsort((point, t, owner))
            owner, t, point = owner[order], t[order], point[order]
            first = np.ones(len(owner), dtype=bool)
            first[1:] = owner[1:] != owner[:-1]
            owner, t, point = owner[first], t[first], point[first]
            better = t < best_t[owner]
            best_t[owner[better]] = t[better]
            best[owner[better]] = point[better]
        done += SAMPLES_PER_CHUNK
        reached = start[active] + (done - 1) * step[active]  # every sample up to here was searched
        settled = (best_t[active] <= reached - step[active] / 2) | (done >= count[active])
        active = active[~settled]
    return best_t, best


class HeavySlots:
    """At most `slots` heavy queries (renders, ray casts, box and coverage queries) at once; a
    request waits up to `wait_s` for a slot, then gets 429 with Retry-After."""

    def __init__(self, slots: int, wait_s: float = 5.0):
        self.slots = slots
        self.wait_s = wait_s
        self._semaphore = threading.BoundedSemaphore(slots)

    @contextmanager
    def __call__(self, what: str):
        from .errors import ApiError

        if not self._semaphore.acquire(timeout=self.wait_s):
            raise ApiError(429, "too_many_requests", f"{self.slots} heavy queries are already running; retry {what} "
                           "in a few seconds (server options --max-heavy-queries, --heavy-wait-s)", headers={"Retry-After": "2"})
        try:
            yield
        finally:
            self._semaphore.release()
