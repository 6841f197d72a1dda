"""The per-clip memory update: align new depth to the memory, keep dynamic pixels out,
weigh every new pixel against what the memory already holds there, carve what the new views
see through, fuse the rest. A generated frame's pixel-to-pixel depth jitter is smoothed out
first (memory.depth_noise), and what noise the aligned depth still has against the memory
widens the agreement along each line of sight (see below).

Each static pixel with depth is compared with the memory's own render at that camera (the
z-buffer of splats, and which point won the pixel):
- it **agrees** (its back-projection lies within agree_abs + agree_rel * m + the point's cell
  of the winning point): at the point's own pixel or inside its cell (across the line of sight;
  along it, the cell plus NOISE_SIGMAS of the frame's measured depth noise) it is a re-observation,
  which refines the point along the line of sight by the confidence-weighted residual (a
  well-observed point barely moves; re-fusing the memory's own render moves nothing) and adds
  no new point; elsewhere it is a new sample of the same surface, fused into its cell;
- it **conflicts** (nearer, or seen through the point's own pixel) with a point that outranks
  the observation (a user point against a generated frame, or one observed with at least
  `protect_conf` confidence): the pixel is kept out and counted, the point stays;
- otherwise it is new: it may carve the points it sees through (never protected ones) and is
  fused as a new point, in a cell about its pixel's footprint.

The user's own images (rank RANK_USER: the first image, Blender renders) are not weighed: each
pixel becomes its own pinned point (pin_points), and lower-ranked points on the surface it shows
give way to it. A view of the user's stays exact at its camera: whatever lower-ranked point would
stand in space it saw as empty (its splat over any of the view's pixels, in front of what the view
showed) is kept out when new and swept out after refinement, fusion and budget merges.

This step needs both the renderer and the memory package, so it sits above both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from spatia.engine.alignment import DepthAlignment, fit_scale_shift
from spatia.cameras import Cameras
import torch

from spatia.engine.memory import (
    RANK_GENERATED, RANK_USER, Merges, SpatialMemory, carve, cell_levels, coarsen_to_budget, fuse, fuse_points,
    pin_points, points_from_depth, refine,
)
from spatia.engine.memory.cloud import CELLS_PER_FOOTPRINT
from spatia.engine.memory.depth_noise import smooth_noisy_depth
from spatia.engine.poses import exact_matches
from spatia.engine.render import (
    OCCLUSION_MARGIN_REL, OCCLUSION_MARGIN_VOXELS, SPLAT_OVERLAP, point_sizes, render, render_memory,
)

MAX_SPLAT_PX = 8  # the renderer's default max_radius_px


@dataclass(frozen=True)
class UpdateSettings:
    carve_margin_abs: float = 0.05  # metres
    carve_margin_rel: float = 0.05  # share of depth: generated depth is noisier far away
    align: bool = True
    align_shift: bool = False  # metric depth models need a scale; a shift is for affine-invariant ones
    max_points: int | None = 4_000_000
    render_device: str | None = None
    chunk_frames: int = 1  # frames weighed and fused together: one at a time, so each frame meets the memory its predecessors made
    agree_abs: float = 0.05  # metres: a re-observation within this (plus agree_rel of the depth) agrees
    agree_rel: float = 0.05
    protect_conf: float = 2.0  # a point seen with this much confidence is not overruled by one generated frame
    scale_aware: bool = True  # fusion cells grow with depth, about one pixel's footprint


@dataclass
class UpdateStats:
    points_before: int = 0
    points_after: int = 0
    carved: int = 0
    added_pixels: int = 0
    excluded_pixels: int = 0
    reobserved_pixels: int = 0  # agreed with the memory: refined a point, added none
    conflict_pixels: int = 0  # contradicted a point that outranks them: kept out
    points_added: int = 0
    points_merged: int = 0  # merged into others by the budget
    replaced: int = 0  # lower-ranked points a user's image saw where they are: replaced by its pixels
    swept: int = 0  # lower-ranked points removed from space a pinned view saw as empty (new, refined or merged)
    alignments: list[DepthAlignment] = field(default_factory=list)
    merges: Merges | None = None

    def as_dict(self) -> dict:
        return {
            "points_before": self.points_before,
            "points_after": self.points_after,
            "points_added": self.points_added,
            "points_merged": self.points_merged,
            "carved": self.carved,
            "added_pixels": self.added_pixels,
            "excluded_pixels": self.excluded_pixels,
            "reobserved_pixels": self.reobserved_pixels,
            "conflict_pixels": self.conflict_pixels,
            "swept": self.swept,
            "replaced": self.replaced,
            "alignment": [
                {"scale": a.scale, "shift": a.shift, "inliers": a.inliers, "fitted": a.fitted,
                 "noise": round(a.noise, 6)} for a in self.alignments
            ],
        }


def align_to_memory(memory: SpatialMemory, depth: np.ndarray, cameras: Cameras, static: np.ndarray,
                    settings: UpdateSettings, rendered=None) -> tuple[np.ndarray, list[DepthAlignment]]:
    """Fit each depth map [F,H,W] to the memory's rendered depth on static covered pixels.
    `rendered`: the memory's render at `cameras` with its centres (render_memory(...,
    return_centres=True)), when the caller has it."""
    if len(memory) == 0 or not settings.align:
        return depth.astype(np.float32), [DepthAlignment(1.0, 0.0, 0, 0, False)] * len(depth)
    # Only the pixels a memory point projects into (no splat footprints): splats stand in front
    # of farther surfaces at silhouettes and grazing angles, which would bias the fit.
    if rendered is None:
        rendered = memory_view(memory, cameras, settings)
    reference = rendered.centre_depth.cpu().numpy()
    covered = rendered.centre_index.cpu().numpy() >= 0
    aligned, fits = np.empty_like(depth, dtype=np.float32), []
    for f in range(len(depth)):
        fit = fit_scale_shift(depth[f], np.where(covered[f], reference[f], 0.0), covered[f] & static[f],
                              with_shift=settings.align_shift)
        aligned[f] = fit.apply(depth[f])
        fits.append(fit)
    return aligned, fits


@dataclass
class _Verdicts:
    """Per-pixel outcome of weighing new depth against the memory, for a few frames."""

    reobserved: np.ndarray  # [F,H,W] bool
    conflict: np.ndarray  # [F,H,W] bool
    memory: SpatialMemory  # refined by the re-observations


def splat_reach(xyz: torch.Tensor, sizes: torch.Tensor, cameras: Cameras, a: int, max_radius_px: int = MAX_SPLAT_PX):
    """Where points land in camera `a` and how far their splats reach there, as the renderer draws
    them: (z [M], column [M], row [M] (pixel indices, may lie outside the image), half-width k
    [M] in pixels)."""
    w2c = torch.as_tensor(cameras.w2c[a], dtype=torch.float32, device=xyz.device)
    cam = xyz @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    fx, fy, cx, cy = (float(k) for k in cameras.intrinsics[a])
    safe = torch.where(z > 0, z, torch.ones_like(z))
    u, v = fx * cam[:, 0] / safe + cx, fy * cam[:, 1] / safe + cy
    col, row = torch.floor(u), torch.floor(v)
    # the renderer's local f * stretch at the pixel centre, and its ring rule: ring t is drawn
    # while z < f * stretch * size / (2t - 1)
    local = max(fx, fy) * torch.sqrt(1 + ((col + 0.5 - cx) / fx) ** 2 + ((row + 0.5 - cy) / fy) ** 2)
    k = torch.floor((local * sizes / safe + 1) / 2).clamp_(0, max_radius_px)
    k = torch.where(local * sizes / safe > 2 * k - 1, k, (k - 1).clamp_(min=0))  # strict: ring k needs z below the reach
    return z, col, row, k.to(torch.int64)


class PinnedViews:
    """The pinned views' cameras and what they saw: depth [A,H,W] (0 = none), with the nearest
    surface a splat of half-width k may not come in front of (a max filter of k pixels), built
    once per update."""

    def __init__(self, cameras: Cameras, depth: torch.Tensor):
        self.cameras, self.depth = cameras, depth
        front = torch.where(depth > 0, depth * (1 - OCCLUSION_MARGIN_REL), torch.full_like(depth, -math.inf))
        self._limits = [front]

    def limit(self, radius: int) -> torch.Tensor:
        """[A,H,W]: the farthest 'front' within `radius` pixels (3x3 max filters, one per ring)."""
        while len(self._limits) <= radius:
            last = self._limits[-1][:, None]
            self._limits.append(torch.nn.functional.max_pool2d(last, 3, stride=1, padding=1)[:, 0])
        return self._limits[radius]


def in_pinned_free_space(xyz: torch.Tensor, sizes, cameras: Cameras, depth, near: float = 1e-2) -> torch.Tensor:
    """Bool [M]: points whose splat (of `sizes` [M] metres, as the renderer draws it) would take
    a pixel of one of the pinned views `cameras` whose observed depth [A,H,W] (0 = none; or a
    PinnedViews) lies behind it, i.e. points in space such a view saw as empty. The whole
    footprint counts, so a point whose centre falls just outside the image but whose splat
    reaches its border is caught."""
    out = torch.zeros(len(xyz), dtype=torch.bool, device=xyz.device)
    if len(xyz) == 0:
        return out
    views = depth if isinstance(depth, PinnedViews) else PinnedViews(cameras, torch.as_tensor(depth).float())
    sizes = torch.as_tensor(sizes, dtype=torch.float32, device=xyz.device).expand(len(xyz))
    h, w = cameras.height, cameras.width
    for a in range(len(cameras)):
        z, col, row, k = splat_reach(xyz, sizes, cameras, a)
        inside = ((z > near) & (col >= -k) & (col < w + k) & (row >= -k) & (row < h + k)).nonzero()[:, 0]
        if len(inside) == 0:
            continue
        z, k = z[inside], k[inside]
        pixel = (row[inside].clamp(0, h - 1) * w + col[inside].clamp(0, w - 1)).long()
        limit = torch.empty_like(z)
        for radius in torch.unique(k).tolist():
            pick = k == radius
            limit[pick] = views.limit(radius)[a].reshape(-1).to(xyz.device)[pixel[pick]]
        out[inside] |= z < limit - OCCLUSION_MARGIN_VOXELS * sizes[inside]
    return out


def pinned_depth(memory: SpatialMemory, anchors: Cameras | None, rank: int, device=None) -> PinnedViews | None:
    """What the pinned views `anchors` saw: the depth [A,H,W] (0 = none) of the points that
    outrank `rank` (the user's), rendered pixel for pixel at their own cameras; None without
    such points."""
    if anchors is None or len(anchors) == 0:
        return None
    users = (memory.rank > rank).nonzero()[:, 0]
    if len(users) == 0:
        return None
    sizes = point_sizes(memory)
    sizes = sizes[users] if torch.is_tensor(sizes) else sizes
    view = render(memory.xyz[users], None, anchors, point_size=sizes, depth_only=True, device=device,
                  priority=torch.ones(len(users), dtype=torch.bool), exact=exact_matches(anchors, anchors))
    depth = torch.where(view.mask, view.depth, torch.zeros_like(view.depth)).to(memory.device)
    return PinnedViews(anchors, depth)


def sweep_pinned_free_space(memory: SpatialMemory, anchors: Cameras, depth: PinnedViews | None,
                            rank: int) -> tuple[SpatialMemory, int]:
    """Remove the points of rank `rank` or below that stand in space a pinned view saw as empty,
    wherever they came from (new, refined or merged): (memory, how many were removed)."""
    if depth is None or len(memory) == 0:
        return memory, 0
    lower = (memory.rank <= rank).nonzero()[:, 0]
    if len(lower) == 0:
        return memory, 0
    sizes = point_sizes(memory)
    sizes = sizes[lower] if torch.is_tensor(sizes) else sizes
    bad = in_pinned_free_space(memory.xyz[lower], sizes, anchors, depth)
    if not bool(bad.any()):
        return memory, 0
    keep = torch.ones(len(memory), dtype=torch.bool, device=memory.device)
    keep[lower[bad]] = False
    return memory.subset(keep), int(bad.sum())


def _replaced_by_pinned(memory: SpatialMemory, depth: np.ndarray, cameras: Cameras, valid: np.ndarray, rank: int,
                        settings: UpdateSettings) -> tuple[SpatialMemory, int]:
    """Points of a lower rank than an image the user gave that lie on its surface (their own pixel
    holds depth within agree_abs + agree_rel * depth + their spacing of theirs) give way to the
    image's pixels: (memory without them, how many)."""
    lower = (memory.rank < rank).nonzero()[:, 0]
    if len(lower) == 0:
        return memory, 0
    xyz = memory.xyz[lower]
    spacing = memory.spacing()
    spacing = spacing[lower] if torch.is_tensor(spacing) else torch.full((len(lower),), float(spacing))
    gone = torch.zeros(len(lower), dtype=torch.bool, device=memory.device)
    h, w = cameras.height, cameras.width
    for f in range(len(cameras)):
        z, col, row, _ = splat_reach(xyz, spacing, cameras, f)
        inside = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        pixel = (row.clamp(0, h - 1) * w + col.clamp(0, w - 1)).long()
        seen = torch.as_tensor(depth[f], device=memory.device).reshape(-1)[pixel]
        usable = torch.as_tensor(valid[f], device=memory.device).reshape(-1)[pixel]
        near = (z - seen).abs() <= settings.agree_abs + settings.agree_rel * seen + spacing
        gone |= inside & usable & near
    if not bool(gone.any()):
        return memory, 0
    keep = torch.ones(len(memory), dtype=torch.bool, device=memory.device)
    keep[lower[gone]] = False
    return memory.subset(keep), int(gone.sum())


def _new_point_sizes(points, voxel_size: float, settings: UpdateSettings) -> torch.Tensor | float:
    """The splat sizes new points will be drawn with once fused (point_sizes of their cells)."""
    if settings.scale_aware and points.footprint is not None:
        level = cell_levels(points.footprint, voxel_size).to(torch.float32)
        return torch.exp2(level) * (voxel_size * CELLS_PER_FOOTPRINT * SPLAT_OVERLAP)
    return voxel_size * CELLS_PER_FOOTPRINT * SPLAT_OVERLAP


def memory_view(memory: SpatialMemory, cameras: Cameras, settings: UpdateSettings):
    """The memory's depth render at `cameras` with the winning points, and the centres' before
    splats grew (one pass serves the depth fit and the weighing)."""
    return render_memory(memory, cameras, depth_only=True, return_index=True, return_centres=True,
                         device=settings.render_device)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot products along the last axis of two [..., 3] arrays."""
    return np.einsum("...i,...i->...", a, b)


NOISE_SIGMAS = 3.0  # slack along a line of sight, in the depth's own standard deviations
NEGLIGIBLE_SLACK = 0.25  # slack under this share of every pixel's cell is not worth weighing for


def _within_cell(seen: np.ndarray, offset: np.ndarray, gap: np.ndarray, cell: np.ndarray, depth: np.ndarray,
                 cameras: Cameras, noise) -> np.ndarray:
    """[F,H,W] bool: the pixels' observations `seen` [F,H,W,3] (world points at `depth`), `offset`
    [F,H,W,3] from the point that won their pixel (`gap` its length), inside an ellipsoid around
    that point: `cell` across the pixel's line of sight, `cell` plus NOISE_SIGMAS times the
    frame's relative depth `noise` [F] of the depth along it (a sphere of radius `cell` for exact
    depth)."""
    noise = np.zeros(len(depth)) if noise is None else np.asarray(noise, dtype=np.float64)
    extra = NOISE_SIGMAS * noise[:, None, None] * depth
    if not (extra > NEGLIGIBLE_SLACK * cell).any():  # the sphere, but for a sliver along the ray
        return gap <= cell
    slack = cell + extra
    ray = seen - cameras.c2w[:, None, None, :3, 3]
    # offset . ray / |ray|, with einsum's dot products (2-3x faster than the elementwise product's sum)
    along = _dot(offset, ray) / np.maximum(np.sqrt(_dot(ray, ray)), 1e-12)
    across_sq = np.maximum(gap * gap - along * along, 0.0)
    return across_sq / (cell * cell) + (along * along) / (slack * slack) <= 1.0


def weigh_observations(memory: SpatialMemory, frames: np.ndarray, depth: np.ndarray, cameras: Cameras,
                       frame_indices: np.ndarray, static: np.ndarray, weight: np.ndarray, *, rank: int,
                       settings: UpdateSettings, rendered=None, noise=None) -> _Verdicts:
    """Which pixels re-observe a memory point (and refine it) and which conflict with one (see
    the module docstring); pixels that are neither are new. `noise` [F]: each frame's relative
    depth noise (DepthAlignment.noise; default 0)."""
    shape = depth.shape
    none = np.zeros(shape, dtype=bool)
    if len(memory) == 0:
        return _Verdicts(none, none.copy(), memory)
    splats = memory_view(memory, cameras, settings) if rendered is None else rendered
    winner = splats.index.cpu().numpy()
    rendered = np.nan_to_num(splats.depth.cpu().numpy(), posinf=0.0)
    # the pixel a point projects into itself: only there can it be seen through for certain
    centres = splats.centre_index
    own_pixel = (centres.cpu().numpy() == winner) & (winner >= 0)

    observed = static & (depth > 0) & (weight > 0)
    covered = observed & (winner >= 0)
    safe = np.where(winner >= 0, winner, 0)
    xyz = memory.xyz.cpu().numpy()  # float32; the points a frame's pixels meet are taken in float64 below
    splat = point_sizes(memory)  # what a point's splat covers
    splat = np.broadcast_to(np.asarray(splat.cpu().numpy() if torch.is_tensor(splat) else splat, dtype=np.float64),
                            (len(memory),))
    # The farthest a square splat reaches from its point: half its side (the projection's stretch
    # up to 1.5 at a frame's corners, plus the half pixel the centre may sit off) across the diagonal.
    focal = np.minimum(cameras.intrinsics[:, 0], cameras.intrinsics[:, 1])[:, None, None]
    cell = np.sqrt(2.0) * (0.75 * splat[safe] + 0.5 * rendered / focal)
    # The pixel's observation as a world point, against the point that won the pixel: a 3-D
    # distance, so pixels of a splat on a surface seen at a grazing angle still agree with it.
    seen = cameras.unproject(depth)
    offset = seen - xyz[safe]  # float64: the float32 points are promoted exactly
    gap = np.sqrt(_dot(offset, offset))
    consistent = covered & (gap <= settings.agree_abs + settings.agree_rel * rendered + cell)
    # The same sample as the point: its own pixel, or within what its splat covers across the
    # line of sight and within that plus the depth's own noise along it (noisy depth would
    # otherwise scatter one surface's samples over several cells, one behind the other). Other
    # consistent pixels are new samples of the same surface, fused into cells like any new point.
    agree = consistent & (own_pixel | _within_cell(seen, offset, gap, cell, depth, cameras, noise))
    residual = depth - rendered
    protected = ((memory.rank > rank) | (memory.conf >= settings.protect_conf)).cpu().numpy()[safe]
    conflict = covered & ~consistent & protected & ((residual < 0) | own_pixel)
    refine_at = agree & own_pixel  # a point's own pixel says where along the line of sight it is

    # Re-observations: each frame counts once per point (a point's centre lands in one pixel, so it
    # owns at most one pixel a frame), and moves the point along that camera's line of sight by
    # the residual.
    rows_all, shift_all, weight_all, rgb_all, frame_all = [], [], [], [], []
    rgb_of = frames.reshape(-1, 3).astype(np.float64)
    for f in range(shape[0]):
        pixels = np.flatnonzero(refine_at[f])
        if len(pixels) == 0:
            continue
        rows = winner[f].reshape(-1)[pixels]
        w = weight[f].reshape(-1)[pixels].astype(np.float64)
        r = residual[f].reshape(-1)[pixels] / np.maximum(rendered[f].reshape(-1)[pixels], 1e-6)
        rows_all.append(rows)
        weight_all.append(w)
        shift_all.append((xyz[rows].astype(np.float64) - cameras.c2w[f, :3, 3]) * (w * r)[:, None])
        rgb_all.append(rgb_of[f * shape[1] * shape[2] + pixels] * w[:, None])
        frame_all.append(np.full(len(rows), int(frame_indices[f])))
    if rows_all:
        unique, inverse = np.unique(np.concatenate(rows_all), return_inverse=True)

        def total(values):  # summed per point, in frame order
            values = np.concatenate(values)
            if values.ndim == 1:
                return np.bincount(inverse, values, len(unique))
            return np.stack([np.bincount(inverse, values[:, c], len(unique)) for c in range(values.shape[1])], axis=1)

        frame = np.zeros(len(unique), dtype=np.int64)
        np.maximum.at(frame, inverse, np.concatenate(frame_all))
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=memory.device)  # noqa: E731
        memory = refine(memory, torch.as_tensor(unique, device=memory.device), as_tensor(total(shift_all)),
                        as_tensor(total(weight_all)), as_tensor(total(rgb_all)), torch.as_tensor(frame), rank=rank)
    return _Verdicts(agree, conflict, memory)


def update_memory(
    memory: SpatialMemory,
    frames: np.ndarray,
    depth: np.ndarray,
    cameras: Cameras,
    frame_indices,
    *,
    dynamic: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    rank: int = RANK_GENERATED,
    anchors: Cameras | None = None,
    settings: UpdateSettings = UpdateSettings(),
) -> tuple[SpatialMemory, np.ndarray, UpdateStats]:
    """Update the memory with frames [F,H,W,3] uint8 seen by `cameras` with depth [F,H,W].

    `dynamic` [F,H,W] marks pixels that must never enter the memory (people, cars); they
    neither add points nor carve. `rank` is the frames' (RANK_USER for the user's own images
    and renders). `anchors`: the cameras of the user's own views (the first image): a lower-rank
    point whose splat would cover any of such a view's pixels in front of the user's points there
    is kept out and counted as a conflict, and after the update every lower-rank point standing
    there (refined or merged into place) is removed (`swept`). Returns the new memory, the aligned depth (for
    a later full rebuild) and statistics (with `merges`: which ids the budget merged into which).
    """
    count = len(cameras)
    shape = (count, cameras.height, cameras.width)
    if frames.shape != shape + (3,) or depth.shape != shape:
        raise ValueError(f"frames {frames.shape} and depth {depth.shape} must match the cameras {shape}")
    dynamic = np.zeros(shape, dtype=bool) if dynamic is None else np.asarray(dynamic, dtype=bool)
    if dynamic.shape != shape:
        raise ValueError(f"dynamic mask must be {list(shape)}, got {list(dynamic.shape)}")
    stats = UpdateStats(points_before=len(memory), excluded_pixels=int(dynamic.sum()))
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    weight = np.ones(shape, np.float32) if confidence is None else np.asarray(confidence, dtype=np.float32)
    anchor_depth = pinned_depth(memory, anchors, rank, settings.render_device)
    pinned = rank >= RANK_USER  # the user's own images: every pixel kept as it is (see pin_points)

    # A few frames at a time: back-projected points of a whole clip at full resolution would
    # not fit in memory (about 100 bytes a pixel in flight), and later frames then align to a
    # memory that already holds the earlier ones.
    aligned = np.empty_like(depth)
    indices = np.asarray(frame_indices, dtype=np.int64)
    for start in range(0, count, settings.chunk_frames):
        part = slice(start, min(start + settings.chunk_frames, count))
        memory = _update_chunk(memory, frames[part], depth[part], aligned[part], cameras[part], indices[part],
                               ~dynamic[part], weight[part], None if confidence is None else confidence[part],
                               rank=rank, pinned=pinned, anchors=anchors, anchor_depth=anchor_depth,
                               settings=settings, stats=stats)
    if settings.max_points is not None and len(memory) > settings.max_points:
        memory, stats.merges = coarsen_to_budget(memory, settings.max_points)
        stats.points_merged = len(stats.merges)
    # Refinement and merging move points too: whatever now stands where a pinned view saw empty
    # space (its splat anywhere over that view's pixels) goes.
    memory, stats.swept = sweep_pinned_free_space(memory, anchors, anchor_depth, rank)
    stats.points_after = len(memory)
    return memory, aligned, stats


def _update_chunk(memory: SpatialMemory, frames, depth, aligned, cams: Cameras, indices, static, weight, confidence, *,
                  rank: int, pinned: bool, anchors, anchor_depth, settings: UpdateSettings,
                  stats: UpdateStats) -> SpatialMemory:
    """A few frames into the memory: aligned (written into `aligned`), weighed against what the
    memory shows (or pinned, for the user's own images), carved, then the new pixels fused."""
    view = memory_view(memory, cams, settings) if len(memory) and (settings.align or not pinned) else None
    if not pinned:  # a generated frame's pixel-to-pixel jitter would scatter one surface over several cells
        depth, _ = smooth_noisy_depth(depth, memory.voxel_size, static)
    aligned[:], fits = align_to_memory(memory, depth, cams, static, settings, view)
    stats.alignments += fits
    if pinned:
        new = static & (aligned > 0)
        memory, replaced = _replaced_by_pinned(memory, aligned, cams, new, rank, settings)
        stats.replaced += replaced
    else:
        verdicts = weigh_observations(memory, frames, aligned, cams, indices, static, weight, rank=rank,
                                      settings=settings, rendered=view, noise=[fit.noise for fit in fits])
        memory = verdicts.memory
        stats.reobserved_pixels += int(verdicts.reobserved.sum())
        stats.conflict_pixels += int(verdicts.conflict.sum())
        new = static & (aligned > 0) & ~verdicts.reobserved & ~verdicts.conflict
    if len(memory):
        protected = (memory.rank > rank) | (memory.conf >= settings.protect_conf)
        memory, carved = carve(memory, aligned, cams, margin_abs=settings.carve_margin_abs,
                               margin_rel=settings.carve_margin_rel, valid=new, protected=protected)
        stats.carved += carved
    before = len(memory)
    points = points_from_depth(aligned, frames, cams, exclude=~new, conf=confidence, frames=indices)
    if anchor_depth is not None and len(points):
        seen_empty = in_pinned_free_space(points.xyz, _new_point_sizes(points, memory.voxel_size, settings),
                                          anchors, anchor_depth)
        points.conf[seen_empty] = 0.0  # fusion skips points of no confidence
        stats.conflict_pixels += int(seen_empty.sum())
    stats.added_pixels += len(points)
    if pinned:
        memory = pin_points(memory, points, scale_aware=settings.scale_aware)
    else:
        memory = fuse_points(memory, points, rank=rank, scale_aware=settings.scale_aware)
    stats.points_added += len(memory) - before
    return memory


def rebuild_with_known_poses(frames: np.ndarray, cameras: Cameras, frame_indices, estimator, *,
                             dynamic: np.ndarray | None = None, voxel_size: float = 0.01
                             ) -> tuple[SpatialMemory, np.ndarray, np.ndarray]:
    """The paper's memory build: one multi-view reconstruction of every given frame (the first
    image and the video so far, a few frames a second) by a depth model that takes the known
    intrinsics and poses (MapAnything), back-projected with those cameras, dynamic pixels left
    out, then averaged per voxel of `voxel_size` (the mean of the points in each voxel, as
    Open3D's voxel_down_sample). Returns the memory, the depth and its confidence."""
    if not getattr(estimator, "takes_poses", False):
        raise ValueError(f"the posed rebuild needs a depth model that takes known poses (map-anything); "
                         f"{getattr(estimator, 'name', type(estimator).__name__)} does not")
    result = estimator.estimate(frames, cameras.intrinsics, w2c=cameras.w2c)
    points = points_from_depth(result.depth, frames, cameras, exclude=dynamic, frames=frame_indices)
    side = torch.zeros(len(points), dtype=torch.uint8)  # one cell per voxel, whatever the surface's side
    memory = fuse(SpatialMemory.empty(voxel_size), points.xyz, points.rgb, None, frame=points.frame, side=side)
    return memory, result.depth, result.confidence


def coverage(memory: SpatialMemory, cameras: Cameras, *, device: str | None = None) -> np.ndarray:
    """Per-frame share of pixels the memory already knows, [F] in [0, 1]."""
    if len(memory) == 0:
        return np.zeros(len(cameras))
    result = render_memory(memory, cameras, depth_only=True, device=device)
    return result.mask.float().mean(dim=(1, 2)).cpu().numpy()


__all__ = ["PinnedViews", "UpdateSettings", "UpdateStats", "align_to_memory", "coverage", "in_pinned_free_space",
           "pinned_depth",
           "rebuild_with_known_poses", "splat_reach", "sweep_pinned_free_space", "update_memory"]
