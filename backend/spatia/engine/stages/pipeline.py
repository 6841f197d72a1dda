"""One round, read top to bottom: condition, retrieve, generate, observe, update, index, commit.

`run_round` gets everything it needs from the world as plain data and a few callables
(RoundInputs) and gives back what the world must adopt (RoundOutcome); it never reaches into the
world. Each stage is timed into the round record's `timings` (seconds per stage)."""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.memory import SpatialMemory
from spatia.engine.models.base import Cancelled, DepthEstimator, Segmenter, VideoGenerator
from spatia.engine.objects import ObjectSet
from spatia.engine.plan import Round
from spatia.engine.settings import INDEX_FPS, GenerateSettings
from spatia.engine.view_index import ViewIndex

from . import commit, condition, generate, index, measure, observe, records, retrieve, update


@dataclass(eq=False)
class RoundInputs:
    """What a round reads: the world's state as data, and how to read and version the world."""

    root: Path
    index: int  # the round's number in the world
    rnd: Round
    cameras: Cameras  # the whole trajectory's
    memory: SpatialMemory
    memory_version: int
    objects: ObjectSet | None  # None: object memory off
    objects_version: int | None
    views: ViewIndex | None  # None before the first frame
    state: dict  # the world's state before the round (copied, never changed here)
    first_frame: np.ndarray | None
    first_camera: Cameras | None
    read_frames: Callable[[list[int]], np.ndarray]
    read_dynamic: Callable[[int], np.ndarray | None]
    save_memory: Callable[..., int]  # (memory, parent=, message=) -> version
    save_objects: Callable[..., int]  # (objects, parent=, memory_version=, message=) -> version
    rebuild_memory: Callable[..., SpatialMemory]  # every keyframe so far replayed (full_rebuild)


@dataclass(eq=False)
class RoundOutcome:
    """What the world adopts once the round is handed to the writer."""

    record: dict
    memory: SpatialMemory
    memory_version: int
    objects_version: int | None
    views: ViewIndex
    files: commit.RoundFiles


class StageClock:
    """Seconds per stage, for the round record."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            key = f"{name}_s"
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - started


def round_progress(report, number: int, rounds: int):
    """The progress callback of round `number` of `rounds`, reporting into the run's `report`."""
    def step(fraction: float, stage: str) -> None:
        report((number + min(max(fraction, 0.0), 1.0)) / rounds, f"round {number + 1}/{rounds}: {stage}")
    return step


def run_round(world: RoundInputs, generator: VideoGenerator, settings: GenerateSettings, *,
              depth_estimator: DepthEstimator | None = None, segmenter: Segmenter | None = None,
              user_masks=None, progress=lambda f, s: None, should_cancel=None) -> RoundOutcome:
    rnd, clock, started = world.rnd, StageClock(), time.perf_counter()
    cams, device = world.cameras[rnd.start:rnd.end], settings.update.render_device
    size, fps = (world.state["height"], world.state["width"]), world.state["fps"]

    def check_cancel():
        if should_cancel and should_cancel():
            raise Cancelled("cancelled")

    progress(0.0, "rendering memory")
    with clock("condition"):
        shown = condition.condition(world.memory, cams, np.arange(rnd.start, rnd.end), fps, objects=world.objects,
                                    directions=settings.object_directions, device=device, timings=clock.seconds)
    check_cancel()
    progress(0.05, "retrieving reference frames")
    with clock("retrieve"):
        scoring = settings.retrieval or getattr(generator, "retrieval_scoring", "iou")
        padding = rnd.padding if getattr(generator, "pads_short_rounds", False) else 0
        found = retrieve.retrieve(world.views, world.memory, cams, rnd.start, k=settings.references,
                                  scoring=scoring, fps=fps, padding=padding, device=device)
        history = world.read_frames(range(rnd.start, rnd.new_start)) if rnd.overlap else None
        references = world.read_frames(found.indices) if found.indices else None
    check_cancel()
    with clock("generate"):
        first = None
        if rnd.start == 0:  # round 0 starts from a clean first frame: the seed image, or the memory's control render
            first = world.first_frame if world.first_frame is not None else \
                condition.control_first_frame(world.memory, cams[:1])
        request = generate.make_request(
            rnd, cams, shown, world.memory, frame_index=generate.padding(rnd, generator), prompt=rnd.prompt,
            negative_prompt=settings.negative_prompt, history=history, references=references, first_frame=first,
            fps=fps, seed=settings.seed + world.index if settings.seed_per_round else settings.seed,
            steps=settings.steps, guidance=settings.guidance, round_index=world.index)
        clip = generate.generate(generator, request, rnd, size, should_cancel=should_cancel,
                                 progress=lambda f, s: progress(0.1 + 0.7 * f, s))
    check_cancel()
    progress(0.8, "updating memory")
    changed = _update(world, clip, cams, shown, settings, clock, depth_estimator, segmenter, user_masks)
    with clock("index"):
        grid = index.index_grid(0 if changed.reset else rnd.new_start, rnd.end, fps, INDEX_FPS)
        views, view_arrays = index.index_round(world.views or ViewIndex(), changed.memory, world.cameras,
                                               grid, changed.stats, reset=changed.reset, device=device,
                                               rule="reference" if found.scoring == "reference" else "render")
    check_cancel()
    return _hand_over(world, generator, clip, shown, found, changed, views, view_arrays, clock, started)


