"""Which past frames saw which memory points: the view index that retrieval reads.

When a frame enters the memory, the ids of the points it sees front-most (one pixel per
point, see `visible_ids`) are recorded against it, all of them: each frame keeps its own set
of point ids as a compressed bitmap (Roaring: sorted runs, arrays or bitsets per block of
65,536 ids). The count of points a target view shares with a past frame is then exact however
many frames saw a point, and costs one bitmap intersection per (target, frame) pair, without
rendering the past frame again.

Points merged into others pass their frames on (`remap`); points that no longer exist are
remembered as gone (`retain`) and never counted, so a round does not rewrite every frame's
bitmap. Mutations replace a frame's bitmap rather than change it, so `copy` is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from pyroaring import BitMap

from spatia.cameras import Cameras
from spatia.engine.render import render

MAX_ID = (1 << 31) - 1


class ViewIndexError(ValueError):
    """The view index got malformed input; the message names the argument and the problem."""


def visible_ids(xyz, point_ids, cameras: Cameras, *, near: float = 1e-2, device=None,
                rule: str = "render") -> list[np.ndarray]:
    """Sorted ids of the points each camera sees front-most, one pixel per point, at the
    cameras' full resolution. rule="render": the z-buffer of the points' own pixels (the
    renderer's, one winner per pixel); rule="reference": Spatia's own test
    (`spatia.engine.retrieval.frontmost_mask`: truncated pixel coordinates, every point within
    1e-6 of a pixel's nearest depth, no near plane)."""
    ids = torch.as_tensor(point_ids).reshape(-1).cpu().numpy().astype(np.int64)
    if len(ids) != len(xyz):
        raise ViewIndexError(f"point_ids must hold one id per point ({len(xyz)}), got {len(ids)}")
    if rule not in ("render", "reference"):
        raise ViewIndexError(f"rule must be 'render' or 'reference', got {rule!r}")
    if len(cameras) == 0:
        return []
    if len(ids) == 0:
        return [np.zeros(0, np.int64) for _ in range(len(cameras))]
    if rule == "reference":
        return [np.sort(ids[np.flatnonzero(m)]) for m in frontmost_mask(xyz, cameras, device=device)]
    out = []
    step = max(1, 8_000_000 // max(1, cameras.width * cameras.height))
    for start in range(0, len(cameras), step):
        winners = render(xyz, None, cameras[start:start + step], point_size=0.0, depth_only=True, return_index=True,
                         near=near, device=device).index
        for frame in winners.reshape(len(winners), -1):
            seen = torch.unique(frame[frame >= 0]).cpu().numpy()
            out.append(np.sort(ids[seen]))
    return out


def frontmost_mask(xyz, cameras: Cameras, *, device=None, background_depth: float = 1e9,
                   chunk_values: int = 8_000_000) -> np.ndarray:
    """[T, N] bool: point n is front-most in camera t by Spatia's own test (the reference's
    `frustum_frontmost_mask`, float32 throughout, its intrinsics normalised to float32 first as the
    reference reads them): u = fx X/Z + cx truncated toward zero (so
    -1 < u < 0 lands in column 0), in front when Z > 0, and front-most when its Z is within 1e-6
    of the smallest Z that lands on its pixel (ties all count)."""
    points = torch.as_tensor(xyz, dtype=torch.float32, device=device).reshape(-1, 3)
    count, height, width = len(points), cameras.height, cameras.width
    out = np.zeros((len(cameras), count), dtype=bool)
    if count == 0 or len(cameras) == 0:
        return out
    homogeneous = torch.cat([points, torch.ones(count, 1, device=points.device)], dim=-1)
    step = max(1, chunk_values // count)
    for start in range(0, len(cameras), step):
        part = cameras[start:start + step]
        w2c = torch.as_tensor(part.w2c, dtype=torch.float32, device=points.device)
        # the reference keeps normalised intrinsics in float32 and scales them in float64
        size = np.array([width, height, width, height], dtype=np.float64)
        k = (np.asarray(part.intrinsics, dtype=np.float64) / size).astype(np.float32).astype(np.float64) * size
        k = torch.as_tensor(k, dtype=torch.float32, device=points.device)
        cam = (w2c @ homogeneous.t()).transpose(1, 2)
        x, y, z = cam[..., 0], cam[..., 1], cam[..., 2]
        valid = z > 0
        denom = torch.clamp(z, min=torch.finfo(torch.float32).eps)
        u = k[:, 0:1] * (x / denom) + k[:, 2:3]
        v = k[:, 1:2] * (y / denom) + k[:, 3:4]
        ui, vi = u.long(), v.long()
        valid &= (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height)
        pixel = (vi * width + ui).clamp(min=0, max=height * width - 1)
        depth = torch.where(valid, z, torch.full_like(z, background_depth))
        buffer = torch.full((len(part), height * width), background_depth, device=points.device)
        buffer.scatter_reduce_(1, pixel, depth, reduce="amin")
        front = valid & (z <= buffer.gather(1, pixel) + 1e-6)
        out[start:start + len(part)] = front.cpu().numpy()
    return out


def _bitmap(ids) -> BitMap:
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_ID):
        raise ViewIndexError("point ids must be in [0, 2**31)")
    bitmap = BitMap(np.ascontiguousarray(ids, dtype=np.uint32).reshape(-1))
    bitmap.run_optimize()
    return bitmap


@dataclass
class ViewIndex:
    """Per frame, the exact set of point ids it saw (a Roaring bitmap)."""

    sets: dict[int, BitMap] = field(default_factory=dict)
    gone: BitMap = field(default_factory=BitMap)  # ids that no longer exist: never counted
    recorded: BitMap = field(default_factory=BitMap)  # every id any frame saw

    def __len__(self) -> int:
        """How many (point, frame) pairs are recorded."""
        return sum(len(b) for b in self.sets.values())

    def __contains__(self, frame) -> bool:
        return int(frame) in self.sets

    @property
    def frames(self) -> np.ndarray:
        return np.array(sorted(self.sets), dtype=np.int64)

    @property
    def frame_sizes(self) -> dict[int, int]:
        """frame -> how many existing points it saw."""
        return {f: self.size(f) for f in self.sets}

    def size(self, frame: int) -> int:
        bitmap = self.sets[int(frame)]
        return len(bitmap) - (bitmap.intersection_cardinality(self.gone) if self.gone else 0)

    def copy(self) -> "ViewIndex":
        """An independent index sharing the (never mutated) bitmaps."""
        return ViewIndex(dict(self.sets), BitMap(self.gone), BitMap(self.recorded))

    def add(self, frames, id_sets) -> None:
        """Record that each frame in `frames` saw the point ids in the matching entry of `id_sets`
        (a frame added again is replaced)."""
        frames = [int(f) for f in frames]
        if len(frames) != len(id_sets):
            raise ViewIndexError(f"{len(frames)} frames but {len(id_sets)} id sets")
        for frame, ids in zip(frames, id_sets):
            if not 0 <= frame <= 0xFFFFFFFF:
                raise ViewIndexError(f"frame {frame} is out of range")
            bitmap = _bitmap(ids)
            if self.gone and bitmap.intersect(self.gone):
                self.gone = self.gone - bitmap  # an id seen again exists again
            self.sets[frame] = bitmap
            self.recorded |= bitmap

    def remap(self, ids, into) -> None:
        """Points `ids` merged into `into`: their frames now count for the surviving points."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        into = np.asarray(into, dtype=np.int64).reshape(-1)
        if ids.shape != into.shape:
            raise ViewIndexError(f"ids and into must match, got {ids.shape} and {into.shape}")
        if len(ids) == 0 or not self.sets:
            return
        order = np.argsort(ids, kind="stable")
        ids, into = ids[order], into[order]
        merged = _bitmap(ids)
        for frame, bitmap in self.sets.items():
            if not bitmap.intersect(merged):
                continue
            hit = np.asarray((bitmap & merged).to_array(), dtype=np.int64)
            survivors = into[np.searchsorted(ids, hit)]
            updated = (bitmap - merged) | _bitmap(survivors)
            updated.run_optimize()
            self.sets[frame] = updated
        self.gone |= merged
        self.gone -= _bitmap(into)

    def retain(self, alive_ids) -> None:
        """Forget the points that no longer exist (carved, deleted): every id recorded and not in
        `alive_ids` is gone."""
        self.gone = self.recorded - _bitmap(np.asarray(alive_ids, dtype=np.int64))

    def shared_counts(self, target_sets, candidates) -> np.ndarray:
        """[T, C] exactly how many existing points target set t (ids) shares with candidate frame c
        (0 for a frame the index does not hold)."""
        candidates = np.asarray(candidates, dtype=np.int64).reshape(-1)
        counts = np.zeros((len(target_sets), len(candidates)), dtype=np.int64)
        targets = [_bitmap(t) - self.gone if self.gone else _bitmap(t) for t in target_sets]
        if not targets:
            return counts
        union = BitMap.union(*targets) if len(targets) > 1 else targets[0]
        for j, frame in enumerate(candidates.tolist()):
            bitmap = self.sets.get(frame)
            if bitmap is None or not bitmap.intersect(union):  # a frame far from every target: one test
                continue
            for t, target in enumerate(targets):
                counts[t, j] = bitmap.intersection_cardinality(target)
        return counts

    # --- persistence: one file per batch of frames, replayed in order --------------------
    def batch_arrays(self, frames, id_sets, merged_ids=(), merged_into=(), *, reset: bool = False) -> dict[str, np.ndarray]:
        """What `add` (after `remap`, after clearing the index when `reset`) recorded, as arrays
        for a file that `replay` reads back."""
        id_sets = [np.unique(np.asarray(ids, dtype=np.int64)) for ids in id_sets]
        return {
            "frames": np.asarray(frames, dtype=np.int64),
            "offsets": np.cumsum([0] + [len(ids) for ids in id_sets]).astype(np.int64),
            # delta-coded: sorted ids become small numbers that compress well
            "ids": np.concatenate([np.diff(ids, prepend=0) for ids in id_sets]) if id_sets else np.zeros(0, np.int64),
            "merged_ids": np.asarray(merged_ids, dtype=np.int64),
            "merged_into": np.asarray(merged_into, dtype=np.int64),
            "reset": np.asarray(reset),
        }

    def clear(self) -> None:
        self.sets = {}
        self.gone = BitMap()
        self.recorded = BitMap()

    def replay(self, arrays) -> None:
        """Apply one batch written by `batch_arrays`: its merges, then its frames."""
        if "reset" in arrays and bool(arrays["reset"]):
            self.clear()
        self.remap(arrays["merged_ids"], arrays["merged_into"])
        offsets, deltas = arrays["offsets"], arrays["ids"]
        sets = [np.cumsum(deltas[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)]
        self.add(arrays["frames"], sets)


__all__ = ["ViewIndex", "ViewIndexError", "frontmost_mask", "visible_ids"]
