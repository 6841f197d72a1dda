"""nerfstudio `transforms.json`: shared intrinsics at the top level, one pose per frame.

Top level: `camera_model`, `fl_x`, `fl_y`, `cx`, `cy` (pixels), `w`, `h`. A frame may
override any of `fl_x`, `fl_y`, `cx`, `cy`; we write overrides only for frames whose
intrinsics differ from the first frame's. `frames[i].transform_matrix` is camera-to-world
in the OpenGL/Blender camera convention (x right, y up, z back), i.e.
c2w_opencv @ diag(1, -1, -1, 1). nerfstudio samples pixel centres at i + 0.5, so its
principal point uses our pixel convention unchanged. Frames keep their order in the file.
Reading also accepts `camera_angle_x` when `fl_x` is absent, takes fl_y = fl_x when
`fl_y` is absent, and centres the principal point when `cx`/`cy` are absent.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from spatia_geometry.camera_math import BLENDER_TO_OPENCV_AXES

from spatia.cameras.core import CameraError, Cameras
from spatia.formats.atomic import write_atomic

TRANSFORMS_NAME = "transforms.json"
INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
PERSPECTIVE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")


class NerfstudioFormatError(CameraError):
    """A transforms.json is malformed or unsupported; the message names the file and field."""


class NerfstudioTransforms(NamedTuple):
    cameras: Cameras
    file_paths: list[str]


def _transforms_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / TRANSFORMS_NAME if path.is_dir() or not path.suffix else path


def write_nerfstudio(
    path: str | os.PathLike,
    cameras: Cameras,
    file_paths: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a transforms.json (`path` is the file, or a folder to hold transforms.json).

    File paths default to `images/frame_00001.png`, ... (nerfstudio numbers from 1).
    `extra` top-level keys (e.g. `ply_file_path`) are written as given.
    """
    target = _transforms_path(path)
    paths = [f"images/frame_{i + 1:05d}.png" for i in range(len(cameras))] if file_paths is None else list(file_paths)
    if len(paths) != len(cameras):
        raise NerfstudioFormatError(f"{len(paths)} file paths for {len(cameras)} cameras")
    clashes = sorted(set(extra or {}) & {"camera_model", "w", "h", "frames", *INTRINSIC_KEYS})
    if clashes:
        raise NerfstudioFormatError(f"extra keys {clashes} would overwrite the cameras; drop them")
    c2w_gl = cameras.c2w @ BLENDER_TO_OPENCV_AXES
    k = cameras.intrinsics
    doc: dict[str, Any] = {
        "camera_model": "OPENCV",
        **dict(zip(INTRINSIC_KEYS, map(float, k[0]))),
        "w": cameras.width,
        "h": cameras.height,
        **(extra or {}),
        "frames": [],
    }
    for i, file_path in enumerate(paths):
        frame: dict[str, Any] = {"file_path": file_path, "transform_matrix": c2w_gl[i].tolist()}
        if not np.array_equal(k[i], k[0]):
            frame.update(zip(INTRINSIC_KEYS, map(float, k[i])))
        doc["frames"].append(frame)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return target


def _number(container: dict, key: str, where: str) -> float:
    value = container[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NerfstudioFormatError(f"{where}: `{key}` must be a finite number, got {value!r}")
    return float(value)


def _frame_intrinsics(doc: dict, frame: dict, width: int, height: int, where: str) -> list[float]:
    """fx, fy, cx, cy: the frame's value, else the top level's, else a documented default."""

    def lookup(key: str) -> float | None:
        if key in frame:
            return _number(frame, key, where)
        return _number(doc, key, "top level") if key in doc else None

    fx = lookup("fl_x")
    if fx is None and "camera_angle_x" in doc:
        fx = 0.5 * width / math.tan(0.5 * _number(doc, "camera_angle_x", "top level"))
    if fx is None:
        raise NerfstudioFormatError(f"{where}: no `fl_x` in the frame or at the top level (nor `camera_angle_x`)")
    fy = lookup("fl_y")
    cx, cy = lookup("cx"), lookup("cy")
    return [fx, fx if fy is None else fy, width / 2 if cx is None else cx, height / 2 if cy is None else cy]


def read_nerfstudio(path: str | os.PathLike) -> NerfstudioTransforms:
    """Read a transforms.json (`path` is the file or its folder) into OpenCV cameras."""
    source = _transforms_path(path)
    if not source.is_file():
        raise NerfstudioFormatError(f"{source}: missing")
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise NerfstudioFormatError(f"{source}:{exc.lineno}:{exc.colno}: malformed JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list) or not doc["frames"]:
        raise NerfstudioFormatError(f"{source}: expected an object with a non-empty `frames` list")
    model = doc.get("camera_model", "OPENCV")
    if model not in PERSPECTIVE_MODELS:
        raise NerfstudioFormatError(f"{source}: camera_model {model!r} is not supported (supported: {', '.join(PERSPECTIVE_MODELS)})")
    for key in ("w", "h"):
        if key not in doc:
            raise NerfstudioFormatError(f"{source}: top level needs `{key}` (image size in pixels)")
        if not isinstance(doc[key], int) or isinstance(doc[key], bool):
            raise NerfstudioFormatError(f"{source}: `{key}` must be an integer, got {doc[key]!r}")
    width, height = doc["w"], doc["h"]

    intrinsics, poses, file_paths = [], [], []
    for i, frame in enumerate(doc["frames"]):
        where = f"{source}: frames[{i}]"
        if not isinstance(frame, dict) or "transform_matrix" not in frame or "file_path" not in frame:
            raise NerfstudioFormatError(f"{where}: needs `file_path` and `transform_matrix`")
        for key in ("w", "h"):
            if key in frame and frame[key] != doc[key]:
                raise NerfstudioFormatError(f"{where}: `{key}` = {frame[key]} differs from the top level ({doc[key]}); all frames must share one size")
        for key in DISTORTION_KEYS:
            if key in frame or key in doc:
                value = _number(frame, key, where) if key in frame else _number(doc, key, "top level")
                if value != 0:
                    raise NerfstudioFormatError(f"{where}: distortion `{key}` = {value} is not supported; undistort the images first")
        try:
            matrix = np.array(frame["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise NerfstudioFormatError(f"{where}: `transform_matrix` must be a 4x4 list of numbers") from None
        if matrix.shape != (4, 4):
            raise NerfstudioFormatError(f"{where}: `transform_matrix` must be 4x4, got shape {list(matrix.shape)}")
        if not np.isfinite(matrix).all():
            raise NerfstudioFormatError(f"{where}: `transform_matrix` has non-finite values")
        intrinsics.append(_frame_intrinsics(doc, frame, width, height, where))
        poses.append(matrix @ BLENDER_TO_OPENCV_AXES)
        file_paths.append(str(frame["file_path"]))
    try:
        cameras = Cameras.from_c2w(np.array(intrinsics), np.stack(poses), width, height)
    except CameraError as exc:
        raise NerfstudioFormatError(f"{source}: {exc} (frame i is frames[i])") from None
    return NerfstudioTransforms(cameras, file_paths)
