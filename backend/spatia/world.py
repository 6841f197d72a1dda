"""A world: a spatial memory grown clip by clip, and everything generated so far, on disk.

Layout of a world folder:

    world.json          state: size, fps, frames so far, rounds, current memory version
    cameras.json        the camera of every generated frame (OpenCV, pixels)
    memory/             versioned memory snapshots (append-only)
    frames/000000.png   every generated frame, in video order
    keyframes/NNNNNN.npz aligned depth + dynamic mask of the frames that updated the memory
    rounds/0000/        round.json (prompt, memory versions, references, timings), clip.mp4,
                        projection.mp4 (the memory render the generator was conditioned on)
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

from .cameras import Cameras, Trajectory
from .io import write_json
from .memory import MemoryStore, SpatialMemory, import_ply, load_snapshot
from .models.base import Cancelled, DepthEstimator, GenerationRequest, Segmenter, VideoGenerator
from .plan import Round, plan_rounds
from .render import render_memory
from .retrieval import retrieve_from_memory
from .update import UpdateSettings, update_memory
from .video import iter_frames, read_frames, write_frames, write_video

SCHEMA = "spatia.world"
SCHEMA_VERSION = 1
HISTORY_FRAMES = 9  # the last frames of the previous clip, as in the paper
REFERENCE_FRAMES = 7

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


class World:
    """Open with World.open(path) or create with World.create(path, ...)."""

    def __init__(self, root: Path, state: dict):
        self.root = Path(root)
        self.state = state
        self.store = MemoryStore(self.root / "memory")

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
        return self.store.load(version)

    def cameras(self) -> Cameras | None:
        path = self.root / "cameras.json"
        if self.frame_count == 0 or not path.exists():
            return None
        data = json.loads(path.read_text())
        return Cameras(data["intrinsics"][: self.frame_count], data["w2c"][: self.frame_count], self.width, self.height)

    def frames(self, indices) -> np.ndarray:
        return read_frames([self.root / "frames" / f"{int(i):06d}.png" for i in indices])

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
            camera, [0], dynamic=dyn, settings=UpdateSettings(align=False, max_points=None),
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
        """Make an edited memory the current version (its parent defaults to the current one)."""
        parent = self.memory_version if parent is None else parent
        version = self.store.save(memory, parent=parent, message=message)
        self.state["memory_version"] = version
        self._save_state()
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
        generator.check_available()
        rounds = self.plan(trajectory, prompts, settings)
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
        timings["render_s"] = time.perf_counter() - t
        check_cancel()

        progress(0.05, "retrieving reference frames")
        t = time.perf_counter()
        history = self.frames(range(rnd.start, rnd.new_start)) if rnd.overlap else None
        references, reference_indices, reference_scores = None, [], []
        past = self.cameras()
        if past is not None and settings.references > 0:
            found = retrieve_from_memory(memory, past, cams, k=settings.references, exclude_recent=rnd.overlap,
                                         frame_fps=self.fps, device=settings.update.render_device)
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
        request = GenerationRequest(
            prompt=rnd.prompt, negative_prompt=settings.negative_prompt, projection=padded(proj_rgb),
            projection_depth=padded(proj_depth), hole_mask=padded(hole_mask), history=history,
            references=references, first_frame=first_frame, cameras=padded(cams), fps=self.fps,
            seed=settings.seed + round_index if settings.seed_per_round else settings.seed,
            steps=settings.steps, guidance=settings.guidance,
            points_xyz=memory.xyz.detach().cpu().numpy().astype(np.float32, copy=False),
            points_rgb=memory.rgb.detach().cpu().numpy(), round_index=round_index,
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
        if len(keys):
            key_frames = frames[local]
            confidence = None
            if result.depth is not None:
                depth = result.depth[local]
                # a generator that invents depth (the preview's hole filling) says how much to trust it
                if isinstance(result.info.get("depth_confidence"), np.ndarray):
                    confidence = result.info["depth_confidence"][local]
            elif depth_estimator is not None:
                estimate = depth_estimator.estimate(key_frames, key_cams.intrinsics)
                depth, confidence = estimate.depth, estimate.confidence
            else:
                raise WorldError("the generator returns no depth: a depth estimator is needed to update the memory")
            dynamic = np.zeros(depth.shape, dtype=bool)
            if segmenter is not None and settings.dynamic_prompts:
                dynamic |= segmenter.segment(key_frames, settings.dynamic_prompts)
            if user_masks is not None:
                dynamic |= np.asarray(user_masks, dtype=bool)[keys]
            # Depth a generator returns is already in the memory's frame (the preview's comes from
            # the memory, the oracle's is exact); only estimated depth is aligned to the memory.
            update_settings = replace(settings.update, align=settings.update.align and result.depth is None)
            new_memory, aligned, update_stats = update_memory(memory, key_frames, depth, key_cams, keys,
                                                              dynamic=dynamic, confidence=confidence,
                                                              settings=update_settings)
            for j, g in enumerate(keys):
                conf = np.ones(aligned[j].shape, np.float16) if confidence is None else confidence[j].astype(np.float16)
                np.savez_compressed(self.root / "keyframes" / f"{g:06d}.npz", depth=aligned[j].astype(np.float16),
                                    dynamic=dynamic[j], confidence=conf)
            if settings.full_rebuild:
                new_memory = self.rebuild_memory(extra=(key_frames, aligned, key_cams, keys, dynamic, confidence),
                                                 settings=settings.update)
            memory_out = self.store.save(new_memory, parent=memory_in,
                                         message=f"round {len(self.state['rounds'])}: {rnd.prompt[:80]}")
        timings["update_s"] = time.perf_counter() - t

        progress(0.9, "saving clip")
        t = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2) as pool:  # the encoders run in ffmpeg processes alongside
            videos = [pool.submit(write_video, partial / "clip.mp4", frames, self.fps),
                      pool.submit(write_video, partial / "projection.mp4", proj_rgb, self.fps)]
            write_frames(self.root / "frames", frames[rnd.overlap:], start=rnd.new_start)
            for video in videos:
                video.result()
        self._write_camera_json(cams if past is None else past.concat(cams[rnd.overlap:]))
        timings["save_s"] = time.perf_counter() - t
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
            "coverage": float((~hole_mask).mean()),
            "coverage_per_frame": (~hole_mask).mean(axis=(1, 2)).round(4).tolist(),
            "keyframes": keys.tolist(),
            "seed": request.seed,
            "generator": getattr(generator, "name", type(generator).__name__),
            "generator_info": {k: v for k, v in result.info.items() if not isinstance(v, np.ndarray)},
            "update": update_stats.as_dict() if update_stats else None,
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
        self._save_state()
        progress(1.0, "round done")
        return record

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


def _control_first_frame(memory: SpatialMemory, camera: Cameras) -> np.ndarray:
    """The memory rendered at `camera` as the control video's first frame (round 0's voxel size)."""
    from .render import control_voxel_size, render_control, voxel_downsample

    xyz, rgb = memory.xyz, memory.rgb
    if len(xyz):
        xyz, rgb = voxel_downsample(xyz, rgb, control_voxel_size(0))
    return render_control(xyz, rgb, camera).to_uint8()[0][0]


def temporary_world(width: int, height: int, **kwargs) -> World:
    """A world in a fresh temporary folder (for previews and tests)."""
    return World.create(tempfile.mkdtemp(prefix="spatia-world-"), width=width, height=height, **kwargs)
