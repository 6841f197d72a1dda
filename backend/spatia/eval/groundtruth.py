"""Ground truth from Blender: each evaluation scene rendered with Cycles along its camera path
(a closed loop for the static scenes), colour plus exact z-depth plus the cameras plus an int32
instance map (each pixel's moving object, 0 = static) and every moving object's pose and label
per frame, cached on disk.

The cache key holds the scene, the frame count, the size, the samples and a hash of the source
of the modules that build scenes and paths, so editing a scene re-renders it and nothing else
does.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatia.cameras import Cameras, Trajectory

from . import moving, scenarios, scenes, trajectories

CACHE_ENV = "SPATIA_EVAL_CACHE"
CACHE_FORMAT = 2  # 2: instance maps and moving objects' poses


@dataclass(frozen=True)
class EvalScene:
    name: str
    build: Callable  # (width, height) -> DemoScene
    path: Callable  # frame_count -> list of Blender matrix_world
    prompt: str
    description: str
    animate: Callable | None = None  # (bpy scene, frame_count) -> None: keys the moving objects
    frames: int | None = None  # its own length (the generated scenarios), else the run's --frames
    rounds: int | None = None  # its own number of rounds, else the run's --rounds

    @property
    def has_objects(self) -> bool:
        return self.animate is not None


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
        EvalScene("car-behind-building", moving.build_car_behind_building, moving.car_gentle_pan,
                  "a red and yellow car drives along a street behind a brick building",
                  "a car drives across the view, behind a building and out the other side; the camera pans gently",
                  moving.animate_car_behind_building),
        EvalScene("person-pan", moving.build_person_pan, moving.pan_away_and_back,
                  "a person in a red shirt walks across a paved plaza",
                  "a person walks across a plaza while the camera pans away to the right and back",
                  moving.animate_person_pan),
        EvalScene("crossing", moving.build_crossing, moving.pan_away_and_back,
                  "two people in similar red shirts walk past each other on a paved plaza",
                  "two look-alike figures (shirts of slightly different colour) cross while the camera looks away",
                  moving.animate_crossing),
    )
}
STATIC_SCENES = [name for name, s in SCENES.items() if not s.has_objects]
OBJECT_SCENES = [name for name, s in SCENES.items() if s.has_objects]
SCENARIO_SCENES = [s.name for s in scenarios.eval_scenes_spec()]  # the seeded scenarios (scenarios.py)
for _s in scenarios.eval_scenes(EvalScene):
    SCENES[_s.name] = _s


def use_scenario_seed(seed: int) -> None:
    """Make the scenario scenes (scenario-00, ...) those of another `seed` of
    `scenarios.make_scenarios`: scenarios nobody has looked at. Their renders are cached apart
    (`scenario_cache_dir`), since a scenario's cache name does not hold its seed."""
    for s in scenarios.eval_scenes(EvalScene, seed=seed):
        SCENES[s.name] = s


def scenario_cache_dir(cache_dir, seed: int) -> Path:
    """Where the renders of the scenarios of `seed` are cached (the default seed's: `cache_dir`)."""
    cache_dir = Path(cache_dir or default_cache_dir())
    return cache_dir if seed == scenarios.DEFAULT_SEED else cache_dir / f"scenarios-seed-{seed}"


def get_scene(name: str) -> EvalScene:
    try:
        return SCENES[name]
    except KeyError:
        raise ValueError(f"unknown evaluation scene {name!r}; known: {', '.join(SCENES)}") from None


@dataclass(frozen=True, eq=False)
class TruthObject:
    """A moving object of the ground truth: its label and its pose at every frame (the Blender
    object's matrix_world: position [F,3] metres and heading [F] radians about +Z)."""

    label: str
    position: np.ndarray
    heading: np.ndarray


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """rgb uint8 [F,H,W,3], depth float32 [F,H,W] metres (0 = sky), the cameras, fps;
    instances int32 [F,H,W] (0 = static, k = the moving object `objects[k]`)."""

    scene: str
    rgb: np.ndarray
    depth: np.ndarray
    cameras: Cameras
    fps: float
    samples: int
    instances: np.ndarray | None = None
    objects: dict = field(default_factory=dict)  # instance id -> TruthObject

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
        from spatia.engine.metrics import voxel_downsample  # here: `spatia eval --help` loads no engine

        return voxel_downsample(xyz, voxel) if voxel else xyz


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "spatia" / "eval")


