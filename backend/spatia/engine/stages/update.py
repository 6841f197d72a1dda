"""Update: the new clip's keyframes enter the memory (aligned, dynamic pixels kept out, carved,
fused), and the moving things it saw update the objects."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.errors import WorldError
from spatia.engine.memory import SpatialMemory
from spatia.engine.objects import KeyViews, ObjectSet, learn
from spatia.engine.objects import observe as observe_objects
from spatia.engine.update import UpdateSettings, UpdateStats, rebuild_with_known_poses, update_memory

from .observe import Observation


@dataclass(frozen=True, eq=False)
class MemoryUpdate:
    """The updated memory, the keyframes' depth as it entered the memory (aligned) with its
    confidence, and the update's statistics (None for the posed rebuild)."""

    memory: SpatialMemory
    aligned: np.ndarray
    confidence: np.ndarray | None
    stats: UpdateStats | None


def update_static(memory: SpatialMemory, seen: Observation, settings: UpdateSettings, *,
                  anchors: Cameras | None = None) -> MemoryUpdate:
    """The incremental update: depth estimated by a model (or a generator's own that says it is not
    in the memory's frame) is aligned to the memory; other depth the generator returns is already
    in the memory's frame (the preview's comes from the memory, the oracle's is exact) and enters
    as it is."""
    settings = replace(settings, align=settings.align and not seen.generated_depth)
    new, aligned, stats = update_memory(memory, seen.frames, seen.depth, seen.cameras, seen.keys, dynamic=seen.dynamic,
                                        confidence=seen.confidence, anchors=anchors, settings=settings)
    return MemoryUpdate(new, aligned, seen.confidence, stats)


def posed_rebuild(seen: Observation, cameras: Cameras, start: int, step: int, depth_estimator, *,
                  read_frames, read_dynamic) -> MemoryUpdate:
    """The paper's update: the memory rebuilt from every frame so far on the update grid (the first
    image included) by a depth model given the known poses and intrinsics (`cameras`: every
    frame's). `read_frames(indices)` and `read_dynamic(index)` give the past frames and their
    dynamic masks (None where none was saved)."""
    if depth_estimator is None:
        raise WorldError("update mode mapanything-rebuild needs a depth model (map-anything)")
    past = list(range(0, start, step))
    height, width = seen.frames.shape[1:3]
    masks = [read_dynamic(g) for g in past]
    masks = [np.zeros((height, width), bool) if m is None else m for m in masks]
    indices = np.array(past + seen.keys.tolist(), dtype=np.int64)
    images = np.concatenate(([read_frames(past)] if past else []) + [seen.frames])
    dynamic = np.concatenate([np.stack(masks), seen.dynamic]) if masks else seen.dynamic
    try:
        memory, depth, confidence = rebuild_with_known_poses(images, cameras[indices], indices, depth_estimator,
                                                             dynamic=dynamic)
    except ValueError as err:
        raise WorldError(str(err)) from None
    return MemoryUpdate(memory, depth[len(past):], confidence[len(past):], None)


def update_objects(objects: ObjectSet, paths: dict, seen: Observation, aligned: np.ndarray, *, voxel: float,
                   fps: float):
    """The objects after the clip (tracks matched, updated, new ones made, unseen ones carried on
    with their negative evidence), or None when the round saw no object and remembered none."""
    if not (len(objects) or seen.instances.any()):
        return None
    clip = observe_objects(seen.frames, aligned, seen.cameras, seen.keys, seen.instances, objects.up)
    # the keyframes as views too: a predicted place seen empty is evidence against the prediction
    return learn(objects, paths, clip, seen.labels, voxel, fps,
                 views=KeyViews(seen.cameras, aligned, seen.instances, seen.keys))


def replay_keyframes(memory: SpatialMemory, keys: list[int], cameras: Cameras, *, read_frames, read_keyframe,
                     settings: UpdateSettings, extra=None) -> SpatialMemory:
    """`memory` with the saved keyframes `keys` fused again in order, a few at a time, then `extra`
    (frames, depth, cameras, keys, dynamic, confidence) when given: the paper's per-round rebuild,
    whose cost grows with the video. `read_keyframe(key)` gives a keyframe's saved arrays."""
    replay = UpdateSettings(**dict(settings.__dict__, align=False))
    for start in range(0, len(keys), settings.chunk_frames):
        part = keys[start:start + settings.chunk_frames]
        saved = [read_keyframe(k) for k in part]
        depth = np.stack([s["depth"].astype(np.float32) for s in saved])
        memory, _, _ = update_memory(memory, read_frames(part), depth, cameras[part], part,
                                     dynamic=np.stack([s["dynamic"] for s in saved]),
                                     confidence=np.stack([s["confidence"].astype(np.float32) for s in saved]),
                                     settings=replay)
    if extra is not None:
        frames, depth, cams, extra_keys, dynamic, confidence = extra
        memory, _, _ = update_memory(memory, frames, depth, cams, extra_keys, dynamic=dynamic, confidence=confidence,
                                     settings=replay)
    return memory


def read_dynamic(root, frame: int) -> np.ndarray | None:
    """The dynamic mask saved with a world's keyframe, or None when the frame has none."""
    try:
        with np.load(f"{root}/keyframes/{frame:06d}.npz") as saved:
            return saved["dynamic"]
    except FileNotFoundError:
        return None
