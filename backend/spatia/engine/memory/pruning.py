"""Pruning: carving points that new views see through, and keeping the memory within a budget."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from spatia.cameras import Cameras

from .cloud import BYTES_PER_POINT, FIELDS, MAX_LEVEL, RANK_GENERATED, SpatialMemory
from .errors import MemoryFormatError
from .fusion import Merges, merge_cells
from .voxels import argsort, group_by_key, point_keys

DEFAULT_HALF_LIFE_FRAMES = 240.0


def _observed_depth(depth: torch.Tensor, valid: torch.Tensor, window: int) -> torch.Tensor:
    """Depth [F,H,W] with invalid pixels at 0 (never carves), then the minimum over a (2w+1)^2 window."""
    observed = torch.where(valid, depth, torch.zeros_like(depth))
    if window <= 0:
        return observed
    size = 2 * window + 1
    # Out-of-image neighbours are ignored (max-pool pads with -inf), holes count as depth 0.
    return -F.max_pool2d(-observed[:, None], size, stride=1, padding=window)[:, 0]


def carve(
    memory: SpatialMemory,
    depth,
    cameras: Cameras,
    *,
    margin_abs: float,
    margin_rel: float,
    valid=None,
    window: int = 1,
    protected=None,
) -> tuple[SpatialMemory, int]:
    """Remove the points that the depth observations [F,H,W] see through.

    A point in front of camera f (z > 0) that projects into pixel (floor(u), floor(v))
    inside the image, where the observed depth is valid (finite, > 0 and `valid` [F,H,W]
    True) and farther than z + margin_abs + margin_rel * z, lies in space the camera saw
    as empty, so it goes. Points behind the observed surface, outside every view or on
    invalid pixels stay. With window > 0 the observed depth is the minimum over the
    (2*window+1)^2 pixels around the hit (holes count as 0), so a point on a silhouette
    edge is not carved by sub-pixel misalignment; window=0 tests the single pixel.
    Points marked in `protected` [N] (e.g. the user's own) are never removed.
    Returns the pruned memory (ids kept) and the number of removed points.
    """
    if margin_abs < 0 or margin_rel < 0:
        raise MemoryFormatError(f"margins must be non-negative, got margin_abs={margin_abs}, margin_rel={margin_rel}")
    device = memory.device
    count, height, width = len(cameras), cameras.height, cameras.width
    depth = torch.as_tensor(depth if isinstance(depth, torch.Tensor) else np.asarray(depth), device=device).to(torch.float32)
    if tuple(depth.shape) != (count, height, width):
        raise MemoryFormatError(f"depth must have shape [{count}, {height}, {width}], got {list(depth.shape)}")
    usable = torch.isfinite(depth) & (depth > 0)
    if valid is not None:
        valid = torch.as_tensor(valid if isinstance(valid, torch.Tensor) else np.asarray(valid), device=device)
        if tuple(valid.shape) != (count, height, width):
            raise MemoryFormatError(f"valid must have shape [{count}, {height}, {width}], got {list(valid.shape)}")
        usable &= valid.to(torch.bool)
    if len(memory) == 0:
        return memory, 0

    w2c = torch.as_tensor(cameras.w2c, dtype=torch.float32, device=device)
    intrinsics = cameras.intrinsics
    removed = torch.zeros(len(memory), dtype=torch.bool, device=device)
    for f in range(count):
        observed = _observed_depth(depth[f : f + 1], usable[f : f + 1], window)[0].reshape(-1)
        cam = memory.xyz @ w2c[f, :3, :3].T + w2c[f, :3, 3]
        z = cam[:, 2]
        fx, fy, cx, cy = (float(k) for k in intrinsics[f])
        safe_z = torch.where(z > 0, z, torch.ones_like(z))
        col = torch.floor(fx * cam[:, 0] / safe_z + cx)
        row = torch.floor(fy * cam[:, 1] / safe_z + cy)
        inside = (z > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
        pixel = (row.clamp(0, height - 1) * width + col.clamp(0, width - 1)).to(torch.int64)
        seen_through = observed[pixel] > z + margin_abs + margin_rel * z
        removed |= inside & seen_through
    if protected is not None:
        removed &= ~torch.as_tensor(protected, device=device).to(torch.bool)
    count = int(removed.sum())
    return (memory.subset(~removed) if count else memory), count


def budget_score(memory: SpatialMemory, *, half_life_frames: float = DEFAULT_HALF_LIFE_FRAMES) -> torch.Tensor:
    """Keep-priority of each point: conf * 0.5 ** ((newest last_frame - last_frame) / half_life_frames
    + level / 2), so rarely seen, long-unseen and far (coarse-celled) points yield first.

    Confidence counts observations (a merged point carries the sum of what it merged, so the
    same points are not coarsened over and over); the decay halves it for every
    `half_life_frames` frames since the point was last seen, so a stale point yields to a
    fresher one of equal support; a point seen from twice as far counts 1/sqrt(2) as much.
    """
    if half_life_frames <= 0:
        raise MemoryFormatError(f"half_life_frames must be positive, got {half_life_frames}")
    if len(memory) == 0:
        return memory.conf.clone()
    age = (memory.last_frame.max() - memory.last_frame).to(torch.float32)
    return memory.conf * torch.pow(0.5, age / half_life_frames + memory.level.to(torch.float32) / 2)


def _compose(earlier: Merges, later: Merges) -> Merges:
    """Merges of two regroupings in a row: where an earlier survivor merged later, follow it."""
    if len(later) == 0:
        return earlier
    order = torch.argsort(later.ids)
    ids, into = later.ids[order], later.into[order]
    pos = torch.searchsorted(ids, earlier.into).clamp_(max=len(ids) - 1)
    moved = ids[pos] == earlier.into
    followed = torch.where(moved, into[pos], earlier.into)
    return Merges(torch.cat([earlier.ids, later.ids]), torch.cat([followed, later.into]))


def coarsen_to_budget(
    memory: SpatialMemory,
    cap: int,
    *,
    half_life_frames: float = DEFAULT_HALF_LIFE_FRAMES,
) -> tuple[SpatialMemory, Merges]:
    """At most `cap` points by merging cells, never by dropping a place.

    A pass groups the points by the cell one level up from their own; each group of two or more
    could merge into one point. Groups merge cheapest first, cost = the group's summed
    keep-priority (budget_score: rarely seen, long unseen and far first) per point saved, just
    enough of them to reach the cap. Only generated points are coarsened (a user point may
    absorb them, keeping its own position); the user's own points are pinned, each pixel of the
    images the user gave kept as it is, and count against the cap without ever merging. Passes repeat, a level
    coarser each time a pass finds nothing to merge, so the memory is coarsened only where and as
    much as the budget needs. Every place keeps a point (the merged one): when nothing is left
    to merge the memory stays above the cap rather than forget anything. Returns the memory and
    which ids merged into which.
    """
    if cap < 0:
        raise MemoryFormatError(f"budget must be non-negative, got {cap}")
    merges = Merges(memory.point_id[:0], memory.point_id[:0])
    pinned = memory.rank != RANK_GENERATED
    if len(memory) > cap and bool(pinned.any()):
        # the user's points stay as they are (several may share a cell) and the rest merges among itself
        fixed = memory.subset(pinned)
        rest, merges = coarsen_to_budget(memory.subset(~pinned), max(cap - len(fixed), 0),
                                         half_life_frames=half_life_frames)
        values = {name: torch.cat([getattr(fixed, name), getattr(rest, name)]) for name in FIELDS}
        return SpatialMemory(**values, voxel_size=memory.voxel_size, next_id=memory.next_id), merges
    for users_too in (False,):  # the user's points are pinned: never merged
        step_up = 1
        while len(memory) > cap and step_up <= MAX_LEVEL:
            grows = torch.ones_like(memory.rank, dtype=torch.bool) if users_too else memory.rank == RANK_GENERATED
            target = torch.where(grows, (memory.level.to(torch.int32) + step_up).clamp_(max=MAX_LEVEL),
                                 memory.level.to(torch.int32)).to(torch.uint8)
            score = budget_score(memory, half_life_frames=half_life_frames)
            groups = group_by_key(point_keys(memory.xyz, memory.side, memory.voxel_size, target))
            count = torch.bincount(groups.inverse, minlength=len(groups.keys))
            mergeable = count >= 2
            if not bool(mergeable.any()):
                step_up += 1  # nothing shares a cell one level up: look further
                continue
            cost = torch.zeros(len(count), dtype=torch.float64, device=memory.device).index_add_(
                0, groups.inverse, score.to(torch.float64)) / (count - 1).clamp(min=1)
            candidates = mergeable.nonzero()[:, 0]
            candidates = candidates[argsort(cost[candidates], stable=True)]
            saved = torch.cumsum(count[candidates] - 1, 0)
            chosen = candidates[: int(torch.searchsorted(saved, len(memory) - cap)) + 1]
            take = torch.zeros(len(count), dtype=torch.bool, device=memory.device)
            take[chosen] = True
            level = torch.where(take[groups.inverse], target, memory.level)
            memory, step = merge_cells(memory, level)
            merges = _compose(merges, step)
            step_up = 1
    return memory, merges


def apply_budget(
    memory: SpatialMemory,
    *,
    max_points: int | None = None,
    max_bytes: int | None = None,
    half_life_frames: float = DEFAULT_HALF_LIFE_FRAMES,
) -> SpatialMemory:
    """A memory within max_points points and max_bytes bytes (whichever is tighter) by merging
    cells (see coarsen_to_budget); surviving points keep their ids."""
    caps = []
    if max_points is not None:
        caps.append(int(max_points))
    if max_bytes is not None:
        caps.append(int(max_bytes) // BYTES_PER_POINT)
    if not caps:
        return memory
    return coarsen_to_budget(memory, min(caps), half_life_frames=half_life_frames)[0]