@dataclass(eq=False)
class _Changes:
    memory: SpatialMemory
    memory_version: int
    objects_version: int | None
    seen: observe.Observation
    aligned: np.ndarray | None
    confidence: np.ndarray | None
    stats: object
    learned: object
    reset: bool


def _update(world: RoundInputs, clip, cams, shown, settings: GenerateSettings, clock, depth_estimator, segmenter,
            user_masks) -> _Changes:
    """Observe the keyframes, update the memory and the objects, and write their new versions."""
    rnd = world.rnd
    rebuild = settings.update_mode == "mapanything-rebuild"
    keys = observe.keyframes(rnd, world.state["fps"], settings.update_fps)
    if not len(keys):
        empty = observe.observe(rnd, clip.frames, clip.result, cams, keys, with_depth=False)
        return _Changes(world.memory, world.memory_version, world.objects_version, empty, None, None, None, None, False)
    with clock("observe"):
        seen = observe.observe(rnd, clip.frames, clip.result, cams, keys, segmenter=segmenter,
                               prompts=settings.dynamic_prompts, user_masks=user_masks, object_ids=shown.object_ids,
                               objects=shown.objects, depth_estimator=depth_estimator, with_depth=not rebuild)
    with clock("update"):
        if rebuild:
            step = max(1, int(round(world.state["fps"] / settings.update_fps)))
            done = update.posed_rebuild(seen, world.cameras, rnd.new_start, step, depth_estimator,
                                        read_frames=world.read_frames, read_dynamic=world.read_dynamic)
        else:
            done = update.update_static(world.memory, seen, settings.update, anchors=world.first_camera)
        memory = done.memory
        if settings.full_rebuild:
            memory = world.rebuild_memory(extra=(seen.frames, done.aligned, seen.cameras, seen.keys, seen.dynamic,
                                                 done.confidence), settings=settings.update)
        version = world.save_memory(memory, parent=world.memory_version,
                                    message=f"round {world.index}: {rnd.prompt[:80]}")
    learned, objects_version = None, world.objects_version
    if shown.objects is not None:
        with clock("objects"):
            learned = update.update_objects(shown.objects, shown.paths, seen, done.aligned,
                                            voxel=world.state["voxel_size"], fps=world.state["fps"])
            if learned is not None and learned.changed:  # seen, or carried on unseen (its state, its evidence)
                objects_version = world.save_objects(learned.objects, parent=world.objects_version,
                                                     memory_version=version, message=f"round {world.index}")
    return _Changes(memory, version, objects_version, seen, done.aligned, done.confidence, done.stats, learned,
                    reset=settings.update_mode != "incremental")


def _hand_over(world: RoundInputs, generator, clip, shown, found, changed: _Changes, views, view_arrays, clock,
               started) -> RoundOutcome:
    """The round's record and files, and the state the world moves to once they are on disk."""
    rnd = world.rnd
    record = records.round_record(world.index, rnd, generator, clip, shown, found, changed, world.memory_version,
                                  world.objects_version, world.cameras[rnd.start:rnd.end])
    state = copy.deepcopy(world.state)
    state["rounds"].append({k: record[k] for k in ("round", "prompt", "start", "end", "memory_version_in",
                                                   "memory_version_out")})
    lines = commit.camera_lines(world.cameras[rnd.new_start:rnd.end])
    state.update(frames=rnd.end, memory_version=changed.memory_version, objects_version=changed.objects_version,
                 camera_bytes=(world.state.get("camera_bytes") or 0) + len(lines))
    all_cams = world.cameras[: rnd.end]
    seen = changed.seen
    files = commit.RoundFiles(
        root=world.root, index=world.index, clip=clip.frames, new_from=rnd.overlap, new_start=rnd.new_start,
        fps=world.state["fps"], projection=shown.rgb, camera_lines=lines, keys=seen.keys,
        aligned=changed.aligned, dynamic=seen.dynamic, confidence=changed.confidence, views=view_arrays,
        object_ids=shown.object_ids, record=record, state=state,
        measure=lambda: measure.loop_closure(changed.memory, all_cams, clip.frames, rnd, first_frame=world.first_frame,
                                             first_camera=world.first_camera, keyframes_dir=world.root / "keyframes",
                                             read_frames=world.read_frames))
    record["timings"] = clock.seconds
    clock.seconds["total_s"] = time.perf_counter() - started
    return RoundOutcome(record, changed.memory, changed.memory_version, changed.objects_version, views, files)

