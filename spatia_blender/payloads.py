"""What the extension sends to the backend, built from plain arrays (no Blender here).

- `build_shot`: the `spatia.shot` v1 dict for an exported camera path (and its object directions).
- `cameras_payload`: the `{"width", "height", "intrinsics", "w2c"}` of the query endpoints.
- `memory_edits`: the diff of an edited memory object against the version it came from,
  as the body of POST /v1/worlds/{id}/memory/edits.
- `coverage_bars` / `entry_marks`: the Timeline overlay's geometry.
- `sample_surface`: points with colours on triangles, for geometry added to the memory.
- `encode_png` / `encode_npy`: upload bodies without PIL.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

SHOT_SCHEMA = "spatia.shot"
SHOT_VERSION = 1
MOVE_TOLERANCE = 1e-4  # metres: a point that moved less is unchanged (float32 round trips)


# --- shots -----------------------------------------------------------------------------------
def split_prompts(text: str) -> list[str]:
    """Comma- or newline-separated entity prompts ("person, car") -> ["person", "car"]."""
    parts = [p.strip() for chunk in text.splitlines() for p in chunk.split(",")]
    return [p for p in parts if p]


def frames_payload(exported: dict) -> list[dict]:
    return [
        {"frame": int(frame), "intrinsics": [float(v) for v in k], "w2c": np.asarray(w2c, dtype=np.float64).tolist()}
        for frame, k, w2c in zip(exported["frames"], exported["intrinsics"], exported["w2c"])
    ]


def build_shot(exported: dict, prompts: list[str], *, name: str = "shot", world: str | None = None,
               generator: str = "preview", quality: str = "standard", vram: str = "auto", seed: int | None = None,
               negative_prompt: str = "", dynamic_prompts: list[str] = (), steps: int | None = None,
               guidance: float | None = None, rounds: dict | None = None, objects: list[dict] = (),
               forget_objects: list[int] = (), object_memory: bool = True) -> dict:
    """The shot spec dict for `exported` (camera_export.export_camera's result); `objects` and
    `forget_objects` as directing.direct_objects makes them."""
    prompts = [p.strip() for p in prompts if p.strip()]
    if not prompts:
        raise ValueError("write a prompt first")
    shot = {
        "schema": SHOT_SCHEMA,
        "version": SHOT_VERSION,
        "name": name.strip() or "shot",
        "width": int(exported["width"]),
        "height": int(exported["height"]),
        "fps": float(exported["fps"]),
        "frames": frames_payload(exported),
        "prompts": prompts,
        "negative_prompt": negative_prompt,
        "generator": generator,
        "quality": quality,
        "vram": vram,
        "dynamic_prompts": list(dynamic_prompts),
    }
    if world:
        shot["world"] = world
    if seed is not None:  # else the generator's own seed
        shot["seed"] = int(seed)
    if steps:
        shot["steps"] = int(steps)
    if guidance:
        shot["guidance"] = float(guidance)
    if rounds:
        shot["rounds"] = {key: int(value) for key, value in rounds.items()}
    if objects:
        shot["objects"] = [dict(o) for o in objects]
    if forget_objects:
        shot["forget_objects"] = sorted(int(i) for i in forget_objects)
    if not object_memory:
        shot["object_memory"] = False
    return shot


def cameras_payload(exported: dict) -> dict:
    return {
        "width": int(exported["width"]),
        "height": int(exported["height"]),
        "intrinsics": np.asarray(exported["intrinsics"], dtype=np.float64).tolist(),
        "w2c": np.asarray(exported["w2c"], dtype=np.float64).tolist(),
    }


def single_camera(intrinsics, w2c) -> dict:
    """The `camera` form field of POST /v1/worlds."""
    return {"intrinsics": [float(v) for v in intrinsics], "w2c": np.asarray(w2c, dtype=np.float64).tolist()}


# --- memory edits ----------------------------------------------------------------------------
def memory_edits(base_ids, base_xyz, ids, xyz, rgb, *, parent: int, message: str = "edited in Blender",
                 extra_xyz=None, extra_rgb=None, tolerance: float = MOVE_TOLERANCE) -> dict:
    """Diff the current points (ids, world-space xyz, rgb) against version `parent` (base_ids, base_xyz).

    - a base id no longer present is deleted;
    - a base id present at a different position (beyond `tolerance`) is moved, to its first
      occurrence's position;
    - a point whose id the base does not hold (-1: a vertex the artist added) and every
      further occurrence of an id (a duplicated vertex) is added, with its colour;
    - `extra_xyz`/`extra_rgb` (points sampled from added geometry) are added too.
    """
    base_ids = np.asarray(base_ids, dtype=np.int64).reshape(-1)
    base_xyz = np.asarray(base_xyz, dtype=np.float64).reshape(-1, 3)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    if len(base_ids) != len(base_xyz) or not len(ids) == len(xyz) == len(rgb):
        raise ValueError("ids, positions and colours must have one row per point")

    # First occurrence of each id keeps it; later occurrences are copies.
    _, first = np.unique(ids, return_index=True)
    is_first = np.zeros(len(ids), dtype=bool)
    is_first[first] = True
    known = np.isin(ids, base_ids)
    keeps = is_first & known  # points still carrying a base id

    order = np.argsort(base_ids, kind="stable")
    where = order[np.searchsorted(base_ids, ids[keeps], sorter=order)]
    delta = np.abs(xyz[keeps] - base_xyz[where]).max(axis=1) if keeps.any() else np.zeros(0)
    moved = delta > tolerance

    kept_ids = ids[keeps]
    deleted = np.setdiff1d(base_ids, kept_ids)
    added = ~keeps
    add_xyz, add_rgb = xyz[added], rgb[added]
    if extra_xyz is not None and len(extra_xyz):
        add_xyz = np.concatenate([add_xyz, np.asarray(extra_xyz, dtype=np.float64).reshape(-1, 3)])
        add_rgb = np.concatenate([add_rgb, np.asarray(extra_rgb, dtype=np.uint8).reshape(-1, 3)])
    return {
        "parent": int(parent),
        "message": message,
        "delete_ids": deleted.tolist(),
        "move_ids": kept_ids[moved].tolist(),
        "move_xyz": xyz[keeps][moved].tolist(),
        "add_xyz": add_xyz.tolist(),
        "add_rgb": add_rgb.astype(int).tolist(),
    }


def edits_summary(edits: dict) -> str:
    return f"{len(edits['delete_ids'])} deleted, {len(edits['move_ids'])} moved, {len(edits['add_xyz'])} added"


def deletes_everything(edits: dict, base_points: int) -> bool:
    """Whether the edits leave no point of a non-empty base version and add none."""
    return base_points > 0 and len(set(edits["delete_ids"])) >= base_points and not len(edits["add_xyz"])


def linear_to_srgb(linear) -> np.ndarray:
    """Linear [0, 1] colour -> sRGB-encoded uint8."""
    c = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    s = np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)
    return np.clip(np.round(s * 255.0), 0, 255).astype(np.uint8)


def sample_surface(triangles, colors, *, spacing: float, max_points: int = 200_000, seed: int = 0):
    """Points on triangles [T, 3, 3] (world space) about `spacing` apart, with colours.

    `colors` is uint8 [T, 3] (one per triangle) or [T, 3, 3] (one per corner, interpolated).
    Returns (xyz float64 [N, 3], rgb uint8 [N, 3]); every triangle with area gets at least
    one point at its centroid so thin parts are not lost.
    """
    tri = np.asarray(triangles, dtype=np.float64).reshape(-1, 3, 3)
    colors = np.asarray(colors, dtype=np.float64)
    if len(tri) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.uint8)
    if spacing <= 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    keep = area > 0
    tri, area, colors = tri[keep], area[keep], colors[keep]
    if len(tri) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    wanted = area / spacing**2
    total = wanted.sum()
    if total + len(tri) > max_points:
        wanted *= max(max_points - len(tri), 0) / max(total, 1e-12)
    counts = np.floor(wanted).astype(np.int64)
    counts += rng.random(len(tri)) < (wanted - counts)
    index = np.repeat(np.arange(len(tri)), counts)
    u, v = rng.random(len(index)), rng.random(len(index))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    bary = np.stack([1 - u - v, u, v], axis=1)
    # Centroids first, then the random samples.
    index = np.concatenate([np.arange(len(tri)), index])
    bary = np.concatenate([np.full((len(tri), 3), 1.0 / 3.0), bary])
    xyz = np.einsum("nk,nkc->nc", bary, tri[index])
    if colors.ndim == 3:
        rgb = np.einsum("nk,nkc->nc", bary, colors[index])
    else:
        rgb = colors[index]
    return xyz, np.clip(np.round(rgb), 0, 255).astype(np.uint8)


# --- upload encodings ------------------------------------------------------------------------
def encode_png(rgb) -> bytes:
    """An 8-bit RGB (or RGBA / grey) PNG of a uint8 array [H, W, C] or [H, W], top row first."""
    image = np.asarray(rgb)
    if image.dtype != np.uint8:
        raise ValueError(f"encode_png takes uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    height, width, channels = image.shape
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    raw = np.zeros((height, width * channels + 1), dtype=np.uint8)  # filter byte 0 per row
    raw[:, 1:] = image.reshape(height, width * channels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b"")


def encode_npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


# --- job results ---------------------------------------------------------------------------
def clip_span(job: dict) -> tuple[int, int, list[str]]:
    """(first trajectory frame of the video file, its frame count, the frame files that are new).

    The video may hold the world's whole video or only this job's frames [first, end); the
    length of the frame list tells which."""
    result = job.get("result") or {}
    files = result.get("files") or {}
    frames = list(files.get("frames") or [])
    first, end = (int(v) for v in result.get("frames", [0, len(frames)]))
    count = len(frames) if frames else end - first
    video_start = end - count
    new = frames[max(first - video_start, 0):]
    return video_start, count, new


# --- coverage --------------------------------------------------------------------------------
def coverage_summary(frames, coverage, threshold: float = 0.5) -> dict:
    """Mean and minimum coverage and the frames where less than `threshold` of the view is known."""
    frames = np.asarray(frames, dtype=np.int64)
    coverage = np.asarray(coverage, dtype=np.float64)
    if len(frames) != len(coverage):
        raise ValueError(f"{len(coverage)} coverage values for {len(frames)} frames")
    if not len(frames):
        return {"mean": 0.0, "min": 0.0, "min_frame": None, "low_frames": []}
    worst = int(np.argmin(coverage))
    return {"mean": float(coverage.mean()), "min": float(coverage[worst]), "min_frame": int(frames[worst]),
            "low_frames": frames[coverage < threshold].tolist()}


COVERAGE_LOW = np.array([0.85, 0.22, 0.16, 0.85], np.float32)  # nothing known: the model must invent
COVERAGE_HIGH = np.array([0.25, 0.72, 0.35, 0.55], np.float32)  # all known: the memory steers the frame


def coverage_bars(frames, coverage, *, frame_to_x: tuple[float, float], bottom: float, height: float):
    """A bar per frame for the timeline overlay: vertices [4F, 2] in region pixels, RGBA
    colours [4F, 4] (red where little is known, green where the memory covers the view) and
    triangle indices [2F, 3]. `frame_to_x` is the (scale, offset) of the view's frame axis."""
    frames = np.asarray(frames, dtype=np.float32)
    coverage = np.clip(np.nan_to_num(np.asarray(coverage, dtype=np.float32)), 0.0, 1.0)
    if frames.shape != coverage.shape or frames.ndim != 1:
        raise ValueError(f"{len(coverage)} coverage values for {len(frames)} frames")
    scale, offset = frame_to_x
    left, right = (frames - 0.45) * scale + offset, (frames + 0.45) * scale + offset
    top = bottom + height * np.maximum(coverage, 0.04)  # an empty frame still shows as a red sliver
    verts = np.stack([np.stack([left, np.full_like(left, bottom)], 1), np.stack([right, np.full_like(left, bottom)], 1),
                      np.stack([right, top], 1), np.stack([left, top], 1)], axis=1).reshape(-1, 2)
    colours = np.repeat(COVERAGE_LOW + coverage[:, None] * (COVERAGE_HIGH - COVERAGE_LOW), 4, axis=0)
    base = np.arange(len(frames), dtype=np.int32)[:, None] * 4
    indices = (base[:, None, :] + np.array([[0, 1, 2], [0, 2, 3]], np.int32)[None]).reshape(-1, 3)
    return verts, colours, indices


ENTRY_PALETTE = np.array([[1.0, 0.62, 0.1, 1.0], [0.25, 0.75, 1.0, 1.0], [0.95, 0.35, 0.85, 1.0],
                          [1.0, 0.92, 0.2, 1.0], [0.45, 1.0, 0.55, 1.0], [0.7, 0.55, 1.0, 1.0]], np.float32)


def object_colour(object_id: int) -> np.ndarray:
    """The RGBA an object's marks are drawn in: the same for one id every time."""
    return ENTRY_PALETTE[int(object_id) % len(ENTRY_PALETTE)]


def entry_marks(frames, object_ids, *, frame_to_x: tuple[float, float], bottom: float, size: float):
    """A downward triangle per expected re-entry of a remembered object (like a marker pointing
    at the frame): vertices [3M, 2] with the tip at (frame x, bottom), RGBA colours [3M, 4] in
    the object's colour and triangle indices [M, 3]."""
    frames = np.asarray(frames, dtype=np.float32).reshape(-1)
    ids = np.asarray(object_ids, dtype=np.int64).reshape(-1)
    if frames.shape != ids.shape:
        raise ValueError(f"{len(ids)} object ids for {len(frames)} re-entry frames")
    scale, offset = frame_to_x
    x = frames * scale + offset
    half = size * 0.5
    verts = np.stack([np.stack([x, np.full_like(x, bottom)], 1), np.stack([x + half, np.full_like(x, bottom + size)], 1),
                      np.stack([x - half, np.full_like(x, bottom + size)], 1)], axis=1).reshape(-1, 2)
    colours = np.repeat(ENTRY_PALETTE[ids % len(ENTRY_PALETTE)], 3, axis=0)
    indices = np.arange(len(frames) * 3, dtype=np.int32).reshape(-1, 3)
    return verts, colours, indices


def label_fits(xs, widths, gap: float = 4.0) -> np.ndarray:
    """Which labels (starting at `xs`, `widths` wide) to draw, left to right, so none overlaps
    the one drawn before it."""
    xs, widths = np.asarray(xs, dtype=np.float64), np.asarray(widths, dtype=np.float64)
    keep = np.zeros(len(xs), dtype=bool)
    end = -np.inf
    for i in np.argsort(xs, kind="stable"):
        if xs[i] >= end + gap:
            keep[i] = True
            end = xs[i] + widths[i]
    return keep
