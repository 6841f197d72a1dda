"""The per-clip memory update: align new depth to the memory, keep dynamic pixels out,
carve what the new views see through, fuse the rest.

This step needs both the renderer (the memory's depth along the new cameras, for
alignment) and the memory package (carving, fusion), so it sits above both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .alignment import DepthAlignment, fit_scale_shift
from .cameras import Cameras
from .memory import SpatialMemory, apply_budget, carve, fuse_points, points_from_depth
from .render import render_memory


@dataclass(frozen=True)
class UpdateSettings:
    carve_margin_abs: float = 0.05  # metres
    carve_margin_rel: float = 0.05  # share of depth: generated depth is noisier far away
    align: bool = True
    align_shift: bool = False  # metric depth models need a scale; a shift is for affine-invariant ones
    max_points: int | None = 4_000_000
    render_device: str | None = None
    chunk_frames: int = 4  # frames back-projected and fused together


@dataclass
class UpdateStats:
    points_before: int = 0
    points_after: int = 0
    carved: int = 0
    added_pixels: int = 0
    excluded_pixels: int = 0
    alignments: list[DepthAlignment] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "points_before": self.points_before,
            "points_after": self.points_after,
            "carved": self.carved,
            "added_pixels": self.added_pixels,
            "excluded_pixels": self.excluded_pixels,
            "alignment": [
                {"scale": a.scale, "shift": a.shift, "inliers": a.inliers, "fitted": a.fitted} for a in self.alignments
            ],
        }


def align_to_memory(memory: SpatialMemory, depth: np.ndarray, cameras: Cameras, static: np.ndarray,
                    settings: UpdateSettings) -> tuple[np.ndarray, list[DepthAlignment]]:
    """Fit each depth map [F,H,W] to the memory's rendered depth on static covered pixels."""
    if len(memory) == 0 or not settings.align:
        return depth.astype(np.float32), [DepthAlignment(1.0, 0.0, 0, 0, False)] * len(depth)
    # Only the pixels a memory point projects into (no splat footprints): splats stand in front
    # of farther surfaces at silhouettes and grazing angles, which would bias the fit.
    rendered = render_memory(memory, cameras, depth_only=True, point_size=0.0, device=settings.render_device)
    reference = rendered.depth.cpu().numpy()
    covered = rendered.mask.cpu().numpy()
    aligned, fits = np.empty_like(depth, dtype=np.float32), []
    for f in range(len(depth)):
        fit = fit_scale_shift(depth[f], np.where(covered[f], reference[f], 0.0), covered[f] & static[f],
                              with_shift=settings.align_shift)
        aligned[f] = fit.apply(depth[f])
        fits.append(fit)
    return aligned, fits


def update_memory(
    memory: SpatialMemory,
    frames: np.ndarray,
    depth: np.ndarray,
    cameras: Cameras,
    frame_indices,
    *,
    dynamic: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    settings: UpdateSettings = UpdateSettings(),
) -> tuple[SpatialMemory, np.ndarray, UpdateStats]:
    """Update the memory with frames [F,H,W,3] uint8 seen by `cameras` with depth [F,H,W].

    `dynamic` [F,H,W] marks pixels that must never enter the memory (people, cars); they
    neither add points nor carve. Returns the new memory, the aligned depth (for a later full
    rebuild) and statistics.
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

    # A few frames at a time: back-projected points of a whole clip at full resolution would
    # not fit in memory (about 100 bytes a pixel in flight), and later frames then align to a
    # memory that already holds the earlier ones.
    aligned = np.empty_like(depth)
    indices = np.asarray(frame_indices, dtype=np.int64)
    for start in range(0, count, settings.chunk_frames):
        part = slice(start, min(start + settings.chunk_frames, count))
        cams = cameras[part]
        aligned[part], fits = align_to_memory(memory, depth[part], cams, ~dynamic[part], settings)
        stats.alignments += fits
        static_valid = (aligned[part] > 0) & ~dynamic[part]
        if len(memory):
            memory, carved = carve(memory, aligned[part], cams, margin_abs=settings.carve_margin_abs,
                                   margin_rel=settings.carve_margin_rel, valid=static_valid)
            stats.carved += carved
        points = points_from_depth(aligned[part], frames[part], cams, exclude=dynamic[part],
                                   conf=None if confidence is None else confidence[part], frames=indices[part])
        stats.added_pixels += len(points)
        memory = fuse_points(memory, points)
    if settings.max_points is not None and len(memory) > settings.max_points:
        memory = apply_budget(memory, max_points=settings.max_points)
    stats.points_after = len(memory)
    return memory, aligned, stats


def coverage(memory: SpatialMemory, cameras: Cameras, *, device: str | None = None) -> np.ndarray:
    """Per-frame share of pixels the memory already knows, [F] in [0, 1]."""
    if len(memory) == 0:
        return np.zeros(len(cameras))
    result = render_memory(memory, cameras, depth_only=True, device=device)
    return result.mask.float().mean(dim=(1, 2)).cpu().numpy()


__all__ = ["UpdateSettings", "UpdateStats", "align_to_memory", "coverage", "update_memory"]
