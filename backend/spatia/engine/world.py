"""A world: a spatial memory grown clip by clip, and everything generated so far, on disk.

Layout of a world folder:

    world.json          state: size, fps, frames so far, rounds, current memory version
    cameras.json        the camera of every generated frame (OpenCV, pixels)
    memory/             versioned memory snapshots (append-only)
    objects/            versioned object sets: the moving things remembered (docs/objects.md)
    frames/000000.png   every generated frame, in video order
    keyframes/NNNNNN.npz aligned depth + dynamic mask of the frames that updated the memory
    rounds/0000/        round.json (prompt, memory versions, references, timings, loop closure),
                        clip.mp4, projection.mp4 (the memory render the generator was conditioned
                        on, objects drawn in), views.npz (which points the round's frames saw: the
                        view index), object_layer.npz (which object won each conditioning pixel)
    first_frame.png     the image the world was initialised from, when there is one
    video.mp4           all frames

world.json is replaced atomically after each round, once its frames, keyframes and memory
version are on disk, so a crash mid-round leaves the world as it was before that round (a
round writes into rounds/NNNN.partial/, cleared when that round runs again). Opening a world
only reads it, so readers may open a world while a round runs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from spatia.cameras import Cameras, Trajectory
from spatia.formats.atomic import write_json
from spatia.engine.memory import RANK_USER, MemoryStore, SpatialMemory, diff, import_ply, load_snapshot
from spatia.engine.models.base import Cancelled, DepthEstimator, GenerationRequest, Segmenter, VideoGenerator
from spatia.engine.objects import (
    Direction,
    KeyViews,
    ObjectDirectionError,
    ObjectSet,
    ObjectStore,
    PosePath,
    apply_directions,
    draw_objects,
    frame_points,
    in_view,
    learn,
    observe,
    predict_all,
    snap_up,
    split_components,
)
from spatia.engine.plan import Round, plan_rounds
from spatia.engine.render import control_voxel_size, render_control, render_memory, voxel_downsample
from spatia.engine.metrics import psnr, ssim
from spatia.engine.retrieval import SCORINGS, retrieve_indexed
from spatia.engine.update import UpdateSettings, rebuild_with_known_poses, update_memory
from spatia.engine.view_index import ViewIndex, visible_ids
from spatia.formats.video import iter_frames, read_frames, write_frames, write_video

SCHEMA = "spatia.engine.world"
SCHEMA_VERSION = 1
HISTORY_FRAMES = 9  # the last frames of the previous clip, as in the paper
REFERENCE_FRAMES = 7
INDEX_FPS = 6.0  # frames enter the view index (and can be retrieved) at this rate, as the paper samples them
REVISIT_METRES = 0.1  # a frame revisits an earlier one whose camera is this close ...
REVISIT_DEGREES = 5.0  # ... and turned by at most this much
UPDATE_MODES = ("incremental", "mapanything-rebuild")
REVISITS_PER_ROUND = 8  # revisit pairs scored per round (the closest), so the cost stays bounded

Progress = Callable[[float, str], None]


class WorldError(ValueError):
    """The world cannot do what was asked; the message says why."""


@dataclass
class GenerateSettings:
    seed: int = 0
    seed_per_round: bool = False  # False: every round uses `seed` (the reference); True: seed + round
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str = ""
    first_round_frames: int = 121
    round_frames: int = 81
    overlap: int = HISTORY_FRAMES
    references: int = REFERENCE_FRAMES
    update_fps: float = 4.0
    dynamic_prompts: list[str] = field(default_factory=list)
    full_rebuild: bool = False
    update: UpdateSettings = field(default_factory=UpdateSettings)
    retrieval: str | None = None  # "reference" or "iou"; None: the generator's preference, else "iou"
    update_mode: str = "incremental"  # or "mapanything-rebuild", the paper's (see World._posed_rebuild)
    object_memory: bool = True  # remember moving things and draw them where they are predicted
    object_directions: tuple[Direction, ...] = ()  # the artist's paths and switches (video frame indices)
    forget_objects: tuple[int, ...] = ()  # objects removed before the first round


def shot_settings(spec, **overrides) -> GenerateSettings:
    """The settings a shot spec (spatia.formats.shot.ShotSpec) asks for. Its objects' path frames are
    Blender frame numbers; the world counts video frames from the shot's first listed frame."""
    first = int(spec.frames[0].frame)
    directions = tuple(Direction.keyed(o.id, o.path, frame_offset=first, condition=o.condition,
                                       reference=o.reference, copy_of=o.copy_of) for o in spec.objects)
    plan = spec.rounds
    fields = dict(seed=spec.seed, steps=spec.steps, guidance=spec.guidance, negative_prompt=spec.negative_prompt,
                  dynamic_prompts=list(spec.dynamic_prompts), first_round_frames=plan.first_round_frames,
                  round_frames=plan.round_frames, overlap=plan.overlap, object_memory=spec.object_memory,
                  object_directions=directions, forget_objects=tuple(spec.forget_objects))
    fields.update(overrides)
    return GenerateSettings(**fields)


