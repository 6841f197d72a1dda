"""A world: a spatial memory grown clip by clip, and everything generated so far, on disk
(the folder's layout is in docs/world.md).

The world owns its state and versions; a round runs as a pipeline of stages (engine/stages) whose
files are written behind the next round by a commit writer. world.json is replaced atomically
last, so a crash at any moment leaves the world at its last committed round. Opening a world only
reads it, so readers may open a world while a round runs.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from spatia.cameras import Cameras, Trajectory
from spatia.engine import initialise
from spatia.engine.errors import WorldError
from spatia.engine.memory import MemoryStore, SpatialMemory, as_user_edit
from spatia.engine.memory.errors import MemoryIntegrityError
from spatia.engine.models.base import DepthEstimator, PreviewFn, Segmenter, VideoGenerator, with_preview
from spatia.engine.objects import ObjectSet, ObjectStore, snap_up
from spatia.engine.plan import Round
from spatia.engine.settings import INDEX_FPS, GenerateSettings, check_run
from spatia.engine.stages import commit, condition, index, pipeline, plan, update
from spatia.engine.update import UpdateSettings
from spatia.engine.view_index import ViewIndex, visible_ids
from spatia.formats.atomic import write_json
from spatia.formats.video import iter_frames, read_frames, write_frames, write_video

SCHEMA = "spatia.world"
SCHEMA_VERSION = 1


class World:
    """Open with World.open(path) or create with World.create(path, ...)."""

    def __init__(self, root: Path, state: dict):
        self.root = Path(root)
        self.state = state
        self.store = MemoryStore(self.root / "memory")
        self.object_store = ObjectStore(self.root / "objects")
        self._memory_cache: tuple[int, SpatialMemory] | None = None  # the latest version used
        self._views: ViewIndex | None = None  # built on first use, then kept up to date
        self._cameras: Cameras | None = None  # every generated frame's, once read or generated
        self._writer: commit.CommitWriter | None = None  # while generate() runs

    @classmethod
    def create(cls, root, *, width: int, height: int, fps: float = 24.0, voxel_size: float = 0.02) -> "World":
        root = Path(root)
        if (root / "world.json").exists():
            raise WorldError(f"{root} already holds a world; open it instead")
        if voxel_size <= 0 or not np.isfinite(voxel_size):
            raise WorldError(f"voxel_size must be positive, got {voxel_size}")
        Cameras([1.0, 1.0, 0.5, 0.5], np.eye(4), width, height)  # validates the size
        for sub in ("memory", "frames", "keyframes", "rounds"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        state = {"schema": SCHEMA, "version": SCHEMA_VERSION, "created": time.time(), "width": int(width),
                 "height": int(height), "fps": float(fps), "voxel_size": float(voxel_size), "frames": 0,
                 "initial_memory_version": None, "memory_version": None, "rounds": [], "camera_bytes": 0}
        world = cls(root, state)
        world._save_state()
        return world

    @classmethod
    def open(cls, root) -> "World":
        root = Path(root)
        path = root / "world.json"
        if not path.exists():
            raise WorldError(f"{root} is not a world (no world.json)")
        state = json.loads(path.read_text())
        if state.get("schema") != SCHEMA or state.get("version") != SCHEMA_VERSION:
            raise WorldError(f"{path} is not a {SCHEMA} v{SCHEMA_VERSION} file")
        return cls(root, state)

    def recover(self) -> "World":
        """Remove what an interrupted round left behind; only while no round runs on this world."""
        for partial in (self.root / "rounds").glob("*.partial"):
            shutil.rmtree(partial, ignore_errors=True)
        return self

    def _save_state(self) -> None:
        if self._writer is not None:  # the writer replaces world.json too: never two writers at once
            self._writer.wait()
        write_json(self.root / "world.json", self.state)

    width = property(lambda self: self.state["width"])
    height = property(lambda self: self.state["height"])
    fps = property(lambda self: self.state["fps"])
    frame_count = property(lambda self: self.state["frames"])
    memory_version = property(lambda self: self.state["memory_version"])
    objects_version = property(lambda self: self.state.get("objects_version"))

    def memory(self, version: int | None = None) -> SpatialMemory:
        version = version if version is not None else self.memory_version
        if version is None:
            raise WorldError("the world has no memory yet; initialise it first")
        if self._memory_cache is not None and self._memory_cache[0] == version:
            return self._memory_cache[1]
        memory = self.store.load(version)
        self._memory_cache = (version, memory)
        return memory

    def objects(self, version: int | None = None) -> ObjectSet:
        """The remembered moving objects (an empty set before any was seen)."""
        version = version if version is not None else self.objects_version
        if version is not None:
            return self.object_store.load(version)
        first = self.first_camera() or self.cameras()
        return ObjectSet(up=snap_up(first.c2w[0]) if first is not None else np.array([0.0, 0.0, 1.0]))

    def save_objects(self, objects: ObjectSet, *, parent: int | None, message: str) -> int:
        """A new objects version (its parent defaults to the current one) made current."""
        version = self.object_store.save(objects, parent=parent, memory_version=self.memory_version, message=message)
        self.state["objects_version"] = version
        self._save_state()
        return version

    def cameras(self) -> Cameras | None:
        if self._cameras is None or len(self._cameras) != self.frame_count:
            self._cameras = commit.read_cameras(self.root, self.frame_count, self.state.get("camera_bytes"),
                                                self.width, self.height)
        return self._cameras

    def frames(self, indices) -> np.ndarray:
        """Generated frames by video index; those handed to the writer and not yet on disk from memory."""
        indices = [int(i) for i in indices]
        frames = {i: self._writer.frame(i) for i in indices} if self._writer is not None else {}
        missing = [i for i in indices if frames.get(i) is None]
        if missing or not indices:  # no index at all: read_frames names the error
            frames.update(zip(missing, read_frames([self.root / "frames" / f"{i:06d}.png" for i in missing])))
        return np.stack([frames[i] for i in indices])

    def first_camera(self) -> Cameras | None:
        """The camera of the image the world was initialised from, when there is one."""
        return initialise.read_first_camera(self.root / "first_camera.json")

    def first_frame(self) -> np.ndarray | None:
        return read_frames([self.root / "first_frame.png"])[0] if (self.root / "first_frame.png").exists() else None

    def _set_initial_memory(self, memory: SpatialMemory, message: str) -> int:
        if self.memory_version is not None:
            raise WorldError("the world is already initialised")
        version = self.store.save(memory, parent=None, message=message)
        self.state.update(initial_memory_version=version, memory_version=version)
        self._save_state()
        return version

    def init_from_rgbd(self, rgb: np.ndarray, depth: np.ndarray, camera: Cameras, *, dynamic=None,
                       message: str = "initialised from RGB + depth") -> int:
        """Seed the memory from one view with known depth (e.g. a Blender render)."""
        memory = initialise.memory_from_rgbd(rgb, depth, camera, self.state["voxel_size"], (self.width, self.height),
                                             dynamic=dynamic)
        write_frames(self.root / "first_frame.png", np.asarray(rgb)[None], single=True)
        initialise.write_first_camera(self.root / "first_camera.json", camera, self.fps)
        return self._set_initial_memory(memory, message)

    def init_from_image(self, image: np.ndarray, depth_estimator: DepthEstimator, *, intrinsics=None,
                        w2c=None, dynamic=None) -> int:
        """Seed from one image through a depth estimator; given intrinsics override its estimate."""
        depth, camera = initialise.estimate_view(image, depth_estimator, (self.width, self.height),
                                                 intrinsics=intrinsics, w2c=w2c)
        return self.init_from_rgbd(image, depth, camera, dynamic=dynamic,
                                   message=f"initialised from an image ({type(depth_estimator).__name__})")

    def init_from_points(self, path) -> int:
        """Seed from a point cloud: a PLY file or a memory snapshot (.safetensors)."""
        memory = initialise.memory_from_points(path, self.state["voxel_size"])
        return self._set_initial_memory(memory, f"initialised from {Path(path).name}")

    def push_memory(self, memory: SpatialMemory, *, parent: int | None = None, message: str = "edited") -> int:
        """Make an edited memory the current version (its parent defaults to the current one).
        What the edit added or moved is the user's: generated frames will not move it."""
        parent = self.memory_version if parent is None else parent
        try:
            memory = as_user_edit(self.memory(parent), memory) if parent is not None else memory
        except MemoryIntegrityError:  # a damaged parent being replaced: nothing of it to keep
            pass
        version = self.store.save(memory, parent=parent, message=message)
        self.state["memory_version"] = version
        self._save_state()
        self._memory_cache = (version, memory)
        return version

    # --- generation ---------------------------------------------------------------------
    def generate(self, trajectory: Trajectory, prompts: list[str], generator: VideoGenerator,
                 settings: GenerateSettings | None = None, *, depth_estimator: DepthEstimator | None = None,
                 segmenter: Segmenter | None = None, user_masks: np.ndarray | None = None,
                 progress: Callable | None = None, should_cancel: Callable | None = None,
                 preview: PreviewFn | None = None) -> list[dict]:
        """Generate every remaining round of `trajectory` (its first frames, if generated already, must
        match it); one record per round generated, on disk. progress(fraction, stage); should_cancel();
        preview gets live RGB previews while a clip denoises, from generators that make them."""
        settings = settings or GenerateSettings()
        cams = trajectory.cameras
        check_run(settings, cams, (self.width, self.height), self.cameras(), depth_estimator, self.memory_version)
        generator.check_available()
        generator = with_preview(generator, preview)
        rounds = plan.plan(len(trajectory), prompts, settings, self.frame_count)
        if (message := plan.direction_message(settings)) is not None:  # the artist's directions, a version of their own
            self.save_objects(self.directed_objects(settings, cams), parent=self.objects_version, message=message)
        self._carry_cameras_over()
        report = progress or (lambda f, s: None)
        self._writer, records = commit.CommitWriter(), []
        try:
            for i, rnd in enumerate(rounds):
                step = pipeline.round_progress(report, i, len(rounds))
                if settings.full_rebuild or settings.update_mode != "incremental":
                    self._writer.wait()  # these updates read every earlier round's keyframes from disk
                outcome = pipeline.run_round(self._round_inputs(rnd, cams, settings), generator, settings,
                                             depth_estimator=depth_estimator, segmenter=segmenter,
                                             user_masks=user_masks, progress=step, should_cancel=should_cancel)
                outcome.record["timings"]["commit_wait_s"] = self._writer.wait()  # before the writer holds the record
                self._writer.submit(outcome.files)
                self._adopt(outcome, cams)
                records.append(outcome.record)
                step(1.0, "round done")
            self._writer.close()
        except BaseException:
            self._abandon()
            raise
        finally:
            self._writer = None
        report(1.0, "done")
        return records

    def _round_inputs(self, rnd: Round, cams: Cameras, settings: GenerateSettings) -> pipeline.RoundInputs:
        return pipeline.RoundInputs(
            root=self.root, index=len(self.state["rounds"]), rnd=rnd, cameras=cams, memory=self.memory(),
            memory_version=self.memory_version, objects=self.objects() if settings.object_memory else None,
            objects_version=self.objects_version, views=self.view_index() if self.frame_count else None,
            state=self.state, first_frame=self.first_frame(), first_camera=self.first_camera(),
            read_frames=self.frames, read_dynamic=lambda frame: update.read_dynamic(self.root, frame),
            save_memory=self.store.save, save_objects=self.object_store.save, rebuild_memory=self.rebuild_memory)

    def _adopt(self, outcome: pipeline.RoundOutcome, cams: Cameras) -> None:
        """The world moves on to the round handed to the writer (on disk once it is written)."""
        self.state = copy.deepcopy(outcome.files.state)
        self._memory_cache = (outcome.memory_version, outcome.memory)
        self._views, self._cameras = outcome.views, cams[: self.frame_count]

    def _abandon(self) -> None:
        """After a failed or cancelled round: let the rounds already handed over land, then read
        back what is on disk (the in-memory state may have run ahead of it)."""
        try:
            self._writer.close()
        finally:
            self.state = json.loads((self.root / "world.json").read_text())
            self._memory_cache = self._views = self._cameras = None

    def _carry_cameras_over(self) -> None:
        """A world made before the camera file existed gets one, from its cameras.json."""
        if self.frame_count and not self.state.get("camera_bytes"):
            self.state["camera_bytes"] = commit.append_cameras(self.root, commit.camera_lines(self.cameras()), 0)
            self._save_state()

    def directed_objects(self, settings: GenerateSettings, cameras: Cameras | None = None) -> ObjectSet:
        """The objects with the artist's directions applied (nothing is saved)."""
        fresh = self.objects_version is None and cameras is not None
        return plan.direct(ObjectSet(up=snap_up(cameras.c2w[0])) if fresh else self.objects(), settings)

    def round_conditioning(self, number: int) -> condition.Conditioning:
        """What round `number`'s generator was conditioned on, recomputed from its record."""
        try:
            record = json.loads((self.root / "rounds" / f"{int(number):04d}" / "round.json").read_text())
        except FileNotFoundError:
            raise WorldError(f"the world has no round {number}") from None
        objects = self.objects(record["objects_version_in"]) if record.get("objects_version_in") is not None else None
        return condition.recondition(self.memory(record["memory_version_in"]),
                                     self.cameras()[record["start"]:record["end"]], objects, record.get("objects", []))

    def view_index(self) -> ViewIndex:
        """Which points every indexed past frame saw: read back from the rounds' views.npz once,
        then kept up to date round by round."""
        if self._views is None:
            memory = self.memory() if self.memory_version is not None else None
            self._views = index.load_index(
                [self.root / "rounds" / f"{r['round']:04d}" / "views.npz" for r in self.state["rounds"]],
                index.index_grid(0, self.frame_count, self.fps, INDEX_FPS) if memory is not None else [],
                lambda frames: visible_ids(memory.xyz, memory.point_id, self.cameras()[frames]))
        return self._views

    def rebuild_memory(self, *, extra=None, settings: UpdateSettings = UpdateSettings()) -> SpatialMemory:
        """The initial memory with every keyframe so far fused again in order, then `extra`."""
        keys = sorted(int(p.stem) for p in (self.root / "keyframes").glob("[0-9]*.npz"))
        return update.replay_keyframes(self.memory(self.state["initial_memory_version"]),
                                       [k for k in keys if k < self.frame_count], self.cameras(), extra=extra,
                                       read_frames=self.frames, settings=settings,
                                       read_keyframe=lambda k: dict(np.load(self.root / "keyframes" / f"{k:06d}.npz")))

    def export_video(self, path=None) -> Path:
        path = Path(path) if path else self.root / "video.mp4"
        write_video(path, iter_frames(self.root / "frames" / f"{i:06d}.png" for i in range(self.frame_count)), self.fps)
        return path

