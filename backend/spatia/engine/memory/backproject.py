"""Back-projection of depth maps to world points with colours, confidences and side bins."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from spatia.cameras import Cameras

from .errors import MemoryFormatError
from .voxels import side_bins


@dataclass(frozen=True)
class DepthPoints:
    """Points back-projected from depth maps, one row per valid pixel, frames in order.

    xyz float32 [M,3] world; rgb uint8 [M,3]; conf float32 [M]; side uint8 [M] the side bin
    of the surface normal (estimated from the depth map) turned towards the camera;
    frame int32 [M]; camera_centres float32 [F,3] and frame_counts int64 [F] (points per map)
    give `view_dirs`, computed on first use. footprint float32 [M]: the width in metres of the
    pixel the point came from, at its depth (depth / sqrt(fx fy)).
    """

    xyz: torch.Tensor
    rgb: torch.Tensor
    conf: torch.Tensor
    side: torch.Tensor
    frame: torch.Tensor
    camera_centres: torch.Tensor
    frame_counts: torch.Tensor
    footprint: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.xyz)

    @cached_property
    def view_dirs(self) -> torch.Tensor:
        """Unit vectors [M,3] from each point's camera centre to the point."""
        centres = torch.repeat_interleave(self.camera_centres, self.frame_counts.to(self.xyz.device), dim=0)
        rays = self.xyz - centres
        return rays / rays.norm(dim=1, keepdim=True)


def _frames_tensor(value, name: str, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor | None:
    if value is None:
        return None
    tensor = torch.as_tensor(value if isinstance(value, torch.Tensor) else np.asarray(value), device=device)
    if tuple(tensor.shape) != shape:
        raise MemoryFormatError(f"{name} must have shape {list(shape)}, got {list(tensor.shape)}")
    return tensor.to(dtype)


def colours_uint8(rgb: torch.Tensor) -> torch.Tensor:
    if rgb.dtype == torch.uint8:
        return rgb
    if rgb.is_floating_point():
        return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)
    if rgb.dtype != torch.bool and (rgb.numel() == 0 or (int(rgb.min()) >= 0 and int(rgb.max()) <= 255)):
        return rgb.to(torch.uint8)
    raise MemoryFormatError(f"rgb must be integers in 0..255 or floats in 0..1, got {rgb.dtype}")


def _smaller_step(depth: torch.Tensor, dim: int) -> torch.Tensor:
    """Per-pixel depth step along `dim`: the forward or backward difference, whichever is smaller.

    Taking the smaller one keeps a pixel on a silhouette from borrowing the background's
    depth jump; holes (NaN) lose to any finite neighbour.
    """
    diff = torch.diff(depth, dim=dim)
    if diff.shape[dim] == 0:
        return torch.zeros_like(depth)
    size = depth.shape[dim]
    step = torch.empty_like(depth)
    step.narrow(dim, 0, size - 1).copy_(diff)
    step.narrow(dim, size - 1, 1).copy_(diff.narrow(dim, size - 2, 1))
    later = step.narrow(dim, 1, size - 1)  # forward difference of pixels 1..size-1 (last one: backward)
    later.copy_(torch.where(_magnitude(diff) < _magnitude(later), diff, later))
    return step