def _source_hash() -> str:
    from spatia.demo import scene as demo_scene

    h = hashlib.sha256(f"format {CACHE_FORMAT}".encode())
    for module in (demo_scene, scenes, trajectories, moving, scenarios):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:12]


def cache_path(cache_dir, scene: str, frames: int, width: int, height: int, samples: int) -> Path:
    return Path(cache_dir) / f"{scene}-f{frames}-{width}x{height}-s{samples}-{_source_hash()}.npz"


def _render(spec: EvalScene, frames: int, width: int, height: int, samples: int, progress: bool):
    from tqdm import tqdm

    from spatia.demo.scene import keyframe_camera
    from spatia_blender.camera_export import export_camera
    from spatia_blender.render_rgbd import render_rgbd

    built = spec.build(width, height)
    scene, camera = built.scene, built.camera
    keyframe_camera(scene, camera, spec.path(frames))
    if spec.animate is not None:
        spec.animate(scene, frames)
    roots = moving.moving_objects(scene)
    rgb, depth, instances = [], [], []
    poses = {int(o[moving.INSTANCE_PROPERTY]): ([], []) for o in roots}
    for f in tqdm(range(scene.frame_start, scene.frame_end + 1), desc=f"rendering {spec.name}", unit="frame",
                  disable=not progress, leave=False):
        scene.frame_set(f)
        r = render_rgbd(scene, camera, samples=samples, instances=True)
        rgb.append(r["rgb"])
        depth.append(r["depth"])
        instances.append(r["instances"])
        for o in roots:
            position, heading = moving.object_pose(o)
            poses[int(o[moving.INSTANCE_PROPERTY])][0].append(position)
            poses[int(o[moving.INSTANCE_PROPERTY])][1].append(heading)
    objects = {k: TruthObject(str(o[moving.LABEL_PROPERTY]), np.array(poses[k][0]), np.unwrap(poses[k][1]))
               for k, o in ((int(o[moving.INSTANCE_PROPERTY]), o) for o in roots)}
    exported = export_camera(scene, camera)
    return np.stack(rgb), np.stack(depth), np.stack(instances), objects, exported


def render_ground_truth(scene: str, frames: int, width: int, height: int, *, samples: int = 16,
                        cache_dir=None, progress: bool = True) -> GroundTruth:
    """Cycles renders + exact depth of `scene` along its path of `frames` frames (cached)."""
    spec = get_scene(scene)
    if frames < 3:
        raise ValueError(f"need at least 3 frames for a camera path, got {frames}")
    if width < 16 or height < 16:
        raise ValueError(f"size must be at least 16x16, got {width}x{height}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    path = cache_path(cache_dir or default_cache_dir(), scene, frames, width, height, samples)
    if path.exists():
        with np.load(path) as data:
            cams = Cameras(data["intrinsics"], data["w2c"], width, height)
            objects = {int(k): TruthObject(str(label), position, heading) for k, label, position, heading in
                       zip(data["object_ids"], data["object_labels"], data["object_position"], data["object_heading"])}
            return GroundTruth(scene, data["rgb"], data["depth"], cams, float(data["fps"]), samples,
                               data["instances"], objects)
    try:
        import bpy  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("rendering the ground truth needs the bpy module (pip install bpy==5.0.1)") from exc
    rgb, depth, instances, objects, exported = _render(spec, frames, width, height, samples, progress)
    if (exported["width"], exported["height"]) != (width, height):
        raise RuntimeError(f"Blender rendered {exported['width']}x{exported['height']}, expected {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    ids = sorted(objects)
    np.savez_compressed(tmp, rgb=rgb, depth=depth, intrinsics=exported["intrinsics"], w2c=exported["w2c"],
                        fps=exported["fps"], instances=instances.astype(np.int32),
                        object_ids=np.array(ids, dtype=np.int64),
                        object_labels=np.array([objects[k].label for k in ids], dtype=str),
                        object_position=np.array([objects[k].position for k in ids], dtype=np.float64).reshape(
                            len(ids), frames, 3),
                        object_heading=np.array([objects[k].heading for k in ids], dtype=np.float64).reshape(
                            len(ids), frames))
    os.replace(tmp, path)  # whole or absent, even if two runs render the same scene at once
    cams = Cameras(exported["intrinsics"], exported["w2c"], width, height)
    return GroundTruth(scene, rgb, depth, cams, float(exported["fps"]), samples, instances.astype(np.int32), objects)
