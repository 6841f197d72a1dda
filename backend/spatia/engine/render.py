"""Point-cloud splatting renderer: a z-buffer of square splats, in batched torch ops.

Each point is a square splat of constant depth centred on the pixel it projects into:
OpenCV pinhole, continuous pixel coordinates, a point at (u, v) lands in pixel
(floor(u), floor(v)). The splat's half-width in pixels is

    k = ceil(radius_px - 1/2),  radius_px = f * stretch * point_size / (2 z),  f = max(fx, fy),

clamped to `max_radius_px`: k = 0 (the centre pixel alone) while neighbouring points of a
surface sampled every `point_size` metres land at most one pixel apart. `stretch` =
sqrt(1 + (dx/fx)^2 + (dy/fy)^2) at the pixel, (dx, dy) its offset from the principal point,
is the most a surface element can be stretched by the projection there (the largest
singular value of the projection's Jacobian is f |p| / z^2), so the splats of such a surface
tile the image without pinholes at any viewing angle. `point_size` may be one per point (a
memory whose cells grow with distance), and preferred points (the user's) keep their pixels
against others at about the same depth.

How: a frame projects only the runs of CULL_BLOCK consecutive points whose bounding box
reaches its view (a memory holds its points in the order it saw them, so a run is a patch of
space and most runs lie wholly outside any one frame). Every point is written to its centre
pixel with one scatter-min of a packed int64
key (float32 depth bits << 32 | point index: nearest wins, ties go to the lower index,
so the result is deterministic on any device). The footprints then grow in image space:
pass t (t = 1..k_max) takes a 3x3 min filter of the pixels whose winner reaches radius
t (depth below f * stretch * point_size / (2t - 1)), so a splat grows one ring per pass, only
into empty pixels or over farther points. A far point whose ring is cut by a nearer
splat does not grow around it, a negligible difference from exact square splats. A pixel can
only change in a pass if a neighbour changed in the one before, so once few pixels change the
passes visit only their neighbourhoods, and they stop when one changes nothing. Preferred
points are scattered apart from the others (see _centres_by_priority), each group from a
contiguous block of the scene.

The same code runs on CPU and CUDA; outputs stay on the device they were rendered on.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
import torch

from spatia.cameras import Cameras
from spatia.engine.poses import exact_matches

# A key's high 32-bit word is the depth's float32 bits, its low word the point's index: the depth
# and the index of a whole canvas are then views of it (_key_depths, _key_indices), not copies.
INDEX_BITS = 32
INDEX_MASK = (1 << INDEX_BITS) - 1
MAX_POINTS = (1 << 31) - 1  # index N (one past the last point) marks an empty pixel; indices stay int32
if sys.byteorder != "little":  # the views read the low word first
    raise ImportError("spatia's renderer needs a little-endian machine")
OCCLUSION_MARGIN_VOXELS = 2.0  # a splat covers a neighbour's pixel only if nearer by this many voxels
OCCLUSION_MARGIN_REL = 0.1  # ... plus this share of the depth (a surface seen at a grazing angle keeps its own pixels)
INF_BITS = 0x7F800000  # float32 +inf: every finite depth packs to a smaller key
# Projected points (or pixels) per batch of frames: CPU batches stay small enough for the
# allocator to reuse memory; a GPU wants large batches to fill the device.
CHUNK_ELEMENTS = {"cpu": 1_000_000, "cuda": 64_000_000}


class RenderError(ValueError):
    """The renderer got malformed input; the message names the argument and the problem."""


@dataclass
class RenderResult:
    """Rendered frames, torch tensors on the render device.

    depth: [F,H,W] float32, z along the optical axis of the winning point; +inf where empty.
    mask: [F,H,W] bool, True where some point covers the pixel.
    rgb: [F,H,W,3] uint8 colour of the winning point, 0 where empty; None in depth-only mode.
    index: [F,H,W] int64 index of the winning point, -1 where empty; None unless asked for.
    centre_index, centre_depth: [F,H,W] the point whose centre won each pixel (-1 / +inf where
    none), before splats grow: the same as a render with point_size 0; None unless asked for.
    """

    depth: torch.Tensor
    mask: torch.Tensor
    rgb: torch.Tensor | None = None
    index: torch.Tensor | None = None
    centre_index: torch.Tensor | None = None
    centre_depth: torch.Tensor | None = None


def as_points_tensor(xyz, device: torch.device) -> torch.Tensor:
    """[N,3] points (numpy or torch) -> float32 tensor on `device`; rejects bad shapes and non-finite values."""
    points = torch.as_tensor(xyz, device=device).to(torch.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise RenderError(f"xyz must have shape [N, 3], got {list(points.shape)}")
    if points.shape[0] >= MAX_POINTS:
        raise RenderError(f"at most {MAX_POINTS - 1} points can be rendered, got {points.shape[0]}")
    if not bool(torch.isfinite(points).all()):
        raise RenderError("xyz contains NaN or infinite coordinates")
    return points


def _packed_colours(rgb, count: int, device: torch.device) -> torch.Tensor:
    """[N,3] uint8 colours -> [N+1] int32, one RGB0 texel per point (a flat gather is much faster
    than gathering rows), plus a black texel at index N for empty pixels."""
    colours = torch.as_tensor(rgb, device=device)
    if colours.dtype != torch.uint8:
        raise RenderError(f"rgb must be uint8, got {colours.dtype}")
    if colours.shape != (count, 3):
        raise RenderError(f"rgb must have shape [{count}, 3] to match xyz, got {list(colours.shape)}")
    texels = torch.zeros((count + 1, 4), dtype=torch.uint8, device=device)
    texels[:count, :3] = colours
    return texels.view(torch.int32).squeeze(1)


def _depth_keys(depth: torch.Tensor) -> torch.Tensor:
    """Positive float32 depths -> int64 keys with index 0 that order like the depths."""
    return depth.to(torch.float32).view(torch.int32).to(torch.int64) << INDEX_BITS


def _projection_matrices(cameras: Cameras, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (fx r0 + cx r2, fy r1 + cy r2, r2) and translations: world -> (u z, v z, z)."""
    proj = cameras.K @ cameras.w2c[:, :3, :4]
    proj_t = torch.as_tensor(proj, dtype=torch.float32, device=device)
    return proj_t[:, :, :3].contiguous(), proj_t[:, :, 3:].contiguous()


