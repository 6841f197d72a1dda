"""The control video spatia-5b was trained on: soft disks, alpha-composited, and its score video.

`render` (a z-buffer of splats sized by voxel and depth) answers "what does the memory know
here". This module instead reproduces, in plain batched torch ops, the picture the authors
rendered with PyTorch3D's points rasterizer and alpha compositor to train the control branch:

Camera model (the authors' PyTorch3D set-up, which is not OpenCV's continuous-pixel model).
With pixel intrinsics fx, fy, cx, cy for a W x H image and s = min(W, H), an OpenCV
camera-space point (X, Y, Z) with Z >= 0 lands at

    u = (W - 1)/2 + s/(s - 1) * (fx X/Z - (cx - (W - 1)/2))
    v = (H - 1)/2 + s/(s - 1) * (fy Y/Z - (cy - (H - 1)/2))

in pixel-index units (pixel column j has its centre at u = j). This is what their normalised
NDC focal 2 fx/(s - 1), principal point 2 (cx - (W - 1)/2)/(s - 1) and PyTorch3D's NDC
(+x left, +y up, the shorter side spanning [-1, 1], pixel centres at (2j + 1 - W)/s) work out
to. Points with Z < 0 are skipped.

Disks. Every point is a screen-space disk of radius `radius_ndc` in NDC units, i.e.
radius_ndc * s / 2 pixels whatever its depth (3.52 px at 1248x704 for 0.01). It covers a pixel
when the distance d from the point to the pixel centre is below that radius; its alpha there is
1 - d^2 / r^2.

Compositing. Per pixel, the `points_per_pixel` nearest covering points (by Z; equal Z: lower
index first), front to back over black:

    rgb = sum_k alpha_k prod_{j<k} (1 - alpha_j) c_k,    score = prod_k (1 - alpha_k)

The score is what the authors compute as 1 minus the same points rendered in white: 1 in holes,
0 under a point's centre, fractional at the disk edges.

Before rendering, `voxel_downsample` averages the points (and colours) of each voxel as Open3D's
voxel_down_sample does; the generator uses voxel size 0.01 + 0.005 x round index
(`control_voxel_size`).

How: per frame, the points in front of the camera are projected and sorted by (depth, index)
(an int64 key: float32 depth bits << 31 | index), and every disk is expanded into fragments
(pixel, rank of its point in that order). The k-th nearest fragment of every pixel is found by
k rounds of a scatter-min over the ranks ("depth peeling"), each round retiring the previous
winners.
Memory per frame is bounded by the fragments of the points that frame sees (points are
expanded in chunks); outputs are float32 on the render device. The same code runs on CPU and
CUDA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from spatia.cameras import Cameras

INDEX_BITS = 31
INDEX_MASK = (1 << INDEX_BITS) - 1
EMPTY_KEY = 1 << 62  # larger than every fragment key (a point's rank)
# Candidate pixels (points x window) expanded at once: bounds the transient memory (on the CPU,
# small enough that the allocator reuses its heap instead of mapping fresh pages every chunk).
CANDIDATE_CHUNK = {"cpu": 2_000_000, "cuda": 64_000_000}
CONTROL_VOXEL_BASE = 0.01
CONTROL_VOXEL_STEP = 0.005


class ControlRenderError(ValueError):
    """render_control or voxel_downsample got malformed input; the message names the argument."""


@dataclass
class ControlRender:
    """rgb float32 [F,H,W,3] in [0, 1] (black where no point); score float32 [F,H,W] in [0, 1]
    (1 in holes, 0 under a point's centre). Tensors on the render device."""

    rgb: torch.Tensor
    score: torch.Tensor

    def to_uint8(self) -> tuple[np.ndarray, np.ndarray]:
        """The frames as the authors wrote them to video: rgb uint8 [F,H,W,3] = floor(255 rgb) and
        score uint8 [F,H,W] = 255 - floor(255 (1 - score)) (their white render, inverted)."""
        frames = self.rgb.shape[0]
        rgb = np.empty(tuple(self.rgb.shape), dtype=np.uint8)
        score = np.empty(tuple(self.score.shape), dtype=np.uint8)
        for start in range(0, frames, 8):  # a few frames at a time: no full-size float temporaries
            part = slice(start, start + 8)
            rgb[part] = (self.rgb[part].clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
            score[part] = (255 - ((1 - self.score[part]).clamp(0, 1) * 255).to(torch.uint8)).cpu().numpy()
        return rgb, score


def control_voxel_size(round_index: int) -> float:
    """The voxel size the authors downsample the memory with before rendering round `round_index`."""
    if int(round_index) != round_index or round_index < 0:
        raise ControlRenderError(f"round_index must be an integer >= 0, got {round_index}")
    return CONTROL_VOXEL_BASE + CONTROL_VOXEL_STEP * int(round_index)


def _points(xyz, device) -> torch.Tensor:
    points = torch.as_tensor(xyz, device=device)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ControlRenderError(f"xyz must have shape [N, 3], got {list(points.shape)}")
    if points.shape[0] > INDEX_MASK:
        raise ControlRenderError(f"at most {INDEX_MASK} points can be rendered, got {points.shape[0]}")
    if not points.is_floating_point():
        raise ControlRenderError(f"xyz must be floating point, got {points.dtype}")
    if not bool(torch.isfinite(points).all()):
        raise ControlRenderError("xyz contains NaN or infinite coordinates")
    return points


def _colours(rgb, count: int, device) -> torch.Tensor:
    """uint8 [N,3] (0..255) or float [N,3] in [0, 1] -> float32 [N,3] in [0, 1]."""
    colours = torch.as_tensor(rgb, device=device)
    if colours.shape != (count, 3):
        raise ControlRenderError(f"rgb must have shape [{count}, 3] to match xyz, got {list(colours.shape)}")
    if colours.dtype == torch.uint8:
        return colours.to(torch.float32) / 255.0
    if not colours.is_floating_point():
        raise ControlRenderError(f"rgb must be uint8 or float in [0, 1], got {colours.dtype}")
    colours = colours.to(torch.float32)
    if count and not bool(((colours >= 0) & (colours <= 1)).all()):
        raise ControlRenderError("float rgb must lie in [0, 1]")
    return colours


def voxel_downsample(xyz, rgb, voxel_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean point and mean colour of every occupied voxel, as Open3D's voxel_down_sample.

    The grid starts half a voxel below the cloud's minimum corner (Open3D's origin); sums are
    in float64. xyz [N,3] float, rgb [N,3] uint8 or float in [0, 1]; returns xyz float32 [M,3]
    and rgb float32 [M,3] in [0, 1], ordered by voxel (Open3D's order is its hash map's).
    """
    if not (isinstance(voxel_size, (int, float)) and math.isfinite(voxel_size) and voxel_size > 0):
        raise ControlRenderError(f"voxel_size must be a finite number > 0, got {voxel_size}")
    device = xyz.device if isinstance(xyz, torch.Tensor) else torch.device("cpu")
    points = _points(xyz, device)
    colours = _colours(rgb, points.shape[0], device)
    if points.shape[0] == 0:
        return points.to(torch.float32), colours
    p64 = points.to(torch.float64)
    origin = p64.min(dim=0).values - voxel_size / 2
    cells = torch.floor((p64 - origin) / voxel_size).to(torch.int64)
    extent = cells.max(dim=0).values + 1
    if float(extent.double().prod()) >= 2**62:
        raise ControlRenderError(f"voxel_size {voxel_size} is too small for a cloud this large")
    key = (cells[:, 0] * extent[1] + cells[:, 1]) * extent[2] + cells[:, 2]
    _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    voxels = counts.shape[0]
    sums = torch.zeros((voxels, 6), dtype=torch.float64, device=device)
    sums.index_add_(0, inverse, torch.cat([p64, colours.to(torch.float64)], dim=1))
    means = sums / counts.unsqueeze(1).to(torch.float64)
    return means[:, :3].to(torch.float32).contiguous(), means[:, 3:].to(torch.float32).contiguous()


def control_mapping(cameras: Cameras) -> np.ndarray:
    """Per frame (a_x, b_x, a_y, b_y), float64 [F,4]: u = a_x X/Z + b_x, v = a_y Y/Z + b_y (module docstring)."""
    width, height = cameras.width, cameras.height
    s = min(width, height)
    if s < 2:
        raise ControlRenderError(f"the image must be at least 2 pixels on each side, got {width}x{height}")
    fx, fy, cx, cy = np.asarray(cameras.intrinsics, dtype=np.float64).T
    scale = s / (s - 1)
    half_w, half_h = (width - 1) / 2, (height - 1) / 2
    return np.stack([scale * fx, half_w - scale * (cx - half_w), scale * fy, half_h - scale * (cy - half_h)], axis=1)


def _project(points_t: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """[3,N] world points -> [3,N] camera points for one frame (same shapes for every frame, so
    the result does not depend on how frames are batched)."""
    return torch.addmm(translation, rotation, points_t)


def _fragments(u: torch.Tensor, v: torch.Tensor, radius: float, width: int, height: int,
               chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (pixel, point) with the pixel centre strictly within `radius` pixels of the point
    (point: its position in u, v), in point order."""
    span = max(1, math.ceil(2 * radius))  # pixel centres inside (u - r, u + r): at most this many
    bits = max(0, (span - 1).bit_length())  # window rows and columns padded to 2^bits: bit ops, no division
    side = 1 << bits
    offsets = torch.arange(side, device=u.device)
    offsets = torch.where(offsets < span, offsets, -(1 << 20))  # padding lands outside every image
    window = (offsets.view(-1, 1) * width + offsets.view(1, -1)).view(-1)  # pixel offset of each window cell
    r2 = radius * radius
    per_chunk = max(1, chunk // (side * side))
    pixels, frag_keys = [], []
    for start in range(0, u.shape[0], per_chunk):
        cu, cv = u[start:start + per_chunk], v[start:start + per_chunk]
        col0 = torch.floor(cu - radius).to(torch.int64) + 1
        row0 = torch.floor(cv - radius).to(torch.int64) + 1
        cols = col0.unsqueeze(1) + offsets  # [P, side]
        rows = row0.unsqueeze(1) + offsets
        dx2 = (cols.to(torch.float32) - cu.unsqueeze(1)).square_()
        dy2 = (rows.to(torch.float32) - cv.unsqueeze(1)).square_()
        dx2.masked_fill_((cols < 0) | (cols >= width), math.inf)
        dy2.masked_fill_((rows < 0) | (rows >= height), math.inf)
        hit = (dy2.unsqueeze(2) + dx2.unsqueeze(1)).lt_(r2).view(-1)  # [P * side * side]
        flat = hit.nonzero().squeeze(1)
        point = flat >> (2 * bits)
        base = row0.mul_(width).add_(col0)
        pixels.append(base.index_select(0, point).add_(window.index_select(0, flat & (side * side - 1))))
        frag_keys.append(point.add_(start))
    if len(pixels) == 1:
        return pixels[0], frag_keys[0]
    if not pixels:
        empty = torch.empty(0, dtype=torch.int64, device=u.device)
        return empty, empty
    return torch.cat(pixels), torch.cat(frag_keys)


def _check(cameras, radius_ndc, points_per_pixel) -> None:
    if not isinstance(cameras, Cameras):
        raise ControlRenderError(f"cameras must be a spatia.cameras.Cameras, got {type(cameras).__name__}")
    if not (isinstance(radius_ndc, (int, float)) and math.isfinite(radius_ndc) and radius_ndc > 0):
        raise ControlRenderError(f"radius_ndc must be a finite number > 0, got {radius_ndc}")
    if isinstance(points_per_pixel, bool) or not isinstance(points_per_pixel, int) or points_per_pixel < 1:
        raise ControlRenderError(f"points_per_pixel must be an integer >= 1, got {points_per_pixel}")


def _frame_fragments(points_t, w2c, mapping, radius: float, width: int, height: int, chunk: int):
    """One camera's fragments: the points in view (and near its border) ordered by (depth, index),
    PyTorch3D's order; returns their indices, pixel coordinates, and (pixel, rank) per fragment,
    or None when no point is in view."""
    cam = _project(points_t, w2c[:, :3], w2c[:, 3:])
    x, y, z = cam.unbind(0)
    ax, bx, ay, by = mapping.tolist()
    inv_z = z.reciprocal()
    u = (x * inv_z).mul_(ax).add_(bx)
    v = (y * inv_z).mul_(ay).add_(by)
    keep = z >= 0
    keep &= u > -radius
    keep &= u < width - 1 + radius
    keep &= v > -radius
    keep &= v < height - 1 + radius
    index = keep.nonzero().squeeze(1)
    if index.numel() == 0:
        return None
    # The depth's bits, then the point's place among the kept points (kept in index order): a
    # fragment's key is then the rank of its point in that order.
    keys = z.index_select(0, index).view(torch.int32).to(torch.int64) << INDEX_BITS
    keys |= torch.arange(index.numel(), device=z.device)
    index = index.index_select(0, torch.sort(keys).indices)
    u_in, v_in = u.index_select(0, index), v.index_select(0, index)
    return index, u_in, v_in, _fragments(u_in, v_in, radius, width, height, chunk)


def _composite(u_in, v_in, colour_in, pixel, frag, layer, centres, r2: float, points_per_pixel: int):
    """Front to back, the nearest `points_per_pixel` disks of every pixel alpha-composited with
    alpha = 1 - d^2/r^2: (colour [P,3], transmittance [P]). `layer` is scratch, left all empty."""
    col_centre, row_centre = centres
    pixel_count = layer.numel()
    colour = torch.zeros((pixel_count, 3), dtype=torch.float32, device=layer.device)
    transmit = torch.ones(pixel_count, dtype=torch.float32, device=layer.device)
    hit = None
    for k in range(points_per_pixel):
        if frag.numel() == 0:
            break
        layer.scatter_reduce_(0, pixel, frag, "amin", include_self=True)
        # Pixels with a fragment left: after the first layer, only those hit by the previous one.
        if hit is None:
            hit = (layer != EMPTY_KEY).nonzero().squeeze(1)
        else:
            hit = hit.index_select(0, (layer.index_select(0, hit) != EMPTY_KEY).nonzero().squeeze(1))
        if hit.numel() == 0:
            break
        rank = layer.index_select(0, hit)
        du = col_centre.index_select(0, hit) - u_in.index_select(0, rank)
        dv = row_centre.index_select(0, hit) - v_in.index_select(0, rank)
        alpha = 1 - (du.square_() + dv.square_()) / r2
        t = transmit.index_select(0, hit)
        colour.index_add_(0, hit, colour_in.index_select(0, rank) * (alpha * t).unsqueeze(1))
        transmit.index_copy_(0, hit, t * (1 - alpha))
        if k + 1 < points_per_pixel:  # retire this layer's winners
            left = (frag != layer.index_select(0, pixel)).nonzero().squeeze(1)
            pixel, frag = pixel.index_select(0, left), frag.index_select(0, left)
        layer.index_fill_(0, hit, EMPTY_KEY)  # every pixel written this layer: all empty again
    return colour, transmit


def render_control(xyz, rgb, cameras: Cameras, *, radius_ndc: float = 0.01, points_per_pixel: int = 5,
                   device: str | torch.device | None = None) -> ControlRender:
    """Render points into every camera of `cameras` as the authors' control video (module docstring).

    xyz [N,3] float world points; rgb [N,3] uint8 or float in [0, 1]; numpy or torch. Downsample
    first with `voxel_downsample` where the reference does. device: where to render (default:
    where xyz lives if it is a tensor, else the CPU).
    """
    _check(cameras, radius_ndc, points_per_pixel)
    if device is None:
        device = xyz.device if isinstance(xyz, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    points = _points(xyz, device).to(torch.float32)
    colours = _colours(rgb, points.shape[0], device)
    frames, height, width = len(cameras), cameras.height, cameras.width
    mapping = control_mapping(cameras)
    radius = radius_ndc * min(width, height) / 2
    chunk = CANDIDATE_CHUNK.get(device.type, CANDIDATE_CHUNK["cpu"])
    w2c = torch.as_tensor(np.asarray(cameras.w2c, dtype=np.float64)[:, :3, :4], dtype=torch.float32, device=device)
    points_t = points.t().contiguous()
    out_rgb = torch.zeros((frames, height, width, 3), dtype=torch.float32, device=device)
    out_score = torch.ones((frames, height, width), dtype=torch.float32, device=device)
    # Every pixel's centre (column, row), looked up by flat pixel index: no integer division per layer.
    centres = (torch.arange(width, dtype=torch.float32, device=device).repeat(height),
               torch.arange(height, dtype=torch.float32, device=device).repeat_interleave(width))
    layer = torch.full((height * width,), EMPTY_KEY, dtype=torch.int64, device=device)  # reset after each use
    for f in range(frames):
        found = _frame_fragments(points_t, w2c[f], mapping[f], radius, width, height, chunk)
        if found is None:
            continue
        index, u_in, v_in, (pixel, frag) = found
        colour, transmit = _composite(u_in, v_in, colours.index_select(0, index), pixel, frag, layer, centres,
                                      radius * radius, points_per_pixel)
        out_rgb[f] = colour.view(height, width, 3)
        out_score[f] = transmit.view(height, width)
    return ControlRender(rgb=out_rgb, score=out_score)


__all__ = ["ControlRender", "ControlRenderError", "control_mapping", "control_voxel_size", "render_control",
           "voxel_downsample"]
