"""The first memory of a world: from one view with known depth (a Blender render), from one image
through a depth model, or from points the user already has. The user's own inputs outrank
everything generated later."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.errors import WorldError
from spatia.engine.memory import RANK_USER, SpatialMemory, import_ply, load_snapshot
from spatia.engine.models.base import DepthEstimator
from spatia.engine.update import UpdateSettings, update_memory
from spatia.formats.atomic import write_json


def memory_from_rgbd(rgb: np.ndarray, depth: np.ndarray, camera: Cameras, voxel_size: float, size: tuple[int, int],
                     *, dynamic=None) -> SpatialMemory:
    """One view with known depth (size = (width, height)), as the user's points."""
    width, height = size
    if (camera.width, camera.height) != (width, height) or len(camera) != 1:
        raise WorldError(f"the first view must be one camera of {width}x{height}")
    rgb = np.asarray(rgb)
    if rgb.shape != (height, width, 3) or rgb.dtype != np.uint8:
        raise WorldError(f"image must be uint8 [{height}, {width}, 3], got {rgb.dtype} {list(rgb.shape)}")
    dyn = None if dynamic is None else np.asarray(dynamic, dtype=bool)[None]
    memory, _, _ = update_memory(
        SpatialMemory.empty(voxel_size), rgb[None], np.asarray(depth, dtype=np.float32)[None], camera, [0],
        dynamic=dyn, rank=RANK_USER, settings=UpdateSettings(align=False, max_points=None),
    )
    return memory


def estimate_view(image: np.ndarray, depth_estimator: DepthEstimator, size: tuple[int, int], *, intrinsics=None,
                  w2c=None) -> tuple[np.ndarray, Cameras]:
    """Depth and camera of one image from a depth model; given intrinsics override its estimate."""
    image = np.asarray(image)
    given = None if intrinsics is None else np.asarray(intrinsics, dtype=np.float64).reshape(1, 4)
    result = depth_estimator.estimate(image[None], given)
    camera = Cameras(result.intrinsics[0] if given is None else given[0], np.eye(4) if w2c is None else w2c, *size)
    return result.depth[0], camera


def memory_from_points(path, voxel_size: float) -> SpatialMemory:
    """A point cloud: a PLY file or a memory snapshot (.safetensors)."""
    path = Path(path)
    if path.suffix.lower() == ".ply":
        return import_ply(path, voxel_size=voxel_size)
    if path.suffix.lower() == ".safetensors":
        return load_snapshot(path)[0]
    raise WorldError(f"{path}: expected a .ply or .safetensors point cloud")


def write_first_camera(path: Path, camera: Cameras, fps: float) -> None:
    write_json(path, {"width": camera.width, "height": camera.height, "fps": fps,
                      "intrinsics": camera.intrinsics.tolist(), "w2c": camera.w2c.tolist()})


def read_first_camera(path: Path) -> Cameras | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return Cameras(data["intrinsics"], data["w2c"], data["width"], data["height"])