CULL_BLOCK = 4096  # consecutive points whose bounding box is tested against a frame's view as one


@dataclass(frozen=True, eq=False)
class _Group:
    """Points scattered together (transposed, [3, n]) and the bounding boxes of each run of
    CULL_BLOCK of them (centres and half-extents [B, 3]): a frame projects only the runs whose
    box reaches its view. A memory's points come in the order they were seen, so a run is a
    patch of one view and most runs lie wholly outside any one frame."""

    points_t: torch.Tensor
    centre: torch.Tensor
    half: torch.Tensor

    @classmethod
    def of(cls, points: torch.Tensor) -> "_Group":
        count = points.shape[0]
        whole = count // CULL_BLOCK * CULL_BLOCK  # the full runs, then the last part-run apart (no padded copy)
        low, high = torch.aminmax(points[:whole].reshape(-1, CULL_BLOCK, 3), dim=1)
        if whole < count:
            tail_low, tail_high = torch.aminmax(points[whole:], dim=0)
            low, high = torch.cat([low, tail_low[None]]), torch.cat([high, tail_high[None]])
        return cls(_transposed(points), (low + high) / 2, (high - low) / 2)

    def visible(self, rotation: torch.Tensor, translation: torch.Tensor, width: int, height: int, pad: int,
                near: float) -> torch.Tensor | None:
        """The indices of the points in runs a frame (projection rows `rotation` [3,3] and
        `translation` [3,1]) may see within `pad` pixels of its image, or None for all of them.
        Each of the view's five half-spaces (in front of `near`, and the four image edges) is
        tested at the box's corner farthest into it, a pixel and half `near` to spare."""
        if len(self.centre) <= 1:
            return None
        r, t = rotation, translation[:, 0]
        margin = pad + 1.0
        normals = torch.stack([r[2], r[0] + margin * r[2], (width + margin) * r[2] - r[0],
                               r[1] + margin * r[2], (height + margin) * r[2] - r[1]])
        offsets = torch.stack([t[2] - near / 2, t[0] + margin * t[2], (width + margin) * t[2] - t[0],
                               t[1] + margin * t[2], (height + margin) * t[2] - t[1]])
        reach = self.centre @ normals.T + self.half @ normals.abs().T + offsets  # [B, 5]
        runs = (reach >= 0).all(dim=1).nonzero().squeeze(1)
        if len(runs) == len(self.centre):
            return None
        count = self.points_t.shape[1]
        index = (runs.unsqueeze(1) * CULL_BLOCK + torch.arange(CULL_BLOCK, device=runs.device)).view(-1)
        return index[index < count] if len(runs) and int(runs[-1]) == len(self.centre) - 1 else index


