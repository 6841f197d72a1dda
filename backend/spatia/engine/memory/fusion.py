"""Voxel-hash fusion of new points into the memory (points_from_depth makes them from depth maps).

Fusion key = (cell, level, side): new points in a cell (and on a side) already held by a
memory point merge into it with a confidence-weighted mean; the rest become new points with
fresh ids, several new points sharing a cell merging among themselves first. The side bin
(the world axis nearest the surface normal facing the camera) keeps the two faces of a wall
thinner than a voxel from being averaged into one smeared point. A cell's level makes it
about one pixel's footprint where it was seen (voxel_size * 2**level, see `cell_levels`), so
far surfaces merge while near detail stays. Ranks decide what a merge may change: a point of
a higher rank (the user's) is never moved by a lower one (a generated frame); a higher rank
replaces a lower one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .backproject import DepthPoints, colours_uint8, points_from_depth
from .cloud import CELLS_PER_FOOTPRINT, FIELDS, MAX_LEVEL, RANK_GENERATED, RANK_USER, SpatialMemory
from .errors import MemoryFormatError
from .voxels import (
    SIDE_AXES, VoxelIndex, argsort, group_by_key, key_levels, key_sides, point_keys, run_starts, side_bins,
)

__all__ = ["DepthPoints", "Merges", "cell_levels", "coarsen", "fuse", "fuse_points", "merge_cells", "pin_points",
           "points_from_depth", "refine"]


def _point_sides(view_dirs: torch.Tensor, normals: torch.Tensor | None) -> torch.Tensor:
    """Side bin of each point: its normal turned to face the camera, or the reversed view ray without one."""
    facing = -view_dirs
    if normals is not None:
        usable = torch.isfinite(normals).all(dim=1) & (normals.abs().sum(dim=1) > 0)
        facing = torch.where(usable[:, None], normals, facing)
        facing = torch.where(((facing * view_dirs).sum(1) > 0)[:, None], -facing, facing)
    return side_bins(facing)


@dataclass(frozen=True)
class _Sums:
    """Confidence-weighted sums per group: xyz [G,3], rgb [G,3] and the weight itself [G]."""

    xyz: torch.Tensor
    rgb: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def of_points(cls, xyz: torch.Tensor, rgb: torch.Tensor, conf: torch.Tensor | None) -> "_Sums":
        """One group per point; conf None means all ones."""
        rgb = rgb.to(torch.float32)
        if conf is None:
            return cls(xyz, rgb, torch.ones(len(xyz), dtype=torch.float32, device=xyz.device))
        return cls(xyz * conf[:, None], rgb * conf[:, None], conf)

    def grouped(self, index: torch.Tensor, count: int) -> "_Sums":
        """Sums over the groups `index` [rows] -> 0..count-1 (separate contiguous adds beat one wide add)."""
        def add(values):
            return torch.zeros((count, *values.shape[1:]), dtype=values.dtype, device=values.device).index_add_(0, index, values)

        return _Sums(add(self.xyz), add(self.rgb), add(self.weight))

    def take(self, rows: torch.Tensor) -> "_Sums":
        return _Sums(self.xyz[rows], self.rgb[rows], self.weight[rows])


def _to_rgb(values: torch.Tensor) -> torch.Tensor:
    return values.round().clamp_(0, 255).to(torch.uint8)


def _point_tensor(value, name: str, count: int, trailing: tuple[int, ...], device) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
    if tuple(tensor.shape) != (count, *trailing):
        raise MemoryFormatError(f"{name} must have shape {[count, *trailing]}, got {list(tensor.shape)}")
    return tensor.to(device)


def _all_finite(tensor: torch.Tensor) -> bool:
    # One reduction instead of an elementwise test: any NaN or inf makes the sum non-finite.
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


@dataclass(frozen=True)
class _NewPoints:
    """Validated input of fuse(); frame is a 0-d tensor when every point shares it."""

    xyz: torch.Tensor
    rgb: torch.Tensor
    conf: torch.Tensor | None  # None: all ones
    side: torch.Tensor
    frame: torch.Tensor
    level: torch.Tensor | None  # None: all level 0


def _new_points(xyz, rgb, conf, frame, view_dirs, normals, side, level, device) -> _NewPoints:
    xyz = xyz if isinstance(xyz, torch.Tensor) else torch.from_numpy(np.asarray(xyz))
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise MemoryFormatError(f"xyz must have shape [M, 3], got {list(xyz.shape)}")
    count = len(xyz)
    xyz = xyz.to(device=device, dtype=torch.float32)
    rgb = colours_uint8(_point_tensor(rgb, "rgb", count, (3,), device))
    if not _all_finite(xyz):
        raise MemoryFormatError("xyz contains NaN or infinite coordinates; mask invalid points before fusing")
    if side is not None:
        side = _point_tensor(side, "side", count, (), device).to(torch.uint8)
        if count and int(side.max()) >= len(SIDE_AXES):
            raise MemoryFormatError(f"side must be in 0..{len(SIDE_AXES) - 1}, got {int(side.max())}")
    elif view_dirs is not None:
        view_dirs = _point_tensor(view_dirs, "view_dirs", count, (3,), device).to(torch.float32)
        if not _all_finite(view_dirs) or bool((view_dirs.abs().sum(1) == 0).any()):
            raise MemoryFormatError("view_dirs must be finite, non-zero vectors")
        if normals is not None:
            normals = _point_tensor(normals, "normals", count, (3,), device).to(torch.float32)
        side = _point_sides(view_dirs, normals)
    else:
        raise MemoryFormatError("fuse needs view_dirs (or side) to tell the two faces of a surface apart")
    frame = torch.as_tensor(frame if isinstance(frame, torch.Tensor) else np.asarray(frame), device=device).to(torch.int32)
    if frame.ndim > 1 or (frame.ndim == 1 and len(frame) != count):
        raise MemoryFormatError(f"frame must be an int or have shape [{count}], got {list(frame.shape)}")
    if frame.ndim == 1 and count:
        low, high = torch.aminmax(frame)
        if low == high:
            frame = low
    if level is not None:
        level = _point_tensor(level, "level", count, (), device).to(torch.uint8)
        if count and int(level.max()) > MAX_LEVEL:
            raise MemoryFormatError(f"level must be in 0..{MAX_LEVEL}, got {int(level.max())}")
    if conf is not None:
        conf = _point_tensor(conf, "conf", count, (), device).to(torch.float32)
        keep = conf > 0  # also drops NaN
        if not bool(keep.all()):
            xyz, rgb, conf, side = xyz[keep], rgb[keep], conf[keep], side[keep]
            frame = frame[keep] if frame.ndim else frame
            level = level[keep] if level is not None else None
        if not _all_finite(conf):
            raise MemoryFormatError("conf contains infinite values")
        if bool((conf == 1).all()):
            conf = None
    return _NewPoints(xyz, rgb, conf, side, frame, level)


def fuse(
    memory: SpatialMemory,
    xyz,
    rgb,
    conf=None,
    *,
    frame,
    view_dirs=None,
    normals=None,
    side=None,
    level=None,
    rank: int = RANK_GENERATED,
    voxel_size: float | None = None,
) -> SpatialMemory:
    """Fuse new points (xyz [M,3], rgb [M,3] uint8 or float 0..1, conf [M], default 1) into the memory.

    `frame`: the frame index, an int or one per point. The side bin of each point comes from
    `side` [M] (0..5) if given, else from `normals` [M,3] turned against `view_dirs` [M,3]
    (camera-to-point directions; rows of non-finite normals use the reversed view direction),
    else from the reversed view direction alone. Points with conf <= 0 are ignored. Merged
    points keep their id and first_frame; conf adds up, position and colour become the
    confidence-weighted mean, last_frame the latest frame. `level` [M] (default 0) is each
    point's cell level. `rank` is the observation's: a memory point of a higher rank keeps its
    position, colour and confidence; one of a lower rank is replaced. `voxel_size` (default the
    memory's) becomes the result's voxel size.
    """
    size = memory.voxel_size if voxel_size is None else float(voxel_size)
    device = memory.device
    if rank not in (RANK_GENERATED, RANK_USER):
        raise MemoryFormatError(f"rank must be {RANK_GENERATED} or {RANK_USER}, got {rank}")
    points = _new_points(xyz, rgb, conf, frame, view_dirs, normals, side, level, device)
    if len(points.xyz) == 0:
        return memory if size == memory.voxel_size else memory.replace(voxel_size=size)

    keys = point_keys(points.xyz, points.side, size, points.level)
    groups, sums, first, last = _grouped(points, keys, device)
    index = memory.voxel_index(size)
    target, slots = index.lookup(groups.keys)
    hit = (target >= 0).nonzero()[:, 0]
    fresh = (target < 0).nonzero()[:, 0]
    old = target[hit]
    merged_xyz, merged_rgb, total = _merge_into(memory, old, sums.take(hit), rank)
    new = sums.take(fresh)
    new_keys = groups.keys[fresh]
    added = len(fresh)
    new_ids = torch.arange(memory.next_id, memory.next_id + added, dtype=torch.int64, device=device)
    out = SpatialMemory._unchecked(
        xyz=torch.cat([memory.xyz, new.xyz / new.weight[:, None]]),
        rgb=torch.cat([memory.rgb, _to_rgb(new.rgb / new.weight[:, None])]),
        conf=torch.cat([memory.conf, new.weight]),
        point_id=torch.cat([memory.point_id, new_ids]),
        first_frame=torch.cat([memory.first_frame, first[fresh]]),
        last_frame=torch.cat([memory.last_frame, last[fresh]]),
        side=torch.cat([memory.side, key_sides(new_keys)]),
        rank=torch.cat([memory.rank, torch.full((added,), rank, dtype=torch.uint8, device=device)]),
        level=torch.cat([memory.level, key_levels(new_keys)]),
        voxel_size=size,
        next_id=memory.next_id + added,
        _index=index.insert(new_keys, slots[fresh], len(memory)),
    )
    # The concatenation copied the old fields, so updating in place leaves `memory` untouched.
    out.xyz[old] = merged_xyz
    out.rgb[old] = merged_rgb
    out.conf[old] = total
    out.last_frame[old] = torch.maximum(memory.last_frame[old], last[hit])
    out.rank[old] = torch.clamp(memory.rank[old], min=rank)
    return out


def _grouped(points, keys, device):
    """The new points summed per cell key: (groups, sums per group, first and last frame per group)."""
    per_frame = points.frame.ndim == 1
    # Neighbouring pixels mostly share a voxel: summing runs of equal consecutive keys first
    # (a sequential pass) leaves several times fewer rows for the sort and the scattered adds.
    starts = run_starts(keys, points.frame if per_frame else None)
    runs = starts.nonzero()[:, 0]
    run_sums = _Sums.of_points(points.xyz, points.rgb, points.conf).grouped(torch.cumsum(starts, 0) - 1, len(runs))
    groups = group_by_key(keys[runs])
    unique = len(groups.keys)
    sums = run_sums.grouped(groups.inverse, unique)
    if per_frame:
        run_frames = points.frame[runs]
        fill = torch.zeros(unique, dtype=torch.int32, device=device)
        first = fill.scatter_reduce(0, groups.inverse, run_frames, "amin", include_self=False)
        last = fill.scatter_reduce(0, groups.inverse, run_frames, "amax", include_self=False)
    else:
        first = last = points.frame.expand(unique)
    return groups, sums, first, last


def _merge_into(memory: SpatialMemory, old, merged, rank: int):
    """Position, colour and confidence of the memory's points `old` with the sums `merged` fused in:
    confidence-weighted means, unless one side outranks the other (then it alone counts)."""
    held = memory.conf[old]
    total = held + merged.weight
    merged_xyz = (memory.xyz[old] * held[:, None] + merged.xyz) / total[:, None]
    merged_rgb = _to_rgb((memory.rgb[old].to(torch.float32) * held[:, None] + merged.rgb) / total[:, None])
    held_rank = memory.rank[old]
    if bool((held_rank != rank).any()):
        outranked = (held_rank > rank)[:, None]  # the memory's point stays as it is
        outranks = (held_rank < rank)[:, None]  # the observation replaces it
        new_xyz, new_rgb = merged.xyz / merged.weight[:, None], _to_rgb(merged.rgb / merged.weight[:, None])
        merged_xyz = torch.where(outranked, memory.xyz[old], torch.where(outranks, new_xyz, merged_xyz))
        merged_rgb = torch.where(outranked, memory.rgb[old], torch.where(outranks, new_rgb, merged_rgb))
        total = torch.where(outranked[:, 0], held, torch.where(outranks[:, 0], merged.weight, total))
    return merged_xyz, merged_rgb, total


def refine(memory: SpatialMemory, rows, shift, weight, rgb_sum, frame, *, rank: int = RANK_GENERATED) -> SpatialMemory:
    """Re-observations of existing points: rows [K] (positions in the memory, unique), shift
    [K,3] the confidence-weighted sum of the displacements the observations ask for, weight [K]
    their total confidence, rgb_sum [K,3] their confidence-weighted colour sum, frame [K] the
    latest frame. A point moves by shift / (conf + weight) and its colour likewise, so a
    well-observed point barely moves; conf grows by weight. A point of a higher rank than the
    observation keeps everything but last_frame."""
    rows = torch.as_tensor(rows, device=memory.device).long()
    if len(rows) == 0:
        return memory
    held = memory.conf[rows]
    weight = torch.as_tensor(weight, device=memory.device).float()
    keep = (memory.rank[rows] > rank) | (weight <= 0)
    weight = torch.where(keep, torch.zeros_like(weight), weight)
    total = held + weight
    safe = torch.where(total > 0, total, torch.ones_like(total))[:, None]
    xyz, rgb, conf, last = memory.xyz.clone(), memory.rgb.clone(), memory.conf.clone(), memory.last_frame.clone()
    old_xyz, old_rgb = memory.xyz[rows], memory.rgb[rows]  # gathered once: rows may be half the memory
    moved = old_xyz + torch.where(keep[:, None], torch.zeros_like(shift), shift.float()) / safe
    colour = (old_rgb.float() * held[:, None] + torch.where(keep[:, None], torch.zeros_like(rgb_sum), rgb_sum.float())) / safe
    new_xyz = torch.where(keep[:, None], old_xyz, moved)
    xyz[rows] = new_xyz
    rgb[rows] = torch.where(keep[:, None], old_rgb, _to_rgb(colour))
    conf[rows] = total
    last[rows] = torch.maximum(last[rows], torch.as_tensor(frame, device=memory.device).to(torch.int32))
    if not (bool(torch.isfinite(new_xyz).all()) and bool(torch.isfinite(total).all())):
        raise MemoryFormatError("refinement produced non-finite positions or confidences")
    # only the refined rows changed, and they were just checked: no need to validate the whole memory again
    fields = {name: getattr(memory, name) for name in FIELDS} | {"xyz": xyz, "rgb": rgb, "conf": conf, "last_frame": last}
    out = SpatialMemory._unchecked(**fields, voxel_size=memory.voxel_size, next_id=memory.next_id)
    index = memory._index
    if index is not None and index.voxel_size == memory.voxel_size:
        side, level = memory.side[rows], memory.level[rows]
        before = point_keys(old_xyz, side, memory.voxel_size, level)
        after = point_keys(new_xyz, side, memory.voxel_size, level)
        crossed = (before != after).nonzero()[:, 0]
        # small moves within their cells leave the sorted index valid; the few that cross are moved in it
        object.__setattr__(out, "_index", index.moved(rows[crossed], after[crossed]))
    return out


def cell_levels(footprint: torch.Tensor, voxel_size: float) -> torch.Tensor:
    """Level of the cell for points seen with the given pixel footprints [M] (metres): the
    largest level whose cell voxel_size * 2**level is at most half a footprint (so each pixel
    keeps its own point and splats of that size stay one pixel wide), at least 0."""
    ratio = (footprint / (CELLS_PER_FOOTPRINT * voxel_size)).clamp_(min=1.0)
    return torch.floor(torch.log2(ratio)).clamp_(0, MAX_LEVEL).to(torch.uint8)


def fuse_points(memory: SpatialMemory, points: DepthPoints, *, voxel_size: float | None = None,
                rank: int = RANK_GENERATED, scale_aware: bool = True) -> SpatialMemory:
    """fuse() with the output of points_from_depth(); with `scale_aware` each point's cell is
    about its pixel's footprint (see cell_levels)."""
    size = memory.voxel_size if voxel_size is None else float(voxel_size)
    level = cell_levels(points.footprint, size) if scale_aware and points.footprint is not None else None
    return fuse(memory, points.xyz, points.rgb, points.conf, frame=points.frame, side=points.side, level=level,
                rank=rank, voxel_size=voxel_size)


def pin_points(memory: SpatialMemory, points: DepthPoints, *, scale_aware: bool = True) -> SpatialMemory:
    """The pixels of an image the user gave, each kept as its own point (rank RANK_USER, never
    averaged with its neighbours or anything else), so the image comes back pixel for pixel at
    its own camera. Each point's level (its splat size elsewhere) is its pixel's footprint, as
    fuse_points gives it. Points of conf <= 0 are left out."""
    keep = points.conf > 0
    if len(points) == 0 or not bool(keep.any()):
        return memory
    device = memory.device
    xyz, rgb, conf = points.xyz[keep].to(device), points.rgb[keep].to(device), points.conf[keep].to(device)
    frame = points.frame[keep].to(device=device, dtype=torch.int32)
    if scale_aware and points.footprint is not None:
        level = cell_levels(points.footprint[keep].to(device), memory.voxel_size)
    else:
        level = torch.zeros(len(xyz), dtype=torch.uint8, device=device)
    added = len(xyz)
    return SpatialMemory._unchecked(
        xyz=torch.cat([memory.xyz, xyz.to(torch.float32)]),
        rgb=torch.cat([memory.rgb, rgb]),
        conf=torch.cat([memory.conf, conf.to(torch.float32)]),
        point_id=torch.cat([memory.point_id, torch.arange(memory.next_id, memory.next_id + added, device=device)]),
        first_frame=torch.cat([memory.first_frame, frame]),
        last_frame=torch.cat([memory.last_frame, frame]),
        side=torch.cat([memory.side, points.side[keep].to(device=device, dtype=torch.uint8)]),
        rank=torch.cat([memory.rank, torch.full((added,), RANK_USER, dtype=torch.uint8, device=device)]),
        level=torch.cat([memory.level, level]),
        voxel_size=memory.voxel_size,
        next_id=memory.next_id + added,
    )


@dataclass(frozen=True)
class Merges:
    """Points merged away by a regrouping: `ids` [K] merged into `into` [K] (ids that survive)."""

    ids: torch.Tensor
    into: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)