class World:
    """Open with World.open(path) or create with World.create(path, ...)."""

    def __init__(self, root: Path, state: dict):
        self.root = Path(root)
        self.state = state
        self.store = MemoryStore(self.root / "memory")
        self.object_store = ObjectStore(self.root / "objects")
        self._memory_cache: tuple[int, SpatialMemory] | None = None  # the latest version used
        self._views: ViewIndex | None = None  # built on first use, then kept up to date

    # --- creation -----------------------------------------------------------------------
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
        state = {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "created": time.time(),
            "width": int(width),
            "height": int(height),
            "fps": float(fps),
            "voxel_size": float(voxel_size),
            "frames": 0,
            "initial_memory_version": None,
            "memory_version": None,
            "rounds": [],
        }
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
        """Remove what an interrupted round left behind. Call it only while no round runs on
        this world (e.g. when a service starts); a running round's folder looks the same."""
        for partial in (self.root / "rounds").glob("*.partial"):
            shutil.rmtree(partial, ignore_errors=True)
        return self

    def _save_state(self) -> None:
        write_json(self.root / "world.json", self.state)

    # --- properties ---------------------------------------------------------------------
    @property
    def width(self) -> int:
        return self.state["width"]

    @property
    def height(self) -> int:
        return self.state["height"]

    @property
    def fps(self) -> float:
        return self.state["fps"]

    @property
    def frame_count(self) -> int:
        return self.state["frames"]

    @property
    def memory_version(self) -> int | None:
        return self.state["memory_version"]

    def memory(self, version: int | None = None) -> SpatialMemory:
        version = version if version is not None else self.memory_version
        if version is None:
            raise WorldError("the world has no memory yet; initialise it first")
        if self._memory_cache is not None and self._memory_cache[0] == version:
            return self._memory_cache[1]
        memory = self.store.load(version)
        self._memory_cache = (version, memory)
        return memory

    @property
    def objects_version(self) -> int | None:
        return self.state.get("objects_version")

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
        path = self.root / "cameras.json"
        if self.frame_count == 0 or not path.exists():
            return None
        data = json.loads(path.read_text())
        return Cameras(data["intrinsics"][: self.frame_count], data["w2c"][: self.frame_count], self.width, self.height)

    def frames(self, indices) -> np.ndarray:
        return read_frames([self.root / "frames" / f"{int(i):06d}.png" for i in indices])

    def first_camera(self) -> Cameras | None:
        """The camera of the image the world was initialised from, when there is one."""
        path = self.root / "first_camera.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return Cameras(data["intrinsics"], data["w2c"], data["width"], data["height"])

    def first_frame(self) -> np.ndarray | None:
        path = self.root / "first_frame.png"
        return read_frames([path])[0] if path.exists() else None

    # --- initialisation -----------------------------------------------------------------
    def _set_initial_memory(self, memory: SpatialMemory, message: str) -> int:
        if self.memory_version is not None:
            raise WorldError("the world is already initialised")
        version = self.store.save(memory, parent=None, message=message)
        self.state["initial_memory_version"] = version
        self.state["memory_version"] = version
        self._save_state()
        return version

    def init_from_rgbd(self, rgb: np.ndarray, depth: np.ndarray, camera: Cameras, *, dynamic=None,
                       message: str = "initialised from RGB + depth") -> int:
        """Seed the memory from one view with known depth (e.g. a Blender render)."""
        if (camera.width, camera.height) != (self.width, self.height) or len(camera) != 1:
            raise WorldError(f"the first view must be one camera of {self.width}x{self.height}")
        rgb = np.asarray(rgb)
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise WorldError(f"image must be uint8 [{self.height}, {self.width}, 3], got {rgb.dtype} {list(rgb.shape)}")
        dyn = None if dynamic is None else np.asarray(dynamic, dtype=bool)[None]
        memory, _, _ = update_memory(
            SpatialMemory.empty(self.state["voxel_size"]), rgb[None], np.asarray(depth, dtype=np.float32)[None],
            camera, [0], dynamic=dyn, rank=RANK_USER, settings=UpdateSettings(align=False, max_points=None),
        )
        write_frames(self.root / "first_frame.png", rgb[None], single=True)
        self._write_camera_json(camera, name="first_camera.json")
        return self._set_initial_memory(memory, message)

    def init_from_image(self, image: np.ndarray, depth_estimator: DepthEstimator, *, intrinsics=None,
                        w2c=None, dynamic=None) -> int:
        """Seed from one image through a depth estimator; given intrinsics override its estimate."""
        image = np.asarray(image)
        given = None if intrinsics is None else np.asarray(intrinsics, dtype=np.float64).reshape(1, 4)
        result = depth_estimator.estimate(image[None], given)
        camera = Cameras(result.intrinsics[0] if given is None else given[0], np.eye(4) if w2c is None else w2c,
                         self.width, self.height)
        return self.init_from_rgbd(image, result.depth[0], camera, dynamic=dynamic,
                                   message=f"initialised from an image ({type(depth_estimator).__name__})")

    def init_from_points(self, path) -> int:
        """Seed from a point cloud: a PLY file or a memory snapshot (.safetensors)."""
        path = Path(path)
        if path.suffix.lower() == ".ply":
            memory = import_ply(path, voxel_size=self.state["voxel_size"])
        elif path.suffix.lower() == ".safetensors":
            memory, _ = load_snapshot(path)
        else:
            raise WorldError(f"{path}: expected a .ply or .safetensors point cloud")
        return self._set_initial_memory(memory, f"initialised from {path.name}")

    def push_memory(self, memory: SpatialMemory, *, parent: int | None = None, message: str = "edited") -> int:
        """Make an edited memory the current version (its parent defaults to the current one).
        What the edit added or moved is the user's: generated frames will not move it."""
        parent = self.memory_version if parent is None else parent
        if parent is not None and len(memory):
            changed = diff(self.memory(parent), memory)
            touched = np.concatenate([changed.moved, changed.added])
            if len(touched):
                rank = memory.rank.clone()
                rank[memory.indices_of(touched)] = RANK_USER
                memory = memory.replace(rank=rank)
        version = self.store.save(memory, parent=parent, message=message)
        self.state["memory_version"] = version
        self._save_state()
        self._memory_cache = (version, memory)
        return version

    # --- generation ---------------------------------------------------------------------
    def plan(self, trajectory: Trajectory, prompts: list[str], settings: GenerateSettings) -> list[Round]:
        return plan_rounds(len(trajectory), prompts, first_round_frames=settings.first_round_frames,
                           round_frames=settings.round_frames, overlap=settings.overlap,
                           start_frame=self.frame_count)

    def generate(
        self,
        trajectory: Trajectory,
        prompts: list[str],
        generator: VideoGenerator,
        settings: GenerateSettings | None = None,
        *,
        depth_estimator: DepthEstimator | None = None,
        segmenter: Segmenter | None = None,
        user_masks: np.ndarray | None = None,
        progress: Progress | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> list[dict]:
        """Generate every remaining round of `trajectory` (its first frames may already exist).

        The trajectory covers the whole video: frames the world already has must match it.
        Returns one record per round generated.
        """
        settings = settings or GenerateSettings()
        if self.memory_version is None:
            raise WorldError("the world has no memory yet; initialise it first")
        cams = trajectory.cameras
        if (cams.width, cams.height) != (self.width, self.height):
            raise WorldError(f"trajectory is {cams.width}x{cams.height} but the world is {self.width}x{self.height}")
        existing = self.cameras()
        if existing is not None and not existing.equals(cams[: self.frame_count], atol=1e-6):
            raise WorldError("the trajectory's first frames differ from the frames this world already generated")
        if settings.retrieval is not None and settings.retrieval not in SCORINGS:
            raise WorldError(f"retrieval must be one of {', '.join(SCORINGS)}, got {settings.retrieval!r}")
        if settings.update_mode not in UPDATE_MODES:
            raise WorldError(f"update_mode must be one of {', '.join(UPDATE_MODES)}, got {settings.update_mode!r}")
        if settings.update_mode == "mapanything-rebuild" and not getattr(depth_estimator, "takes_poses", False):
            raise WorldError("update mode mapanything-rebuild needs a depth model that takes known poses "
                             "(map-anything: spatia models download map-anything, and the mapanything package)")
        generator.check_available()
        rounds = self.plan(trajectory, prompts, settings)
        self._direct_objects(settings, trajectory.cameras)
        records = []
        for i, rnd in enumerate(rounds):
            def round_progress(fraction: float, stage: str, i=i):
                if progress:
                    progress((i + min(max(fraction, 0.0), 1.0)) / len(rounds), f"round {rnd.index + 1}/{len(rounds)}: {stage}")

            records.append(self._generate_round(rnd, trajectory, generator, settings, depth_estimator, segmenter,
                                                user_masks, round_progress, should_cancel))
        if progress:
            progress(1.0, "done")
        return records

    def directed_objects(self, settings: GenerateSettings, cameras: Cameras | None = None) -> ObjectSet:
        """The objects with the artist's forgets, copies and switches applied (nothing is saved);
        WorldError names an object the world does not have, or a copy's id that is taken."""
        if self.objects_version is None and cameras is not None:
            objects = ObjectSet(up=snap_up(cameras.c2w[0]))
        else:
            objects = self.objects()
        try:
            return apply_directions(objects, settings.object_directions, settings.forget_objects)
        except ObjectDirectionError as err:
            raise WorldError(str(err)) from None

    def _direct_objects(self, settings: GenerateSettings, cameras: Cameras) -> None:
        """The artist's forgets, copies and switches, as a new objects version before any round."""
        if not (settings.object_directions or settings.forget_objects):
            return
        directed = self.directed_objects(settings, cameras)
        changed = [d.id for d in settings.object_directions if d.copy_of is not None]
        message = ", ".join(filter(None, [f"forgot {list(settings.forget_objects)}" if settings.forget_objects else "",
                                          f"copied to {changed}" if changed else "", "directed"]))
        self.save_objects(directed, parent=self.objects_version, message=message)

    def _generate_round(self, rnd: Round, *args) -> dict:
        partial = self.root / "rounds" / f"{len(self.state['rounds']):04d}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # left by a round that was interrupted
        partial.mkdir(parents=True)
        try:
            return self._run_round(rnd, partial, *args)
        finally:
            shutil.rmtree(partial, ignore_errors=True)  # renamed away on success

    def _run_round(self, rnd: Round, partial: Path, trajectory: Trajectory, generator: VideoGenerator,
                   settings: GenerateSettings, depth_estimator, segmenter, user_masks,
                   progress: Progress, should_cancel) -> dict:
        t_start = time.perf_counter()
        timings = {}
        cams = trajectory.cameras[rnd.start:rnd.end]
        memory_in = self.memory_version
        memory = self.memory(memory_in)

        def check_cancel():
            if should_cancel and should_cancel():
                raise Cancelled("cancelled")

        progress(0.0, "rendering memory")
        t = time.perf_counter()
        projection = render_memory(memory, cams, device=settings.update.render_device)
        proj_rgb = projection.rgb.cpu().numpy()
        proj_depth = np.nan_to_num(projection.depth.cpu().numpy(), posinf=0.0).astype(np.float32)
        hole_mask = ~projection.mask.cpu().numpy()
        objects_in, objects, paths, conditioned, object_ids = self.objects_version, None, {}, [], None
        t_objects = time.perf_counter()
        if settings.object_memory:
            objects = self.objects()
            paths = predict_all(objects, np.arange(rnd.start, rnd.end), self.fps, directions=settings.object_directions,
                                obstacles=memory.xyz.detach().cpu().numpy())
            conditioned = [o for o in objects.objects if o.condition]
            if conditioned:
                object_ids = draw_objects(proj_rgb, proj_depth, hole_mask, conditioned, paths, cams, objects.up,
                                          device=settings.update.render_device)
        timings["objects_s"] = time.perf_counter() - t_objects  # also counted in render_s (and below in update_s)
        timings["render_s"] = time.perf_counter() - t
        check_cancel()

        progress(0.05, "retrieving reference frames")
        t = time.perf_counter()
        history = self.frames(range(rnd.start, rnd.new_start)) if rnd.overlap else None
        references, reference_indices, reference_scores = None, [], []
        past = self.cameras()
        scoring = settings.retrieval or getattr(generator, "retrieval_scoring", "iou")
        if past is not None and settings.references > 0:
            index = self.view_index()
            index.retain(memory.point_id.cpu().numpy())  # points deleted since (edits, carving)
            candidates = index.frames[index.frames < rnd.start]  # never the history frames themselves
            found = retrieve_indexed(index, memory.xyz, memory.point_id, cams, candidates, k=settings.references,
                                     scoring=scoring, frame_fps=self.fps, device=settings.update.render_device)
            reference_indices = [int(i) for i in found.indices]
            reference_scores = [float(s) for s in found.scores]
            if reference_indices:
                references = self.frames(reference_indices)
        timings["retrieve_s"] = time.perf_counter() - t
        check_cancel()

        t = time.perf_counter()
        round_index = len(self.state["rounds"])
        first_frame = None
        if rnd.start == 0:
            # Round 0 always starts from a clean first frame: the image the world was seeded
            # from, or (a world seeded from points) the memory's control render at the first camera.
            first_frame = self.first_frame()
            if first_frame is None:
                first_frame = _control_first_frame(memory, cams[:1])
        # A model trained on full rounds gets a short last round padded with its last camera
        # (the reference); the frames past the round are cropped below.
        pad = rnd.padding if getattr(generator, "pads_short_rounds", False) else 0
        pad_index = np.concatenate([np.arange(rnd.frames), np.full(pad, rnd.frames - 1)]).astype(np.int64)
        padded = (lambda a: a[pad_index]) if pad else (lambda a: a)
        frame_xyz = frame_rgb = object_references = None
        if conditioned:
            frame_xyz, frame_rgb = frame_points(conditioned, paths, cams, objects.up)
            frame_xyz, frame_rgb = [frame_xyz[i] for i in pad_index], [frame_rgb[i] for i in pad_index]
        if objects is not None:
            crops = [o.best_crop().on_white() for o in objects.objects
                     if o.reference and o.crops and in_view(o, paths[o.id], cams, objects.up).any()]
            object_references = np.stack(crops) if crops else None
        request = GenerationRequest(
            prompt=rnd.prompt, negative_prompt=settings.negative_prompt, projection=padded(proj_rgb),
            projection_depth=padded(proj_depth), hole_mask=padded(hole_mask), history=history,
            references=references, first_frame=first_frame, cameras=padded(cams), fps=self.fps,
            seed=settings.seed + round_index if settings.seed_per_round else settings.seed,
            steps=settings.steps, guidance=settings.guidance,
            points_xyz=memory.xyz.detach().cpu().numpy().astype(np.float32, copy=False),
            points_rgb=memory.rgb.detach().cpu().numpy(), round_index=round_index,
            frame_points_xyz=frame_xyz, frame_points_rgb=frame_rgb, object_references=object_references,
            start_frame=rnd.start,
        )
        result = generator.generate(request, progress=lambda f, s: progress(0.1 + 0.7 * f, s),
                                    should_cancel=should_cancel)
        frames = result.frames
        if frames.shape != (rnd.frames + pad, self.height, self.width, 3):
            raise WorldError(f"generator returned frames of shape {list(frames.shape)}, expected "
                             f"[{rnd.frames + pad}, {self.height}, {self.width}, 3]")
        if pad:
            frames = frames[: rnd.frames]
            if result.depth is not None:
                result = replace(result, depth=result.depth[: rnd.frames])
        timings["generate_s"] = time.perf_counter() - t
        check_cancel()

        progress(0.8, "updating memory")
        t = time.perf_counter()
        new = np.arange(rnd.new_start, rnd.end)
        step = max(1, int(round(self.fps / settings.update_fps)))
        keys = new[new % step == 0]
        local = keys - rnd.start
        key_cams = cams[local] if len(local) else None
        memory_out, update_stats = memory_in, None
        objects_out, learned = objects_in, None
        if len(keys):
            key_frames = frames[local]
            instances, labels = self._key_instances(key_frames, keys, local, result, segmenter, settings, user_masks,
                                                    object_ids, objects)
            dynamic = instances > 0  # moving things never enter the static memory, remembered or not
            if settings.update_mode == "mapanything-rebuild":
                new_memory, aligned, confidence = self._posed_rebuild(trajectory.cameras, frames, rnd, keys, dynamic,
                                                                      depth_estimator, step)
            else:
                confidence = None
                if result.depth is not None:
                    depth = result.depth[local]
                    # a generator that invents depth (the preview's hole filling) says how much to trust it
                    if isinstance(result.info.get("depth_confidence"), np.ndarray):
                        confidence = result.info["depth_confidence"][local]
                    # one that says which pixels it filled (the preview) copied the rest from the
                    # memory's own projection: they tell the memory nothing new
                    if isinstance(result.info.get("filled_mask"), np.ndarray):
                        copied = ~result.info["filled_mask"][local]
                        base = np.ones(depth.shape, np.float32) if confidence is None else confidence
                        confidence = np.where(copied, np.float32(0.0), base).astype(np.float32)
                elif depth_estimator is not None:
                    estimate = depth_estimator.estimate(key_frames, key_cams.intrinsics)
                    depth, confidence = estimate.depth, estimate.confidence
                else:
                    raise WorldError("the generator returns no depth: a depth estimator is needed to update the memory")
                # Depth a generator returns is already in the memory's frame (the preview's comes from
                # the memory, the oracle's is exact); only estimated depth is aligned to the memory.
                update_settings = replace(settings.update, align=settings.update.align and result.depth is None)
                new_memory, aligned, update_stats = update_memory(memory, key_frames, depth, key_cams, keys,
                                                                  dynamic=dynamic, confidence=confidence,
                                                                  anchors=self.first_camera(), settings=update_settings)
            for j, g in enumerate(keys):
                conf = np.ones(aligned[j].shape, np.float16) if confidence is None else confidence[j].astype(np.float16)
                np.savez_compressed(self.root / "keyframes" / f"{g:06d}.npz", depth=aligned[j].astype(np.float16),
                                    dynamic=dynamic[j], confidence=conf)
            if settings.full_rebuild:
                new_memory = self.rebuild_memory(extra=(key_frames, aligned, key_cams, keys, dynamic, confidence),
                                                 settings=settings.update)
            memory_out = self.store.save(new_memory, parent=memory_in,
                                         message=f"round {len(self.state['rounds'])}: {rnd.prompt[:80]}")
            memory = new_memory
            if objects is not None and (len(objects) or instances.any()):
                t_objects = time.perf_counter()
                clip = observe(key_frames, aligned, key_cams, keys, instances, objects.up)
                learned = learn(objects, paths, clip, labels, self.state["voxel_size"], self.fps,
                                views=KeyViews(key_cams, aligned, instances, keys))
                if learned.changed:  # seen, or carried on unseen (its state, its negative evidence)
                    objects_out = self.object_store.save(learned.objects, parent=objects_in, memory_version=memory_out,
                                                         message=f"round {len(self.state['rounds'])}")
                timings["objects_s"] += time.perf_counter() - t_objects
        timings["update_s"] = time.perf_counter() - t

        t = time.perf_counter()
        views = self._index_round(memory, trajectory.cameras, rnd, update_stats, partial / "views.npz",
                                  settings.update.render_device, reset=settings.update_mode != "incremental")
        timings["index_s"] = time.perf_counter() - t
        check_cancel()

        progress(0.9, "saving clip")
        t = time.perf_counter()
        if object_ids is not None:
            np.savez_compressed(partial / "object_layer.npz", ids=object_ids)
        with ThreadPoolExecutor(max_workers=2) as pool:  # the encoders run in ffmpeg processes alongside
            videos = [pool.submit(write_video, partial / "clip.mp4", frames, self.fps),
                      pool.submit(write_video, partial / "projection.mp4", proj_rgb, self.fps)]
            write_frames(self.root / "frames", frames[rnd.overlap:], start=rnd.new_start)
            for video in videos:
                video.result()
        all_cams = cams if past is None else past.concat(cams[rnd.overlap:])
        self._write_camera_json(all_cams)
        timings["save_s"] = time.perf_counter() - t
        t = time.perf_counter()
        loop_closure = self._loop_closure(memory, all_cams, frames, rnd, settings.update.render_device)
        timings["loop_closure_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t_start
        record = {
            "round": len(self.state["rounds"]),
            "prompt": rnd.prompt,
            "start": rnd.start,
            "end": rnd.end,
            "overlap": rnd.overlap,
            "memory_version_in": memory_in,
            "memory_version_out": memory_out,
            "references": reference_indices,
            "reference_scores": reference_scores,
            "retrieval": scoring,
            "loop_closure": loop_closure,
            "coverage": float((~hole_mask).mean()),
            "coverage_per_frame": (~hole_mask).mean(axis=(1, 2)).round(4).tolist(),
            "keyframes": keys.tolist(),
            "seed": request.seed,
            "generator": getattr(generator, "name", type(generator).__name__),
            "generator_info": {k: v for k, v in result.info.items() if not isinstance(v, np.ndarray)},
            "update": update_stats.as_dict() if update_stats else None,
            "objects_version_in": objects_in,
            "objects_version_out": objects_out,
            "objects": self._object_records(objects, paths, learned, cams, rnd),
            "instances": {str(k): v for k, v in (learned.instances if learned else {}).items()},
            "timings": timings,
        }
        write_json(partial / "round.json", record)
        final = self.root / "rounds" / f"{record['round']:04d}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        self.state["rounds"].append({k: record[k] for k in ("round", "prompt", "start", "end", "memory_version_in",
                                                             "memory_version_out")})
        self.state["frames"] = rnd.end
        self.state["memory_version"] = memory_out
        self.state["objects_version"] = objects_out
        self._save_state()
        self._memory_cache = (memory_out, memory)
        self._views = views
        progress(1.0, "round done")
        return record

    # --- object memory --------------------------------------------------------------------
    def _key_instances(self, key_frames, keys, local, result, segmenter, settings, user_masks, object_ids, objects):
        """Instance ids (int32 [K,H,W], 0 = static) and labels of the keyframes, from every source
        there is: the segmenter's instances, the user's masks (an integer mask labels instances,
        a boolean one is split into components), the generator's own (the oracle's truth), and
        for a generator that copied the conditioning (the preview) the objects it was shown.
        A later source only labels pixels the earlier ones left static."""
        out = np.zeros((len(keys), self.height, self.width), np.int32)
        labels: dict[int, str] = {}

        def add(ids, names=None):
            ids = np.asarray(ids)
            if ids.dtype == np.bool_:
                ids = split_components(ids)
            ids = ids.astype(np.int64)
            offset = int(out.max())
            fresh = (out == 0) & (ids > 0)
            out[fresh] = (ids[fresh] + offset).astype(np.int32)
            for k, name in (names or {}).items():
                labels[int(k) + offset] = str(name)

        if segmenter is not None and settings.dynamic_prompts:
            add(*segmenter.segment_instances(key_frames, settings.dynamic_prompts))
        if user_masks is not None:
            add(np.asarray(user_masks)[keys])
        if isinstance(result.info.get("instance_masks"), np.ndarray):
            add(result.info["instance_masks"][local], result.info.get("instance_labels"))
        if object_ids is not None and isinstance(result.info.get("filled_mask"), np.ndarray):
            shown = np.where(result.info["filled_mask"][local], 0, object_ids[local])
            add(shown, {o.id: o.label for o in objects.objects})
        return out, labels

    def _object_records(self, objects, paths, learned, cams: Cameras, rnd: Round) -> list[dict]:
        """Per object: where it was predicted over the round and, once generated, observed."""
        if objects is None:
            return []
        after = learned.objects if learned else objects
        records = []
        for o in after.objects:
            path = paths.get(o.id)
            observed = learned.observed.get(o.id) if learned else None
            before = o.id in paths
            track = objects.get(o.id) if before else o
            visible = in_view(track, path, cams, objects.up) if path is not None else np.zeros(0, bool)
            records.append({
                "id": o.id, "label": o.label, "source": path.source if path is not None else "new",
                "condition": bool(track.condition), "reference": bool(track.reference),
                "predicted": path.as_dict() if path is not None else None,
                "observed": observed.as_dict() if observed is not None else None,
                "visible_frames": (rnd.start + np.flatnonzero(visible)).tolist(),
            })
        return records

    def round_conditioning(self, index: int) -> "RoundConditioning":
        """What round `index`'s generator was conditioned on, recomputed: the memory's projection
        with the objects drawn in at their predicted poses, and which object won each pixel."""
        path = self.root / "rounds" / f"{int(index):04d}" / "round.json"
        if not path.exists():
            raise WorldError(f"the world has no round {index}")
        record = json.loads(path.read_text())
        cams = self.cameras()[record["start"]:record["end"]]
        projection = render_memory(self.memory(record["memory_version_in"]), cams)
        rgb = projection.rgb.cpu().numpy()
        depth = np.nan_to_num(projection.depth.cpu().numpy(), posinf=0.0).astype(np.float32)
        hole = ~projection.mask.cpu().numpy()
        ids = np.zeros(hole.shape, np.int32)
        shown = [r for r in record.get("objects", []) if r["condition"] and r["predicted"]]
        if shown and record.get("objects_version_in") is not None:
            objects = self.objects(record["objects_version_in"])
            paths = {r["id"]: PosePath.from_dict(r["predicted"], r["source"]) for r in shown}
            ids = draw_objects(rgb, depth, hole, [objects.get(i) for i in paths], paths, cams, objects.up)
        return RoundConditioning(rgb, depth, hole, ids)

    # --- the view index -------------------------------------------------------------------
    def _index_frames(self, start: int, end: int) -> list[int]:
        """The frames of [start, end) that enter the view index: a fixed grid at INDEX_FPS."""
        step = max(1, int(round(self.fps / INDEX_FPS)))
        return list(range(start + (-start) % step, end, step))

    def view_index(self) -> ViewIndex:
        """Which points every indexed past frame saw. Read back from the rounds' views.npz files
        once, then kept up to date round by round; frames that have no record (a world made
        before the index existed) are indexed from the current memory."""
        if self._views is not None:
            return self._views
        index = ViewIndex()
        for entry in self.state["rounds"]:
            path = self.root / "rounds" / f"{entry['round']:04d}" / "views.npz"
            if path.exists():
                with np.load(path) as arrays:
                    index.replay(arrays)
        missing = [f for f in self._index_frames(0, self.frame_count) if f not in index.frame_sizes]
        if missing and self.memory_version is not None:
            memory = self.memory()
            index.add(missing, visible_ids(memory.xyz, memory.point_id, self.cameras()[missing]))
        self._views = index
        return index

    def _index_round(self, memory: SpatialMemory, cameras: Cameras, rnd: Round, stats, path: Path,
                     device, *, reset: bool = False) -> ViewIndex:
        """The view index with this round's new frames added (as the updated memory sees them),
        saved to `path`; the world's own index is replaced only once the round is committed.
        `reset`: the memory was rebuilt with new ids, so every indexed frame is indexed anew."""
        index = self.view_index()
        index = ViewIndex(index.per_point, index.keys.copy(), dict(index.frame_sizes))
        merges = stats.merges if stats is not None and stats.merges is not None else None
        merged = (merges.ids.cpu().numpy(), merges.into.cpu().numpy()) if merges is not None else ((), ())
        frames = self._index_frames(0 if reset else rnd.new_start, rnd.end)
        sets = visible_ids(memory.xyz, memory.point_id, cameras[frames], device=device) if frames else []
        if reset:
            index.clear()
            merged = ((), ())
        index.remap(*merged)
        index.add(frames, sets)
        np.savez_compressed(path, **index.batch_arrays(frames, sets, *merged, reset=reset))
        return index

    def _posed_rebuild(self, cameras: Cameras, frames: np.ndarray, rnd: Round, keys: np.ndarray,
                       dynamic: np.ndarray, depth_estimator, step: int):
        """The paper's update: the memory rebuilt from every frame so far on the update grid (the
        first image included) by a depth model given the known poses and intrinsics. Returns the
        memory and the depth and confidence of this round's keyframes."""
        if depth_estimator is None:
            raise WorldError("update mode mapanything-rebuild needs a depth model (map-anything)")
        past = [g for g in range(0, rnd.new_start, step)]
        images = [self.frames(past)] if past else []
        masks = []
        for g in past:
            path = self.root / "keyframes" / f"{g:06d}.npz"
            if path.exists():
                with np.load(path) as saved:
                    masks.append(saved["dynamic"])
            else:
                masks.append(np.zeros((self.height, self.width), dtype=bool))
        indices = np.array(past + keys.tolist(), dtype=np.int64)
        images = np.concatenate(images + [frames[keys - rnd.start]])
        dynamic_all = np.concatenate([np.stack(masks)] + [dynamic]) if masks else dynamic
        try:
            memory, depth, confidence = rebuild_with_known_poses(images, cameras[indices], indices, depth_estimator,
                                                                 dynamic=dynamic_all)
        except ValueError as err:
            raise WorldError(str(err)) from None
        return memory, depth[len(past):], confidence[len(past):]

    # --- loop closure ---------------------------------------------------------------------
    def _loop_closure(self, memory: SpatialMemory, cameras: Cameras, frames: np.ndarray, rnd: Round, device) -> dict:
        """How well the world returns to where it has been: the memory rendered at the first
        camera against the first image, and each new frame whose camera revisits an earlier
        frame's (within REVISIT_METRES and REVISIT_DEGREES, at least a round apart) against
        that frame (the closest REVISITS_PER_ROUND pairs)."""
        out: dict = {}
        first = self.first_frame()
        if first is not None and len(cameras):
            view = render_memory(memory, cameras[:1], device=device)
            known = view.mask[0].cpu().numpy()
            out["memory_vs_first_psnr"] = _db(psnr(view.rgb[0].cpu().numpy(), first, known)) if known.any() else None
            out["memory_vs_first_coverage"] = round(float(known.mean()), 4)
        earliest_gap = max(1, rnd.frames)
        c2w = cameras.c2w
        pairs = []
        for j in range(rnd.overlap, rnd.frames):
            frame = rnd.start + j
            older = frame - earliest_gap
            if older < 0:
                continue
            distance = np.linalg.norm(c2w[:older + 1, :3, 3] - c2w[frame, :3, 3], axis=1)
            cos = (np.einsum("fij,ij->f", c2w[:older + 1, :3, :3], c2w[frame, :3, :3]) - 1) / 2
            angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
            close = np.flatnonzero((distance <= REVISIT_METRES) & (angle <= REVISIT_DEGREES))
            if len(close):
                best = close[np.argmin(distance[close] + angle[close] * np.pi / 180)]
                pairs.append((float(distance[best]), frame, int(best), j))
        pairs.sort()
        scored = []
        for _, frame, earlier, j in pairs[:REVISITS_PER_ROUND]:
            then = self.frames([earlier])[0]
            scored.append({"frame": frame, "earlier": earlier, "psnr": _db(psnr(frames[j], then)),
                           "ssim": round(ssim(frames[j], then), 4)})
        out["revisits"] = scored
        out["revisit_psnr_mean"] = round(float(np.mean([p["psnr"] for p in scored])), 3) if scored else None
        return out

    def rebuild_memory(self, *, extra=None, settings: UpdateSettings = UpdateSettings()) -> SpatialMemory:
        """Rebuild the memory from the initial one and every keyframe so far, in order
        (the paper's per-round rebuild; its cost grows with the video's length)."""
        memory = self.memory(self.state["initial_memory_version"])
        past = self.cameras()
        keys = sorted(int(p.stem) for p in (self.root / "keyframes").glob("[0-9]*.npz"))
        keys = [k for k in keys if past is not None and k < self.frame_count]
        replay = dict(settings.__dict__, align=False)
        for start in range(0, len(keys), settings.chunk_frames):  # a few keyframes in memory at a time
            part = keys[start:start + settings.chunk_frames]
            saved = [np.load(self.root / "keyframes" / f"{k:06d}.npz") for k in part]
            depth = np.stack([d["depth"].astype(np.float32) for d in saved])
            dynamic = np.stack([d["dynamic"] for d in saved])
            confidence = np.stack([d["confidence"].astype(np.float32) for d in saved])
            memory, _, _ = update_memory(memory, self.frames(part), depth, past[part], part, dynamic=dynamic,
                                         confidence=confidence, settings=UpdateSettings(**replay))
        if extra is not None:
            frames, depth, cams, keys, dynamic, confidence = extra
            memory, _, _ = update_memory(memory, frames, depth, cams, keys, dynamic=dynamic, confidence=confidence,
                                         settings=UpdateSettings(**replay))
        return memory

    def _write_camera_json(self, cams: Cameras, name: str = "cameras.json") -> None:
        write_json(self.root / name, {
            "width": cams.width, "height": cams.height, "fps": self.fps,
            "intrinsics": cams.intrinsics.tolist(), "w2c": cams.w2c.tolist(),
        })

    def export_video(self, path=None) -> Path:
        path = Path(path) if path else self.root / "video.mp4"
        write_video(path, iter_frames(self.root / "frames" / f"{i:06d}.png" for i in range(self.frame_count)), self.fps)
        return path


@dataclass(frozen=True, eq=False)
class RoundConditioning:
    """rgb uint8 [F,H,W,3], depth float32 [F,H,W] (0 in holes), hole bool [F,H,W], object_ids int32
    [F,H,W] (the object that won each pixel, 0 none) of one round's frames."""

    rgb: np.ndarray
    depth: np.ndarray
    hole: np.ndarray
    object_ids: np.ndarray


def _db(value: float) -> float:
    """A PSNR for JSON: identical images (infinite PSNR) are reported as 100 dB."""
    return round(min(float(value), 100.0), 3)


def _control_first_frame(memory: SpatialMemory, camera: Cameras) -> np.ndarray:
    """The memory rendered at `camera` as the control video's first frame (round 0's voxel size)."""
    xyz, rgb = memory.xyz, memory.rgb
    if len(xyz):
        xyz, rgb = voxel_downsample(xyz, rgb, control_voxel_size(0))
    return render_control(xyz, rgb, camera).to_uint8()[0][0]


def temporary_world(width: int, height: int, **kwargs) -> World:
    """A world in a fresh temporary folder (for previews and tests)."""
    return World.create(tempfile.mkdtemp(prefix="spatia-world-"), width=width, height=height, **kwargs)