def _transposed(points: torch.Tensor) -> torch.Tensor:
    """[N,3] -> contiguous [3,N]; on the CPU numpy's transposing copy is about 3x faster than torch's."""
    if points.device.type == "cpu" and not points.requires_grad:
        return torch.from_numpy(np.ascontiguousarray(points.numpy().T))
    return points.t().contiguous()


def _splat_centres(group: _Group, rotation: torch.Tensor, translation: torch.Tensor, canvas: torch.Tensor,
                   width: int, height: int, pad: int, near: float, offset: int = 0) -> torch.Tensor:
    """Scatter-min every point's key into its centre pixel of the padded canvas [C, H+2p, W+2p];
    the points are the scene's from index `offset` on.

    Returns the smallest depth written in each frame, [C] (+inf for a frame that saw nothing).
    """
    chunk, canvas_h, canvas_w = canvas.shape
    nearest = torch.full((chunk,), math.inf, device=canvas.device)
    for f in range(chunk):
        index = group.visible(rotation[f], translation[f], width, height, pad, near)
        points_t = group.points_t if index is None else group.points_t.index_select(1, index)
        # One matmul per frame: a frame's projection does not depend on the frames batched with it.
        uz, vz, z = torch.addmm(translation[f], rotation[f], points_t).unbind(0)
        inv_z = z.reciprocal()
        u = uz.mul_(inv_z)
        v = vz.mul_(inv_z)
        # Centres up to `pad` pixels outside the image still reach into it with their splats.
        inside = z > near
        inside &= u >= -pad
        inside &= u < width + pad
        inside &= v >= -pad
        inside &= v < height + pad
        point = inside.nonzero().squeeze(1)
        if len(point) == 0:
            continue
        z_in = z.index_select(0, point)
        col = u.index_select(0, point).floor_().to(torch.int64).add_(pad)
        pixel = v.index_select(0, point).floor_().to(torch.int64).add_(pad).mul_(canvas_w).add_(col)
        if index is not None:
            point = index.index_select(0, point)
        keys = _depth_keys(z_in).bitwise_or_(point.add_(offset) if offset else point)
        canvas[f].view(-1).scatter_reduce_(0, pixel, keys, "amin", include_self=True)
        nearest[f] = z_in.min()
    return nearest


def _pixels_per_metre_at_unit_depth(cameras: Cameras) -> list[float]:
    """f * stretch per frame (see the module docstring): a splat's radius is this * point_size / (2 z)."""
    fx, fy, cx, cy = cameras.intrinsics.T
    dx = np.maximum(cx, cameras.width - cx) / fx
    dy = np.maximum(cy, cameras.height - cy) / fy
    return (np.maximum(fx, fy) * np.sqrt(1 + dx**2 + dy**2)).tolist()


def _key_depths(keys: torch.Tensor) -> torch.Tensor:
    """The depths of int64 keys (last dimension contiguous) as a float32 view of their high words."""
    return keys.view(torch.int32)[..., 1::2].view(torch.float32)


