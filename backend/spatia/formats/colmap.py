"""COLMAP text models: cameras.txt, images.txt, points3D.txt.

Poses: images.txt holds QW QX QY QZ TX TY TZ, the world-to-camera rotation (as a unit
quaternion) and translation in COLMAP's camera frame, which is OpenCV's (x right, y down,
z forward). So a line is exactly our `w2c`.

Pixels: COLMAP uses continuous image coordinates whose origin is the top-left corner of
the top-left pixel, so that pixel's centre is (0.5, 0.5): the same convention as ours.
pycolmap confirms it: `Camera.create_from_model_id(..., width=65, height=47)` puts the
default principal point at (32.5, 23.5) = (W/2, H/2), and `Camera.img_from_cam` is
`fx * x / z + cx` with no half-pixel offset. Intrinsics therefore pass through unchanged
(tests/cameras/test_colmap.py checks both).

We write PINHOLE cameras and read PINHOLE, SIMPLE_PINHOLE, and SIMPLE_RADIAL, RADIAL or
OPENCV when every distortion coefficient is exactly zero. Frames are returned in image-id
order (our writer numbers images 1..F in frame order, so a round trip keeps the order).
COLMAP 3.12+ also writes rigs.txt and frames.txt; we neither write nor need them, since
images.txt holds every image's composed camera-from-world pose and COLMAP reads a model
without them as one trivial rig per camera.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.spatial.transform import Rotation

from spatia.cameras.core import CameraError, Cameras
from spatia.formats.atomic import write_atomic

# model name -> (parameter names, index of fx, fy, cx, cy within them, first distortion index)
CAMERA_MODELS: dict[str, tuple[tuple[str, ...], tuple[int, int, int, int], int]] = {
    "SIMPLE_PINHOLE": (("f", "cx", "cy"), (0, 0, 1, 2), 3),
    "PINHOLE": (("fx", "fy", "cx", "cy"), (0, 1, 2, 3), 4),
    "SIMPLE_RADIAL": (("f", "cx", "cy", "k"), (0, 0, 1, 2), 3),
    "RADIAL": (("f", "cx", "cy", "k1", "k2"), (0, 0, 1, 2), 3),
    "OPENCV": (("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"), (0, 1, 2, 3), 4),
}


class ColmapFormatError(CameraError):
    """A COLMAP text model is malformed or unsupported; the message names the file and line."""


class ColmapModel(NamedTuple):
    cameras: Cameras
    image_names: list[str]
    points: np.ndarray  # float64 [N, 3]
    colors: np.ndarray  # uint8 [N, 3]


# --- writing ---------------------------------------------------------------------------------
def _quaternions_wxyz(rotations: np.ndarray) -> np.ndarray:
    """[F, 3, 3] rotations -> [F, 4] unit quaternions (w, x, y, z) with w >= 0."""
    xyzw = Rotation.from_matrix(rotations).as_quat()
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    return wxyz * np.where(wxyz[:, :1] < 0, -1.0, 1.0)


def _fmt(values) -> str:
    return " ".join(repr(float(v)) for v in values)


def _check_points(points, colors) -> tuple[np.ndarray, np.ndarray]:
    xyz = np.asarray(points, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ColmapFormatError(f"points must be [N, 3], got {list(xyz.shape)}")
    if not np.isfinite(xyz).all():
        raise ColmapFormatError(f"points: point {int(np.argmax(~np.isfinite(xyz).all(axis=1)))} is not finite")
    if colors is None:
        return xyz, np.full((len(xyz), 3), 128, dtype=np.uint8)
    rgb = np.asarray(colors)
    if rgb.shape != xyz.shape:
        raise ColmapFormatError(f"colors must be [{len(xyz)}, 3] like points, got {list(rgb.shape)}")
    if rgb.dtype != np.uint8 and (not np.issubdtype(rgb.dtype, np.integer) or rgb.min(initial=0) < 0 or rgb.max(initial=0) > 255):
        raise ColmapFormatError(f"colors must be uint8 or integers in 0..255, got {rgb.dtype}")
    return xyz, rgb.astype(np.uint8)


def write_colmap_text(
    folder: str | os.PathLike,
    cameras: Cameras,
    image_names: list[str] | None = None,
    points=None,
    colors=None,
) -> Path:
    """Write cameras.txt, images.txt and points3D.txt into `folder` (created if needed).

    Frames that share intrinsics share one PINHOLE camera. Image names default to
    `frame_00000.png`, ... ; points3D.txt is empty unless `points` [N, 3] are given
    (`colors` [N, 3] uint8, grey if omitted); points get no track.
    """
    folder = Path(folder)
    names = [f"frame_{i:05d}.png" for i in range(len(cameras))] if image_names is None else list(image_names)
    if len(names) != len(cameras):
        raise ColmapFormatError(f"{len(names)} image names for {len(cameras)} cameras")
    bad = next((n for n in names if not n or any(c.isspace() for c in n)), None)
    if bad is not None:
        raise ColmapFormatError(f"image name {bad!r} is empty or contains whitespace, which COLMAP text cannot hold")
    if len(set(names)) != len(names):
        raise ColmapFormatError("image names must be unique")
    xyz, rgb = _check_points(points, colors) if points is not None else (np.zeros((0, 3)), np.zeros((0, 3), np.uint8))

    unique_k, first_index, camera_index = np.unique(cameras.intrinsics, axis=0, return_index=True, return_inverse=True)
    camera_index = camera_index.reshape(-1)
    order = np.argsort(first_index)  # camera ids in order of first use
    camera_id = np.empty(len(order), dtype=int)
    camera_id[order] = np.arange(1, len(order) + 1)
    camera_lines = [
        f"{i + 1} PINHOLE {cameras.width} {cameras.height} {_fmt(unique_k[k])}\n" for i, k in enumerate(order)
    ]
    quats = _quaternions_wxyz(cameras.w2c[:, :3, :3])
    image_lines = [
        f"{i + 1} {_fmt(quats[i])} {_fmt(cameras.w2c[i, :3, 3])} {camera_id[camera_index[i]]} {name}\n\n"
        for i, name in enumerate(names)
    ]
    point_lines = [f"{i + 1} {_fmt(p)} {c[0]} {c[1]} {c[2]} -1\n" for i, (p, c) in enumerate(zip(xyz, rgb))]

    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(
        folder / "cameras.txt",
        "# Camera list with one line of data per camera:\n"
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"# Number of cameras: {len(camera_lines)}\n" + "".join(camera_lines),
    )
    write_atomic(
        folder / "images.txt",
        "# Image list with two lines of data per image:\n"
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
        "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
        f"# Number of images: {len(image_lines)}\n" + "".join(image_lines),
    )
    write_atomic(
        folder / "points3D.txt",
        "# 3D point list with one line of data per point:\n"
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
        f"# Number of points: {len(point_lines)}\n" + "".join(point_lines),
    )
    return folder


# --- reading ---------------------------------------------------------------------------------
def _data_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of every line, comments and blanks included."""
    return [(n, line.strip()) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)]