def _regroup(memory: SpatialMemory, keys: torch.Tensor, level: torch.Tensor, voxel_size: float) -> tuple[SpatialMemory, Merges]:
    """One point per distinct key: confidence-weighted mean position and colour, summed conf,
    earliest first_frame, latest last_frame, highest rank, and the id of the group's most
    confident point (the smallest id among equals), so surviving ids stay stable. A group
    holding user points keeps only their position and colour."""
    device = memory.device
    order = argsort(memory.point_id, stable=True)
    order = order[argsort(-memory.conf[order], stable=True)]
    order = order[argsort(-memory.rank[order].to(torch.int32), stable=True)]
    order = order[argsort(keys[order], stable=True)]
    groups = group_by_key(keys, order=order)
    count = len(groups.keys)
    fill = torch.zeros(count, dtype=torch.int32, device=device)
    top_rank = fill.to(torch.uint8).scatter_reduce(0, groups.inverse, memory.rank, "amax", include_self=False)
    # Within a group only the top rank's points shape the result.
    weight = torch.where(memory.rank == top_rank[groups.inverse], memory.conf, torch.zeros_like(memory.conf))
    sums = _Sums.of_points(memory.xyz, memory.rgb, weight).grouped(groups.inverse, count)
    total = sums.weight[:, None]
    empty = total == 0  # groups of zero confidence fall back to their representative's values
    # Each group takes the row of its representative, so the result keeps the memory's row order
    # (minus the merged rows): a version stored as a delta against its parent stays small.
    rows = argsort(groups.first)
    position = torch.empty_like(rows)
    position[rows] = torch.arange(count, device=device)
    survivor = memory.point_id[groups.first]
    conf = torch.zeros(count, dtype=torch.float32, device=device).index_add_(0, groups.inverse, memory.conf)
    result = SpatialMemory(
        xyz=torch.where(empty, memory.xyz[groups.first], sums.xyz / total)[rows],
        rgb=torch.where(empty, memory.rgb[groups.first], _to_rgb(sums.rgb / total))[rows],
        conf=conf[rows],
        point_id=survivor[rows],
        first_frame=fill.scatter_reduce(0, groups.inverse, memory.first_frame, "amin", include_self=False)[rows],
        last_frame=fill.scatter_reduce(0, groups.inverse, memory.last_frame, "amax", include_self=False)[rows],
        side=memory.side[groups.first][rows],
        rank=top_rank[rows],
        level=level[groups.first][rows],
        voxel_size=voxel_size,
        next_id=memory.next_id,
        _index=VoxelIndex(float(voxel_size), groups.keys, position),
    )
    gone = memory.point_id != survivor[groups.inverse]
    return result, Merges(memory.point_id[gone], survivor[groups.inverse][gone])


def coarsen(memory: SpatialMemory, voxel_size: float) -> SpatialMemory:
    """Re-fuse the memory's own points at one (larger) voxel size, every cell at level 0
    (see _regroup for how a group becomes one point)."""
    if len(memory) == 0:
        return memory.replace(voxel_size=voxel_size)
    level = torch.zeros_like(memory.level)
    return _regroup(memory, point_keys(memory.xyz, memory.side, voxel_size), level, voxel_size)[0]


def merge_cells(memory: SpatialMemory, level: torch.Tensor) -> tuple[SpatialMemory, Merges]:
    """Give the points new cell levels [N] (each at least its current one) and merge the points
    that then share a cell and side. Returns the memory and which ids merged into which."""
    level = torch.maximum(torch.as_tensor(level, device=memory.device).to(torch.uint8), memory.level)
    if len(memory) == 0:
        return memory, Merges(memory.point_id, memory.point_id)
    keys = point_keys(memory.xyz, memory.side, memory.voxel_size, level)
    return _regroup(memory, keys, level, memory.voxel_size)