def _key_indices(keys: torch.Tensor) -> torch.Tensor:
    """The point indices of int64 keys as an int32 view of their low words."""
    return keys.view(torch.int32)[..., 0::2]


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index] for an index of any shape (index_select: much faster than advanced indexing)."""
    return values.index_select(0, index.reshape(-1)).view(index.shape)


def _local_focal(cameras: Cameras, pad: int, device) -> torch.Tensor:
    """f * stretch at every pixel of the padded canvas [F, H+2p, W+2p]: the projection's largest
    stretch of a surface element there (f |p| / z^2, see the module docstring)."""
    fx, fy, cx, cy = (torch.as_tensor(k, dtype=torch.float32, device=device).view(-1, 1, 1)
                      for k in cameras.intrinsics.T)
    u = torch.arange(cameras.width + 2 * pad, dtype=torch.float32, device=device).view(1, 1, -1) + (0.5 - pad)
    v = torch.arange(cameras.height + 2 * pad, dtype=torch.float32, device=device).view(1, -1, 1) + (0.5 - pad)
    return torch.maximum(fx, fy) * torch.sqrt(1 + ((u - cx) / fx) ** 2 + ((v - cy) / fy) ** 2)


SPARSE_SHARE = 1 / 32  # once a pass changes fewer than this share of the canvas, later passes visit only its neighbours


def _grow_splats(canvas: torch.Tensor, focal: torch.Tensor, nearest: torch.Tensor, point_size: float,
                 max_radius_px: int, empty_key: int, sizes: torch.Tensor | None = None,
                 local_focal: torch.Tensor | None = None, locked: torch.Tensor | None = None,
                 pinned: torch.Tensor | None = None) -> None:
    """Grow each centre into its square footprint, in place (see the module docstring).
    `sizes` [N+1]: each point's own spacing (the last entry, for empty pixels, 0), else all
    points have `point_size`, which also sets the occlusion margin. `locked` [C,H+2p,W+2p]:
    pixels no splat of a `pinned` point ([N+1] bool) may take.

    A pixel can change in pass t+1 only if a pixel of its 3x3 neighbourhood changed in pass t
    (otherwise its neighbourhood's nearest is the one pass t already turned down, now carried by
    fewer rings), so once few pixels change, later passes visit only those neighbourhoods, and
    the growth stops when a pass changes nothing: the same result as full passes, for less."""
    largest = point_size if sizes is None else float(sizes.max())
    if largest <= 0 or max_radius_px <= 0:
        return
    # focal: f * stretch per frame. Pass t carries the winners nearer than focal * s / (2t - 1),
    # i.e. with half-width k >= t.
    widest = float(((focal * largest / nearest + 1) / 2).ceil().sub(1).max())
    passes = int(min(max(widest, 0.0), max_radius_px))
    rule = _GrowthRule(point_size, sizes, empty_key, pinned)
    across = torch.empty_like(canvas)
    block = torch.empty_like(canvas)
    changed = None
    for t in range(1, passes + 1):
        if changed is None:  # a full pass over the canvas
            # 3x3 min filter, separable: along rows into `across`, then down columns into `block`.
            across[:, :, 0] = canvas[:, :, 0]
            torch.minimum(canvas[:, :, 1:], canvas[:, :, :-1], out=across[:, :, 1:])
            torch.minimum(across[:, :, :-1], canvas[:, :, 1:], out=across[:, :, :-1])
            block[:, 0] = across[:, 0]
            torch.minimum(across[:, 1:], across[:, :-1], out=block[:, 1:])
            torch.minimum(block[:, :-1], across[:, 1:], out=block[:, :-1])
            take = rule.take(block, canvas, local_focal, locked, t)
            count = int(take.sum())
            if count == 0:
                return
            torch.where(take, block, canvas, out=canvas)
            if count < SPARSE_SHARE * canvas.numel():
                changed = take.view(-1).nonzero().squeeze(1)
        else:  # only the neighbourhoods of the pixels the last pass changed
            active, neighbours = _neighbourhoods(changed, canvas.shape)
            flat = canvas.view(-1)
            grown = flat.index_select(0, neighbours.view(-1)).view(9, -1).amin(0)
            current = flat.index_select(0, active)
            take = rule.take(grown, current, local_focal.reshape(-1).index_select(0, active),
                             None if locked is None else locked.reshape(-1).index_select(0, active), t)
            changed = active[take]
            if len(changed) == 0:
                return
            flat.index_copy_(0, changed, grown[take])


def _neighbourhoods(pixels: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixels (flat indices into a [C,H,W] canvas) within one pixel of `pixels`, once each,
    and the 3x3 neighbourhood of each of those, [9, A] (clamped at the canvas' edges: the edge
    pixel stands in for the missing ones, which the minimum over the neighbourhood ignores)."""
    _, height, width = shape

    def around(flat):
        frame, rest = flat // (height * width), flat % (height * width)
        row, col = rest // width, rest % width
        offsets = torch.arange(-1, 2, device=flat.device)
        rows = (row.unsqueeze(0) + offsets.view(3, 1)).clamp_(0, height - 1)
        cols = (col.unsqueeze(0) + offsets.view(3, 1)).clamp_(0, width - 1)
        base = (frame * height).unsqueeze(0)
        return ((base + rows).unsqueeze(1) * width + cols.unsqueeze(0)).reshape(9, -1)

    active = torch.unique(around(pixels))
    return active, around(active)