def _magnitude(step: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(step.abs(), nan=float("inf"))


def _facing_normals(depth, ray_x, ray_y, fx: float, fy: float, rotation, ray, keep=None) -> torch.Tensor:
    """World-space surface normals (unnormalised) turned towards the camera: [H*W,3], or [K,3] for
    the flat pixel indices `keep` (the steps need the whole map; the rest only those pixels).

    With camera point P = d * (a, b, 1), a = (u - cx) / fx, b = (v - cy) / fy, the cross
    product of its pixel steps is proportional to (-gx, -gy, a*gx + b*gy + d) with
    gx = fx * dd/du, gy = fy * dd/dv; its dot product with the ray is d > 0, so its negation
    always faces the camera. Pixels without a finite step get the reversed ray.
    """
    gx = fx * _smaller_step(depth, 1)
    gy = fy * _smaller_step(depth, 0)
    nz = -(ray_x[None, :] * gx + ray_y[:, None] * gy + depth)
    gx, gy, nz = (_pixels(g, keep) for g in (gx, gy, nz))
    normals = gx[:, None] * rotation[:, 0] + gy[:, None] * rotation[:, 1] + nz[:, None] * rotation[:, 2]
    missing = ~torch.isfinite(gx + gy)
    if missing.any():
        normals = torch.where(missing[:, None], -ray, normals)
    return normals


def _pixels(image: torch.Tensor, keep) -> torch.Tensor:
    """An [H,W,...] map's pixels, flat: all of them, or the flat indices `keep`."""
    flat = image.reshape(image.shape[0] * image.shape[1], *image.shape[2:])
    return flat if keep is None else flat.index_select(0, keep)


def points_from_depth(
    depth,
    rgb,
    cameras: Cameras,
    exclude=None,
    conf=None,
    *,
    frames=None,
    device: torch.device | str | None = None,
) -> DepthPoints:
    """Back-project every valid pixel of depth [F,H,W] (z along the optical axis) to world points.

    A pixel is valid when its depth is finite and > 0, `exclude` [F,H,W] (bool, True = never
    enters memory, e.g. dynamic objects) is False and `conf` [F,H,W] (default 1) is > 0.
    Points sit at pixel centres, as `Cameras.unproject`. rgb [F,H,W,3] is uint8 or float in
    [0,1]. `frames` [F] gives the frame index stored for each map (default 0..F-1).
    """
    if device is None:
        device = depth.device if isinstance(depth, torch.Tensor) else "cpu"
    count, height, width = len(cameras), cameras.height, cameras.width
    depth = _frames_tensor(depth, "depth", (count, height, width), torch.float32, device)
    if not isinstance(rgb, torch.Tensor):
        rgb = np.asarray(rgb)
        rgb = torch.from_numpy(rgb if rgb.flags.writeable else rgb.copy())  # e.g. frames read from PNG
    if tuple(rgb.shape) != (count, height, width, 3):
        raise MemoryFormatError(f"rgb must have shape [{count}, {height}, {width}, 3], got {list(rgb.shape)}")
    rgb = colours_uint8(rgb.to(device))
    exclude = _frames_tensor(exclude, "exclude", (count, height, width), torch.bool, device)
    conf = _frames_tensor(conf, "conf", (count, height, width), torch.float32, device)
    frames = torch.arange(count) if frames is None else torch.as_tensor(frames).reshape(-1).cpu()
    if len(frames) != count:
        raise MemoryFormatError(f"frames must hold {count} frame indices, got {len(frames)}")

    u = torch.arange(width, dtype=torch.float32, device=device) + 0.5
    v = torch.arange(height, dtype=torch.float32, device=device) + 0.5
    c2w = torch.as_tensor(cameras.c2w, dtype=torch.float32, device=device)
    parts = []
    for f in range(count):
        valid = (depth[f] > 0) & (depth[f] < float("inf"))
        if exclude is not None:
            valid &= ~exclude[f]
        if conf is not None:
            valid &= conf[f] > 0
        weights = conf[f].reshape(-1) if conf is not None else torch.ones(height * width, device=device)
        keep = None if bool(valid.all()) else valid.reshape(-1).nonzero()[:, 0]
        xyz, side = _frame_points(depth[f], valid, cameras.intrinsics[f], c2w[f], u, v, keep)
        fx, fy = (float(k) for k in cameras.intrinsics[f, :2])
        footprint = depth[f].reshape(-1) / float(np.sqrt(fx * fy))
        columns = [rgb[f].reshape(-1, 3), weights, footprint]
        if keep is not None:
            columns = [column.index_select(0, keep) for column in columns]
        columns = [xyz, side, *columns]
        frame = torch.full((len(columns[0]),), int(frames[f]), dtype=torch.int32, device=device)
        parts.append((*columns, frame))
    xyz, side, colours, weights, footprint, frame = parts[0] if len(parts) == 1 else [torch.cat(c) for c in zip(*parts)]
    return DepthPoints(
        xyz, colours, weights, side, frame,
        camera_centres=c2w[:, :3, 3].clone(),
        frame_counts=torch.tensor([len(p[0]) for p in parts], dtype=torch.int64),
        footprint=footprint,
    )


def _frame_points(depth, valid, intrinsics, c2w, u, v, keep=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One depth map [H,W] -> world points [H*W,3] (NaN where invalid) and side bins [H*W], or
    [K,3] and [K] of the flat pixel indices `keep` (a keyframe's new pixels may be a few)."""
    fx, fy, cx, cy = (float(k) for k in intrinsics)
    ray_x, ray_y = (u - cx) / fx, (v - cy) / fy
    rotation, centre = c2w[:3, :3], c2w[:3, 3]
    # World direction of each pixel's ray scaled to unit camera z: R @ (a, b, 1).
    ray = (ray_x[:, None] * rotation[:, 0])[None] + (ray_y[:, None] * rotation[:, 1] + rotation[:, 2])[:, None]
    depth = torch.where(valid, depth, torch.full_like(depth, float("nan")))  # holes must not shape normals
    ray_kept = _pixels(ray, keep)
    xyz = torch.addcmul(centre, ray_kept, _pixels(depth, keep)[:, None])
    side = side_bins(_facing_normals(depth, ray_x, ray_y, fx, fy, rotation, ray_kept, keep))
    return xyz, side