def _numbers(tokens: list[str], where: str, kind=float) -> list:
    try:
        return [kind(t) for t in tokens]
    except ValueError as exc:
        raise ColmapFormatError(f"{where}: not a number ({exc})") from None


def _read_cameras_txt(path: Path) -> dict[int, tuple[int, int, np.ndarray]]:
    """camera id -> (width, height, [fx, fy, cx, cy])."""
    cameras = {}
    for n, line in _data_lines(path):
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{n}"
        tokens = line.split()
        if len(tokens) < 4:
            raise ColmapFormatError(f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS..., got {line!r}")
        camera_id, width, height = _numbers([tokens[0], tokens[2], tokens[3]], where, int)
        model = tokens[1]
        if model not in CAMERA_MODELS:
            raise ColmapFormatError(
                f"{where}: camera model {model} is not supported (supported: {', '.join(CAMERA_MODELS)}); "
                "undistort the images first (colmap image_undistorter)"
            )
        param_names, k_index, first_distortion = CAMERA_MODELS[model]
        params = np.array(_numbers(tokens[4:], where), dtype=np.float64)
        if len(params) != len(param_names):
            raise ColmapFormatError(f"{where}: {model} takes {len(param_names)} parameters ({' '.join(param_names)}), got {len(params)}")
        if not np.isfinite(params).all():
            raise ColmapFormatError(f"{where}: non-finite camera parameter in {line!r}")
        distortion = params[first_distortion:]
        if np.any(distortion != 0):
            named = ", ".join(f"{k}={v}" for k, v in zip(param_names[first_distortion:], distortion))
            raise ColmapFormatError(f"{where}: {model} camera has non-zero distortion ({named}); only undistorted pinhole cameras are supported")
        if camera_id in cameras:
            raise ColmapFormatError(f"{where}: duplicate camera id {camera_id}")
        cameras[camera_id] = (width, height, params[list(k_index)])
    return cameras


def _read_images_txt(path: Path) -> list[tuple[int, np.ndarray, int, str, str]]:
    """[(image id, 4x4 w2c, camera id, name, where)] in file order."""
    images = []
    lines = iter(_data_lines(path))
    for n, line in lines:
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{n}"
        tokens = line.split()
        if len(tokens) != 10:
            raise ColmapFormatError(f"{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {len(tokens)} fields")
        image_id, camera_id = _numbers([tokens[0], tokens[8]], where, int)
        qt = np.array(_numbers(tokens[1:8], where), dtype=np.float64)
        if not np.isfinite(qt).all():
            raise ColmapFormatError(f"{where}: non-finite pose in {line!r}")
        norm = np.linalg.norm(qt[:4])
        if abs(norm - 1.0) > 1e-3:
            raise ColmapFormatError(f"{where}: quaternion (QW QX QY QZ) has norm {norm:.6f}, expected 1")
        w2c = np.eye(4)
        w2c[:3, :3] = Rotation.from_quat(np.r_[qt[1:4], qt[0]]).as_matrix()
        w2c[:3, 3] = qt[4:]
        images.append((image_id, w2c, camera_id, tokens[9], where))
        next(lines, None)  # the POINTS2D line, which may be empty
    return images


def _read_points_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows: list[tuple[int, list[float], list[int]]] = []
    if path.is_file():
        for n, line in _data_lines(path):
            if not line or line.startswith("#"):
                continue
            where = f"{path}:{n}"
            tokens = line.split()
            if len(tokens) < 8 or (len(tokens) - 8) % 2:
                raise ColmapFormatError(f"{where}: expected POINT3D_ID X Y Z R G B ERROR TRACK[], got {line[:80]!r}")
            xyz = _numbers(tokens[1:4], where)
            rgb = _numbers(tokens[4:7], where, int)
            if not np.isfinite(xyz).all() or min(rgb) < 0 or max(rgb) > 255:
                raise ColmapFormatError(f"{where}: non-finite position or colour outside 0..255 in {line[:80]!r}")
            rows.append((int(tokens[0]), xyz, rgb))
    rows.sort(key=lambda row: row[0])
    points = np.array([r[1] for r in rows], dtype=np.float64).reshape(-1, 3)
    colors = np.array([r[2] for r in rows], dtype=np.uint8).reshape(-1, 3)
    return points, colors


def read_colmap_text(folder: str | os.PathLike) -> ColmapModel:
    """Read a COLMAP text model; frames come in image-id order.

    All images must share one image size. points3D.txt may be absent or empty.
    """
    folder = Path(folder)
    for name in ("cameras.txt", "images.txt"):
        if not (folder / name).is_file():
            raise ColmapFormatError(f"{folder / name}: missing (a COLMAP text model needs cameras.txt and images.txt)")
    camera_table = _read_cameras_txt(folder / "cameras.txt")
    images = sorted(_read_images_txt(folder / "images.txt"), key=lambda image: image[0])
    if not images:
        raise ColmapFormatError(f"{folder / 'images.txt'}: no images")
    ids = [image[0] for image in images]
    if len(set(ids)) != len(ids):
        raise ColmapFormatError(f"{folder / 'images.txt'}: duplicate image ids")

    intrinsics, sizes = [], set()
    for _, _, camera_id, _, where in images:
        if camera_id not in camera_table:
            raise ColmapFormatError(f"{where}: camera id {camera_id} is not in cameras.txt")
        width, height, k = camera_table[camera_id]
        sizes.add((width, height))
        intrinsics.append(k)
    if len(sizes) > 1:
        raise ColmapFormatError(f"{folder}: images have different sizes {sorted(sizes)}; resize or split the model")
    width, height = sizes.pop()
    try:
        cameras = Cameras(np.stack(intrinsics), np.stack([image[1] for image in images]), width, height)
    except CameraError as exc:
        raise ColmapFormatError(f"{folder}: {exc} (frames counted from 0 in image-id order)") from None
    points, colors = _read_points_txt(folder / "points3D.txt")
    return ColmapModel(cameras, [image[3] for image in images], points, colors)