@dataclass(frozen=True, eq=False)
class _GrowthRule:
    """Whether a ring's nearest neighbour (its key) takes a pixel from the key it holds."""

    point_size: float
    sizes: torch.Tensor | None
    empty_key: int
    pinned: torch.Tensor | None

    def take(self, block: torch.Tensor, current_key: torch.Tensor, local_focal, locked, t: int) -> torch.Tensor:
        """`block`: the nearest key around each pixel (overwritten: empty where it cannot reach
        ring t), `current_key`: the pixel's own; same shapes."""
        # The nearest neighbour is the one to carry unless it is too far to reach ring t; then none is.
        owner = _key_indices(block)
        size = self.point_size if self.sizes is None else _gather(self.sizes, owner)
        reach = local_focal * size
        reach /= 2 * t - 1
        too_far = _key_depths(block) >= reach
        block.masked_fill_(too_far, self.empty_key)
        grown = _key_depths(block)  # +inf where too far: the empty key's depth
        # A splat takes an empty pixel, or one whose point lies clearly behind it: within the
        # occlusion margin the pixel's own point keeps it, so neighbours on the same surface
        # (a floor seen at an angle) do not paint over each other's centres; a coarse point (seen
        # from afar) must be nearer by its own size to cover a finer one. (In place: a canvas
        # holds a million pixels, and every temporary costs as much as the comparison.)
        current = _key_depths(current_key)
        limit = current * OCCLUSION_MARGIN_REL
        limit += OCCLUSION_MARGIN_VOXELS * size
        torch.sub(current, limit, out=limit)
        take = grown < limit
        take |= current_key == self.empty_key
        if locked is not None:
            take &= ~(locked & _gather(self.pinned, owner))
        take &= block != current_key
        return take


def _centres_by_priority(scene: "_Scene", rotation, translation, canvas, spare, width, height) -> torch.Tensor:
    """Centre pixels when some points are preferred (the user's, the scene's first `scene.split`
    points): a preferred point keeps its pixel unless another point is clearly nearer (by its
    size, as splats grow), so points of a lower rank on the same surface never show through the
    user's."""
    split, pad, near = scene.split, scene.pad, scene.near
    nearest = _splat_centres(scene.groups[0], rotation, translation, canvas, width, height, pad, near)
    spare.fill_(scene.empty_key)
    nearest = torch.minimum(nearest, _splat_centres(scene.groups[1], rotation, translation, spare, width, height,
                                                    pad, near, offset=split))
    held, challenger = _key_depths(canvas), _key_depths(spare)
    size = scene.point_size if scene.sizes is None else _gather(scene.sizes, _key_indices(spare))
    take = (canvas == scene.empty_key) | (challenger < held - (OCCLUSION_MARGIN_VOXELS * size + OCCLUSION_MARGIN_REL * held))
    torch.where(take, spare, canvas, out=canvas)
    return nearest


