"""Back-projection of depth maps and voxel-hash fusion of new points into the memory.

Fusion key = (voxel, side): new points in a voxel (and on a side) already held by a memory
point merge into it with a confidence-weighted mean; the rest become new points with fresh
ids, several new points sharing a voxel merging among themselves first. The side bin (the
world axis nearest the surface normal facing the camera) keeps the two faces of a wall
thinner than a voxel from being averaged into one smeared point.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from spatia.cameras import Cameras

from .cloud import SpatialMemory
from .errors import MemoryFormatError
from .voxels import SIDE_AXES, VoxelIndex, argsort, group_by_key, point_keys, run_starts, side_bins


@dataclass(frozen=True)
class DepthPoints:
    """Points back-projected from depth maps, one row per valid pixel, frames in order.

    xyz float32 [M,3] world; rgb uint8 [M,3]; conf float32 [M]; side uint8 [M] the side bin
    of the surface normal (estimated from the depth map) turned towards the camera;
    frame int32 [M]; camera_centres float32 [F,3] and frame_counts int64 [F] (points per map)
    give `view_dirs`, computed on first use.
    """

    xyz: torch.Tensor
    rgb: torch.Tensor
    conf: torch.Tensor
    side: torch.Tensor
    frame: torch.Tensor
    camera_centres: torch.Tensor
    frame_counts: torch.Tensor

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


def _colours_uint8(rgb: torch.Tensor) -> torch.Tensor:
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
    magnitude = lambda t: torch.nan_to_num(t.abs(), nan=float("inf"))  # noqa: E731
    later.copy_(torch.where(magnitude(diff) < magnitude(later), diff, later))
    return step


def _facing_normals(depth, ray_x, ray_y, fx: float, fy: float, rotation, ray) -> torch.Tensor:
    """World-space surface normals [H,W,3] (unnormalised) turned towards the camera.

    With camera point P = d * (a, b, 1), a = (u - cx) / fx, b = (v - cy) / fy, the cross
    product of its pixel steps is proportional to (-gx, -gy, a*gx + b*gy + d) with
    gx = fx * dd/du, gy = fy * dd/dv; its dot product with the ray is d > 0, so its negation
    always faces the camera. Pixels without a finite step get the reversed ray.
    """
    gx = fx * _smaller_step(depth, 1)
    gy = fy * _smaller_step(depth, 0)
    nz = -(ray_x[None, :] * gx + ray_y[:, None] * gy + depth)
    normals = gx[..., None] * rotation[:, 0] + gy[..., None] * rotation[:, 1] + nz[..., None] * rotation[:, 2]
    missing = ~torch.isfinite(gx + gy)
    if missing.any():
        normals = torch.where(missing[..., None], -ray, normals)
    return normals


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
    rgb = rgb if isinstance(rgb, torch.Tensor) else torch.from_numpy(np.asarray(rgb))
    if tuple(rgb.shape) != (count, height, width, 3):
        raise MemoryFormatError(f"rgb must have shape [{count}, {height}, {width}, 3], got {list(rgb.shape)}")
    rgb = _colours_uint8(rgb.to(device))
    exclude = _frames_tensor(exclude, "exclude", (count, height, width), torch.bool, device)
    conf = _frames_tensor(conf, "conf", (count, height, width), torch.float32, device)
    frames = torch.arange(count) if frames is None else torch.as_tensor(np.asarray(frames))
    if tuple(frames.shape) != (count,):
        raise MemoryFormatError(f"frames must have shape [{count}], got {list(frames.shape)}")

    u = torch.arange(width, dtype=torch.float32, device=device) + 0.5
    v = torch.arange(height, dtype=torch.float32, device=device) + 0.5
    c2w = torch.as_tensor(cameras.c2w, dtype=torch.float32, device=device)
    parts: list[tuple[torch.Tensor, ...]] = []
    for f in range(count):
        d = depth[f]
        valid = (d > 0) & (d < float("inf"))
        if exclude is not None:
            valid &= ~exclude[f]
        if conf is not None:
            valid &= conf[f] > 0
        fx, fy, cx, cy = (float(k) for k in cameras.intrinsics[f])
        ray_x, ray_y = (u - cx) / fx, (v - cy) / fy
        rotation, centre = c2w[f, :3, :3], c2w[f, :3, 3]
        # World direction of each pixel's ray scaled to unit camera z: R @ (a, b, 1).
        ray = (ray_x[:, None] * rotation[:, 0])[None] + (ray_y[:, None] * rotation[:, 1] + rotation[:, 2])[:, None]
        d = torch.where(valid, d, torch.full_like(d, float("nan")))
        xyz = torch.addcmul(centre, ray, d[..., None]).reshape(-1, 3)
        side = side_bins(_facing_normals(d, ray_x, ray_y, fx, fy, rotation, ray).reshape(-1, 3))
        colours = rgb[f].reshape(-1, 3)
        weights = conf[f].reshape(-1) if conf is not None else torch.ones(height * width, device=device)
        if not bool(valid.all()):
            keep = valid.reshape(-1).nonzero()[:, 0]
            xyz, side, colours, weights = xyz[keep], side[keep], colours[keep], weights[keep]
        frame = torch.full((len(xyz),), int(frames[f]), dtype=torch.int32, device=device)
        parts.append((xyz, colours, weights, side, frame))
    if len(parts) == 1:
        columns = list(parts[0])
    else:
        columns = [torch.cat(column) for column in zip(*parts)]
    return DepthPoints(
        *columns,
        camera_centres=c2w[:, :3, 3].clone(),
        frame_counts=torch.tensor([len(p[0]) for p in parts], dtype=torch.int64),
    )


def _point_sides(view_dirs: torch.Tensor, normals: torch.Tensor | None) -> torch.Tensor:
    """Side bin of each point: its normal turned to face the camera, or the reversed view ray without one."""
    facing = -view_dirs
    if normals is not None:
        usable = torch.isfinite(normals).all(dim=1) & (normals.abs().sum(dim=1) > 0)
        facing = torch.where(usable[:, None], normals, facing)
        facing = torch.where(((facing * view_dirs).sum(1) > 0)[:, None], -facing, facing)
    return side_bins(facing)


def _payload(xyz: torch.Tensor, rgb: torch.Tensor, conf: torch.Tensor | None) -> torch.Tensor:
    """Per point [M,7]: conf*xyz, conf*rgb, conf; conf None means all ones."""
    payload = torch.empty(len(xyz), 7, dtype=torch.float32, device=xyz.device)
    payload[:, :3] = xyz
    payload[:, 3:6] = rgb
    if conf is None:
        payload[:, 6] = 1.0
    else:
        payload[:, :6] *= conf[:, None]
        payload[:, 6] = conf
    return payload


def _sum_into(count: int, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.zeros(count, values.shape[1], dtype=values.dtype, device=values.device).index_add_(0, index, values)


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
    voxel_size: float | None = None,
) -> SpatialMemory:
    """Fuse new points (xyz [M,3], rgb [M,3] uint8 or float 0..1, conf [M], default 1) into the memory.

    `frame`: the frame index, an int or one per point. The side bin of each point comes from
    `side` [M] (0..5) if given, else from `normals` [M,3] turned against `view_dirs` [M,3]
    (camera-to-point directions; rows of non-finite normals use the reversed view direction),
    else from the reversed view direction alone. Points with conf <= 0 are ignored. Merged
    points keep their id and first_frame; conf adds up, position and colour become the
    confidence-weighted mean, last_frame the latest frame. `voxel_size` (default the
    memory's) becomes the result's voxel size.
    """
    size = memory.voxel_size if voxel_size is None else float(voxel_size)
    device = memory.device
    xyz = xyz if isinstance(xyz, torch.Tensor) else torch.from_numpy(np.asarray(xyz))
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise MemoryFormatError(f"xyz must have shape [M, 3], got {list(xyz.shape)}")
    count = len(xyz)
    xyz = xyz.to(device=device, dtype=torch.float32)
    rgb = _colours_uint8(_point_tensor(rgb, "rgb", count, (3,), device))
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
    if frame.ndim == 1 and len(frame) != count or frame.ndim > 1:
        raise MemoryFormatError(f"frame must be an int or have shape [{count}], got {list(frame.shape)}")
    if frame.ndim == 1 and count:
        low, high = torch.aminmax(frame)
        if low == high:
            frame = low
    if conf is not None:
        conf = _point_tensor(conf, "conf", count, (), device).to(torch.float32)
        keep = conf > 0  # also drops NaN
        if not bool(keep.all()):
            xyz, rgb, conf, side = xyz[keep], rgb[keep], conf[keep], side[keep]
            frame = frame[keep] if frame.ndim else frame
        if not _all_finite(conf):
            raise MemoryFormatError("conf contains infinite values")
        if bool((conf == 1).all()):
            conf = None
    if len(xyz) == 0:
        return memory if size == memory.voxel_size else memory.replace(voxel_size=size)

    keys = point_keys(xyz, side, size)
    payload = _payload(xyz, rgb, conf)
    # Neighbouring pixels mostly share a voxel: summing runs of equal consecutive keys first
    # (a sequential pass) leaves several times fewer rows for the sort and the scattered adds.
    runs = run_starts(keys, frame if frame.ndim else None)
    run_keys = keys[runs]
    run_sums = _sum_into(len(run_keys), torch.cumsum(runs, 0) - 1, payload)
    groups = group_by_key(run_keys)
    sums = _sum_into(len(groups.keys), groups.inverse, run_sums)
    unique = len(groups.keys)
    if frame.ndim:
        run_frames = frame[runs]
        fill = torch.zeros(unique, dtype=torch.int32, device=device)
        first = fill.scatter_reduce(0, groups.inverse, run_frames, "amin", include_self=False)
        last = fill.scatter_reduce(0, groups.inverse, run_frames, "amax", include_self=False)
    else:
        first = last = frame.expand(unique)

    index = memory.voxel_index(size)
    target = index.lookup(groups.keys)
    hit = target >= 0
    fresh = ~hit
    old = target[hit]
    held = memory.conf[old]
    total = held + sums[hit, 6]
    merged_xyz = (memory.xyz[old] * held[:, None] + sums[hit, :3]) / total[:, None]
    merged_rgb = _to_rgb((memory.rgb[old].to(torch.float32) * held[:, None] + sums[hit, 3:6]) / total[:, None])

    new_sums = sums[fresh]
    new_weight = new_sums[:, 6:7]
    added = len(new_sums)
    new_ids = torch.arange(memory.next_id, memory.next_id + added, dtype=torch.int64, device=device)
    out = SpatialMemory._unchecked(
        xyz=torch.cat([memory.xyz, new_sums[:, :3] / new_weight]),
        rgb=torch.cat([memory.rgb, _to_rgb(new_sums[:, 3:6] / new_weight)]),
        conf=torch.cat([memory.conf, new_weight[:, 0]]),
        point_id=torch.cat([memory.point_id, new_ids]),
        first_frame=torch.cat([memory.first_frame, first[fresh]]),
        last_frame=torch.cat([memory.last_frame, last[fresh]]),
        side=torch.cat([memory.side, (groups.keys[fresh] & 7).to(torch.uint8)]),
        voxel_size=size,
        next_id=memory.next_id + added,
        _index=index.insert(groups.keys[fresh], len(memory)),
    )
    out.xyz[old] = merged_xyz
    out.rgb[old] = merged_rgb
    out.conf[old] = total
    out.last_frame[old] = torch.maximum(memory.last_frame[old], last[hit])
    return out


def fuse_points(memory: SpatialMemory, points: DepthPoints, *, voxel_size: float | None = None) -> SpatialMemory:
    """fuse() with the output of points_from_depth()."""
    return fuse(memory, points.xyz, points.rgb, points.conf, frame=points.frame, side=points.side, voxel_size=voxel_size)


def coarsen(memory: SpatialMemory, voxel_size: float) -> SpatialMemory:
    """Re-fuse the memory's own points at a (larger) voxel size.

    Each (voxel, side) group becomes one point: confidence-weighted mean position and colour,
    summed conf, earliest first_frame, latest last_frame, and the id of its most confident
    point (the smallest id among equals), so surviving ids stay stable.
    """
    if len(memory) == 0:
        return memory.replace(voxel_size=voxel_size)
    keys = point_keys(memory.xyz, memory.side, voxel_size)
    order = argsort(memory.point_id, stable=True)
    order = order[argsort(-memory.conf[order], stable=True)]
    order = order[argsort(keys[order], stable=True)]
    groups = group_by_key(keys, order=order)
    sums = _sum_into(len(groups.keys), groups.inverse, _payload(memory.xyz, memory.rgb, memory.conf))
    # Groups of zero total confidence fall back to an unweighted representative.
    weight = sums[:, 6:7]
    empty = weight[:, 0] == 0
    fill = torch.zeros(len(groups.keys), dtype=torch.int32, device=memory.device)
    result = SpatialMemory(
        xyz=torch.where(empty[:, None], memory.xyz[groups.first], sums[:, :3] / weight),
        rgb=torch.where(empty[:, None], memory.rgb[groups.first], _to_rgb(sums[:, 3:6] / weight)),
        conf=weight[:, 0],
        point_id=memory.point_id[groups.first],
        first_frame=fill.scatter_reduce(0, groups.inverse, memory.first_frame, "amin", include_self=False),
        last_frame=fill.scatter_reduce(0, groups.inverse, memory.last_frame, "amax", include_self=False),
        side=memory.side[groups.first],
        voxel_size=voxel_size,
        next_id=memory.next_id,
        _index=VoxelIndex(float(voxel_size), groups.keys, torch.arange(len(groups.keys), device=memory.device)),
    )
    return result
