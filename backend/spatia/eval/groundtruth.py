"""Ground truth from Blender: each evaluation scene rendered with Cycles along its closed-loop
camera path, colour plus exact z-depth plus the cameras, cached on disk.

The cache key holds the scene, the frame count, the size, the samples and a hash of the source
of the modules that build scenes and paths, so editing a scene re-renders it and nothing else
does.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatia.cameras import Cameras, Trajectory
from spatia.metrics import voxel_downsample

from . import scenes, trajectories

CACHE_ENV = "SPATIA_EVAL_CACHE"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class EvalScene:
    name: str
    build: Callable  # (width, height) -> DemoScene
    path: Callable  # frame_count -> list of Blender matrix_world
    prompt: str
    description: str


SCENES: dict[str, EvalScene] = {
    s.name: s
    for s in (
        EvalScene("room", scenes.build_room, trajectories.room_look_away_and_back,
                  "a sunlit room with a checkered floor, a table, a cabinet and a red and white ball",
                  "textured room open to the sky; the camera looks away and back"),
        EvalScene("street", scenes.build_street, trajectories.street_out_and_back,
                  "a quiet street of similar houses with lamp posts",
                  "road between rows of look-alike houses; the camera walks out, U-turns and walks back"),
        EvalScene("terrain", scenes.build_terrain, trajectories.terrain_orbit,
                  "rolling grassy hills with rocks and trees",
                  "noise-textured height field with rocks and trees; the camera orbits the centre"),
    )
}


def get_scene(name: str) -> EvalScene:
    try:
        return SCENES[name]
    except KeyError:
        raise ValueError(f"unknown evaluation scene {name!r}; known: {', '.join(SCENES)}") from None


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """rgb uint8 [F,H,W,3], depth float32 [F,H,W] metres (0 = sky), the cameras, fps."""

    scene: str
    rgb: np.ndarray
    depth: np.ndarray
    cameras: Cameras
    fps: float
    samples: int

    def __len__(self) -> int:
        return len(self.rgb)

    @property
    def trajectory(self) -> Trajectory:
        return Trajectory(self.cameras, fps=self.fps)

    def points(self, frames, voxel: float | None = None) -> np.ndarray:
        """World points [N,3] of every surface pixel of `frames`, one per `voxel` when given."""
        frames = np.asarray(list(frames), dtype=np.int64)
        xyz = self.cameras[frames].unproject(self.depth[frames])
        xyz = xyz[self.depth[frames] > 0]
        return voxel_downsample(xyz, voxel) if voxel else xyz


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "spatia" / "eval")


def _source_hash() -> str:
    from spatia import demo_scene

    h = hashlib.sha256(f"format {CACHE_FORMAT}".encode())
    for module in (demo_scene, scenes, trajectories):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:12]


def cache_path(cache_dir, scene: str, frames: int, width: int, height: int, samples: int) -> Path:
    return Path(cache_dir) / f"{scene}-f{frames}-{width}x{height}-s{samples}-{_source_hash()}.npz"


def _render(spec: EvalScene, frames: int, width: int, height: int, samples: int, progress: bool):
    from tqdm import tqdm

    from spatia.demo_scene import keyframe_camera
    from spatia_blender.camera_export import export_camera
    from spatia_blender.render_rgbd import render_rgbd

    built = spec.build(width, height)
    scene, camera = built.scene, built.camera
    keyframe_camera(scene, camera, spec.path(frames))
    rgb, depth = [], []
    for f in tqdm(range(scene.frame_start, scene.frame_end + 1), desc=f"rendering {spec.name}", unit="frame",
                  disable=not progress, leave=False):
        scene.frame_set(f)
        r = render_rgbd(scene, camera, samples=samples)
        rgb.append(r["rgb"])
        depth.append(r["depth"])
    exported = export_camera(scene, camera)
    return np.stack(rgb), np.stack(depth), exported


def render_ground_truth(scene: str, frames: int, width: int, height: int, *, samples: int = 16,
                        cache_dir=None, progress: bool = True) -> GroundTruth:
    """Cycles renders + exact depth of `scene` along its path of `frames` frames (cached)."""
    spec = get_scene(scene)
    if frames < 3:
        raise ValueError(f"need at least 3 frames for a closed loop, got {frames}")
    if width < 16 or height < 16:
        raise ValueError(f"size must be at least 16x16, got {width}x{height}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    path = cache_path(cache_dir or default_cache_dir(), scene, frames, width, height, samples)
    if path.exists():
        with np.load(path) as data:
            cams = Cameras(data["intrinsics"], data["w2c"], width, height)
            return GroundTruth(scene, data["rgb"], data["depth"], cams, float(data["fps"]), samples)
    try:
        import bpy  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("rendering the ground truth needs the bpy module (pip install bpy==5.0.1)") from exc
    rgb, depth, exported = _render(spec, frames, width, height, samples, progress)
    if (exported["width"], exported["height"]) != (width, height):
        raise RuntimeError(f"Blender rendered {exported['width']}x{exported['height']}, expected {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, rgb=rgb, depth=depth, intrinsics=exported["intrinsics"], w2c=exported["w2c"],
                        fps=exported["fps"])
    os.replace(tmp, path)  # whole or absent, even if two runs render the same scene at once
    cams = Cameras(exported["intrinsics"], exported["w2c"], width, height)
    return GroundTruth(scene, rgb, depth, cams, float(exported["fps"]), samples)