def render(xyz, rgb, cameras: Cameras, *, point_size: float, device: str | torch.device | None = None,
           depth_only: bool = False, return_index: bool = False, near: float = 1e-2, max_radius_px: int = 8,
           chunk: int | None = None, priority=None, exact=None, return_centres: bool = False) -> RenderResult:
    """Render points into every camera of `cameras` (see the module docstring for the splat model).

    xyz: [N,3] float world points, numpy or torch. rgb: [N,3] uint8 (ignored when depth_only).
    point_size: world-space spacing of the points (the memory's voxel size), metres, one for all
    or one per point [N]; 0 draws one pixel per point. Points with z <= near are dropped. device: where to render (default:
    where xyz lives if it is a tensor, else the CPU). chunk: frames rendered together
    (default: about 1M projected points per batch on CPU, 64M on CUDA). priority: bool [N],
    points that keep their pixels against others at about the same depth (the user's).
    exact: bool [F], frames at the own camera of a pinned view (an image the user gave, whose
    every pixel is a preferred point): there a preferred point's centre pixel is taken by no
    other preferred point's splat, so the view comes back pixel for pixel, silhouettes
    included. Other points still draw as anywhere else: one in front of the view's surface
    (which the memory keeps out of the space such a view saw as empty) would show.
    return_centres: also return which point's centre won each pixel before splats grew (as a
    render with point_size 0 would), from the same pass.
    """
    if not isinstance(cameras, Cameras):
        raise RenderError(f"cameras must be a spatia.cameras.Cameras, got {type(cameras).__name__}")
    point_size, sizes = _point_sizes(point_size, len(xyz))
    if not (math.isfinite(near) and near >= 0):
        raise RenderError(f"near must be a finite number >= 0, got {near}")
    if max_radius_px < 0:
        raise RenderError(f"max_radius_px must be >= 0, got {max_radius_px}")
    if device is None:
        device = xyz.device if isinstance(xyz, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    points = as_points_tensor(xyz, device)
    count = points.shape[0]
    colours = None if depth_only else _packed_colours(rgb, count, device)
    frames, height, width = len(cameras), cameras.height, cameras.width
    if chunk is None:
        chunk = max(1, CHUNK_ELEMENTS.get(device.type, CHUNK_ELEMENTS["cpu"]) // max(count, height * width))
    if chunk < 1:
        raise RenderError(f"chunk must be >= 1, got {chunk}")
    if sizes is not None:
        sizes = torch.cat([sizes.to(device), torch.zeros(1, device=device)])  # entry N: empty pixels
    preferred, pinned, exact = _priority_flags(priority, exact, count, frames, device)
    pad = max_radius_px if point_size > 0 or sizes is not None else 0
    shape = (frames, height, width)
    out = RenderResult(
        depth=torch.empty(shape, dtype=torch.float32, device=device),
        mask=torch.empty(shape, dtype=torch.bool, device=device),
        rgb=None if depth_only else torch.empty((*shape, 3), dtype=torch.uint8, device=device),
        index=torch.empty(shape, dtype=torch.int64, device=device) if return_index else None,
        centre_index=torch.empty(shape, dtype=torch.int64, device=device) if return_centres else None,
        centre_depth=torch.empty(shape, dtype=torch.float32, device=device) if return_centres else None)
    scene = _Scene.build(points, colours, pad, point_size, sizes, max_radius_px, near, preferred, pinned)
    rotation, translation = _projection_matrices(cameras, device)
    focal = torch.tensor(_pixels_per_metre_at_unit_depth(cameras), dtype=torch.float32, device=device)
    canvas_buffer = torch.empty((min(chunk, frames), height + 2 * pad, width + 2 * pad), dtype=torch.int64, device=device)
    spare_buffer = torch.empty_like(canvas_buffer) if scene.order is not None else None
    for start in range(0, frames, chunk):
        stop = min(start + chunk, frames)
        frame_exact = None
        if pinned is not None and exact[start:stop].any():
            frame_exact = torch.as_tensor(exact[start:stop], device=device).view(-1, 1, 1)
        _render_frames(scene, out, start, stop, rotation[start:stop], translation[start:stop], focal[start:stop],
                       _local_focal(cameras[start:stop], pad, device), canvas_buffer[: stop - start],
                       None if spare_buffer is None else spare_buffer[: stop - start], frame_exact)
    return out


@dataclass(frozen=True, eq=False)
class _Scene:
    """What every chunk of frames renders: the points (one _Group of all of them, or the
    preferred and then the others), packed colours, the empty key, the splat settings and the pinned flags.
    With preferred points the scene holds the points reordered preferred first (`split` of them;
    `order`: the original index of each), so each group scatters from a contiguous block and its
    keys carry scene indices directly; indices handed out are mapped back through `order`."""

    groups: tuple[_Group, ...]
    colours: torch.Tensor | None
    count: int
    empty_key: int
    pad: int
    point_size: float
    sizes: torch.Tensor | None
    max_radius_px: int
    near: float
    pinned: torch.Tensor | None
    split: int = 0
    order: torch.Tensor | None = None

    @classmethod
    def build(cls, points, colours, pad, point_size, sizes, max_radius_px, near, preferred, pinned) -> "_Scene":
        count = points.shape[0]
        empty_key = (INF_BITS << INDEX_BITS) | count
        if preferred is None:
            return cls((_Group.of(points),), colours, count, empty_key, pad, point_size, sizes, max_radius_px,
                       near, pinned)
        order = torch.cat([preferred.nonzero()[:, 0], (~preferred).nonzero()[:, 0]])
        split = int(preferred.sum())
        with_empty = torch.cat([order, torch.tensor([count], device=order.device)])  # entry N stays the empty one

        def reorder(values):
            return None if values is None else values.index_select(0, with_empty)

        points = points.index_select(0, order)
        return cls((_Group.of(points[:split]), _Group.of(points[split:])), reorder(colours), count,
                   empty_key, pad, point_size, reorder(sizes), max_radius_px, near, reorder(pinned), split, order)

    def original(self, winner: torch.Tensor) -> torch.Tensor:
        """Scene indices [..] (count where empty) -> the caller's point indices (-1 where empty)."""
        empty = winner == self.count
        if self.order is not None:
            winner = self.order.index_select(0, winner.reshape(-1).clamp(max=self.count - 1)).view(winner.shape)
        return winner.masked_fill(empty, -1)


def _point_sizes(point_size, count: int) -> tuple[float, torch.Tensor | None]:
    """(the smallest spacing, the per-point spacings [N] or None when one size serves all)."""
    sizes = None
    if isinstance(point_size, (np.ndarray, torch.Tensor)) and np.ndim(point_size) == 1:
        sizes = torch.as_tensor(point_size, dtype=torch.float32)
        if len(sizes) != count:
            raise RenderError(f"point_size must be a number or one per point ({count}), got {len(sizes)}")
        if len(sizes) and not bool((torch.isfinite(sizes) & (sizes >= 0)).all()):
            raise RenderError("point_size must be finite and >= 0 for every point")
        point_size = float(sizes.min()) if len(sizes) else 0.0
        if len(sizes) == 0 or bool((sizes == sizes[0]).all()):
            sizes = None  # one size for all: the cheaper path
    point_size = float(point_size)
    if not (math.isfinite(point_size) and point_size >= 0):
        raise RenderError(f"point_size must be a finite number >= 0, got {point_size}")
    return point_size, sizes


def _priority_flags(priority, exact, count: int, frames: int, device):
    """(preferred [N] or None when all or none are, pinned [N+1] or None, exact [F] or None)."""
    preferred = None if priority is None else torch.as_tensor(priority, device=device).to(torch.bool).reshape(-1)
    if preferred is not None and len(preferred) != count:
        raise RenderError(f"priority must hold one flag per point ({count}), got {len(preferred)}")
    if preferred is not None and (bool(preferred.all()) or not bool(preferred.any())):
        preferred = None  # one rank for all: nothing to prefer
    exact = None if exact is None else np.asarray(exact, dtype=bool).reshape(-1)
    if exact is not None and len(exact) != frames:
        raise RenderError(f"exact must hold one flag per frame ({frames}), got {len(exact)}")
    pinned = None
    if exact is not None and exact.any() and priority is not None:
        flags = torch.as_tensor(priority, device=device).to(torch.bool).reshape(-1)
        pinned = torch.cat([flags, torch.zeros(1, dtype=torch.bool, device=device)])  # entry N: empty pixels
    return preferred, pinned, exact


def _render_frames(scene: _Scene, out: RenderResult, start: int, stop: int, rotation, translation, focal,
                   local_focal, canvas, spare, frame_exact) -> None:
    """Frames [start, stop) into `out`: centres, then splats grown, then the winners read off."""
    pad, count = scene.pad, scene.count
    height, width = out.depth.shape[1:]
    canvas.fill_(scene.empty_key)
    if scene.order is None:
        nearest = _splat_centres(scene.groups[0], rotation, translation, canvas, width, height, pad, scene.near)
    else:
        nearest = _centres_by_priority(scene, rotation, translation, canvas, spare, width, height)
    if out.centre_index is not None:
        centres = canvas[:, pad:pad + height, pad:pad + width]
        out.centre_depth[start:stop] = _key_depths(centres)
        out.centre_index[start:stop] = scene.original(centres & INDEX_MASK)
    locked = None if frame_exact is None else _gather(scene.pinned, _key_indices(canvas)) & frame_exact
    _grow_splats(canvas, focal, nearest, scene.point_size, scene.max_radius_px, scene.empty_key, scene.sizes,
                 local_focal, locked, scene.pinned)
    keys = canvas[:, pad:pad + height, pad:pad + width]
    winner = keys & INDEX_MASK  # == count where empty
    out.depth[start:stop] = _key_depths(keys)
    torch.ne(winner, count, out=out.mask[start:stop])
    if out.rgb is not None:
        texels = scene.colours.index_select(0, winner.view(-1)).view(torch.uint8).view(stop - start, height, width, 4)
        out.rgb[start:stop] = texels[..., :3]
    if out.index is not None:
        out.index[start:stop] = scene.original(winner)


SPLAT_OVERLAP = 1.5  # splats a little wider than a memory's sampling: views between the sampled ones have no pinholes


def point_sizes(memory) -> float | torch.Tensor:
    """Splat sizes for a memory: SPLAT_OVERLAP times its own `spacing()` where it has one, else its
    voxel size."""
    spacing = getattr(memory, "spacing", None)
    return spacing() * SPLAT_OVERLAP if callable(spacing) else float(memory.voxel_size)


def render_memory(memory, cameras: Cameras, *, pinned: Cameras | None = None, **kwargs) -> RenderResult:
    """render() for any object with `.xyz`, `.rgb` and `.voxel_size` (e.g. a spatial memory),
    splats sized by each point's cell, the user's points preferred over generated ones.
    `pinned`: the cameras of the views the user gave; frames at one of their exact poses
    (spatia.engine.poses.exact_matches) render the user's points pixel for pixel."""
    kwargs.setdefault("point_size", point_sizes(memory))
    rank = getattr(memory, "rank", None)
    if rank is not None:
        kwargs.setdefault("priority", rank > 0)
        if pinned is not None and "exact" not in kwargs:
            match = exact_matches(cameras, pinned)
            if match.any():
                kwargs["exact"] = match
    rgb = None if kwargs.get("depth_only") else memory.rgb
    return render(memory.xyz, rgb, cameras, **kwargs)


from spatia.engine.render_control import ControlRender, control_voxel_size, render_control, voxel_downsample  # noqa: E402,F401
