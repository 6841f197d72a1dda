"""Observe: what the new clip says about the world at its keyframes: which pixels belong to
moving things (instances), and depth with a confidence."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.errors import WorldError
from spatia.engine.models.base import DepthEstimator, GenerationResult, Segmenter
from spatia.engine.objects import ObjectSet, split_components
from spatia.engine.plan import Round


@dataclass(frozen=True, eq=False)
class Observation:
    """The round's keyframes: video frame indices `keys` (`local` within the clip), their frames and
    cameras; instances int32 [K,H,W] (0 = static) with labels; depth float32 [K,H,W] and confidence
    (or None) when the update needs them; `generated_depth`: the depth came from the generator (in
    the memory's frame already, so it is not aligned)."""

    keys: np.ndarray
    local: np.ndarray
    frames: np.ndarray
    cameras: Cameras | None
    instances: np.ndarray
    labels: dict[int, str] = field(default_factory=dict)
    depth: np.ndarray | None = None
    confidence: np.ndarray | None = None
    generated_depth: bool = False

    @property
    def dynamic(self) -> np.ndarray:
        return self.instances > 0  # moving things never enter the static memory, remembered or not


def keyframes(rnd: Round, fps: float, update_fps: float) -> np.ndarray:
    """The round's new frames on the update grid (video frame indices)."""
    new = np.arange(rnd.new_start, rnd.end)
    step = max(1, int(round(fps / update_fps)))
    return new[new % step == 0]


def key_instances(shape: tuple[int, int, int], keys, local, result: GenerationResult, frames: np.ndarray, *,
                  segmenter: Segmenter | None, prompts, user_masks, object_ids, objects: ObjectSet | None):
    """Instance ids (int32 [K,H,W], 0 = static) and labels of the keyframes, from every source
    there is: the segmenter's instances, the user's masks (an integer mask labels instances, a
    boolean one is split into components), the generator's own (the oracle's truth), and for a
    generator that copied the conditioning (the preview) the objects it was shown. A later source
    only labels pixels the earlier ones left static."""
    out = np.zeros(shape, np.int32)
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

    if segmenter is not None and prompts:
        add(*segmenter.segment_instances(frames, prompts))
    if user_masks is not None:
        add(np.asarray(user_masks)[keys])
    if isinstance(result.info.get("instance_masks"), np.ndarray):
        add(result.info["instance_masks"][local], result.info.get("instance_labels"))
    if object_ids is not None and isinstance(result.info.get("filled_mask"), np.ndarray):
        shown = np.where(result.info["filled_mask"][local], 0, object_ids[local])
        add(shown, {o.id: o.label for o in objects.objects})
    return out, labels


def key_depth(result: GenerationResult, local: np.ndarray, frames: np.ndarray, cameras: Cameras,
              depth_estimator: DepthEstimator | None):
    """Depth and confidence of the keyframes: the generator's own when it returns depth, else the
    estimator's."""
    if result.depth is not None:
        depth, confidence = result.depth[local], None
        # a generator that invents depth (the preview's hole filling) says how much to trust it
        if isinstance(result.info.get("depth_confidence"), np.ndarray):
            confidence = result.info["depth_confidence"][local]
        # one that says which pixels it filled (the preview) copied the rest from the memory's
        # own projection: they tell the memory nothing new
        if isinstance(result.info.get("filled_mask"), np.ndarray):
            copied = ~result.info["filled_mask"][local]
            base = np.ones(depth.shape, np.float32) if confidence is None else confidence
            confidence = np.where(copied, np.float32(0.0), base).astype(np.float32)
        return depth, confidence
    if depth_estimator is None:
        raise WorldError("the generator returns no depth: a depth estimator is needed to update the memory")
    estimate = depth_estimator.estimate(frames, cameras.intrinsics)
    return estimate.depth, estimate.confidence


def observe(rnd: Round, clip: np.ndarray, result: GenerationResult, cameras: Cameras, keys: np.ndarray, *,
            segmenter=None, prompts=(), user_masks=None, object_ids=None, objects=None, depth_estimator=None,
            with_depth: bool = True) -> Observation:
    """The keyframes `keys` of the clip (`cameras`: the round's), observed. `with_depth` False
    leaves depth to the update (the paper's posed rebuild estimates it with every past frame)."""
    local = keys - rnd.start
    frames = clip[local]
    key_cams = cameras[local] if len(local) else None
    instances, labels = key_instances((len(keys), *clip.shape[1:3]), keys, local, result, frames,
                                      segmenter=segmenter, prompts=prompts, user_masks=user_masks,
                                      object_ids=object_ids, objects=objects)
    depth = confidence = None
    if with_depth and len(keys):
        depth, confidence = key_depth(result, local, frames, key_cams, depth_estimator)
    # depth a generator returns is in the memory's frame unless it says otherwise (a disagreeing one)
    in_frame = result.depth is not None and result.info.get("depth_in_memory_frame") is not False
    return Observation(keys, local, frames, key_cams, instances, labels, depth, confidence, generated_depth=in_frame)
