"""The oracle generator: returns ground-truth frames (and exact depth) for the requested
cameras, e.g. Blender renders of a known scene. It isolates the memory pipeline
(initialisation, alignment, fusion, carving, retrieval) from any generative model, for
evaluation and tests. It is not a generative model.

A source that also knows which moving object each pixel shows returns a third array, int32
instance masks [F,H,W] (0 = none); the oracle then puts them in the result's info as
`instance_masks` with `instance_labels` ({id: label}), which the world reads to keep moving
things out of the static memory and to track them as objects. With `renumber_seed` set, the ids
are renumbered per clip with a random permutation, so that nothing downstream can recognise an
object by its id across clips; `renumberings[round_index]` keeps each clip's {truth id: clip id}
for the evaluation (it is not in the result).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from spatia.cameras import Cameras

from .base import (
    CancelFn,
    GenerationRequest,
    GenerationResult,
    ModelRequirements,
    ProgressFn,
    VideoGenerator,
    raise_if_cancelled,
    report,
)

GroundTruth = Callable[[Cameras], tuple]
RENUMBER_POOL = 4  # clip ids are drawn from 1 .. max(RENUMBER_POOL * ids, 8)


def renumbering(truth_ids, rng: np.random.Generator) -> dict[int, int]:
    """A random one-to-one map from the given positive ids to clip ids drawn without
    replacement from 1 .. max(4 n, 8) (so even a single object's id changes from clip to clip)."""
    ids = sorted({int(i) for i in truth_ids if int(i) > 0})
    pool = np.arange(1, max(RENUMBER_POOL * len(ids), 8) + 1)
    drawn = rng.permutation(pool)[: len(ids)]
    return {t: int(c) for t, c in zip(ids, drawn)}



def ground_truth(source: GroundTruth, request: GenerationRequest):
    """(frames uint8 [F,H,W,3], depth float32 [F,H,W], instances or None) of `source` along the
    request's cameras, shapes checked. A source that can place the clip in the video (a camera
    held still while things move has the same pose in many frames) is told where it starts."""
    takes_start = "start_frame" in inspect.signature(source).parameters
    truth = source(request.cameras, start_frame=request.start_frame) if takes_start else source(request.cameras)
    frames, depth = np.asarray(truth[0], dtype=np.uint8), np.asarray(truth[1], dtype=np.float32)
    f, h, w = request.num_frames, *request.size
    if frames.shape != (f, h, w, 3) or depth.shape != (f, h, w):
        raise ValueError(f"ground truth must be [{f}, {h}, {w}, 3] frames and [{f}, {h}, {w}] depth, "
                         f"got {list(frames.shape)} and {list(depth.shape)}")
    return frames, depth, truth[2] if len(truth) > 2 else None


class GroundTruthGenerator(VideoGenerator):
    """A generator that reads its clips from a ground-truth `source` (see ground_truth): no
    weights, nothing to load. Subclasses turn the truth into their result."""

    def __init__(self, source: GroundTruth):
        self.source = source

    @property
    def requirements(self) -> ModelRequirements:
        return ModelRequirements()

    def check_available(self) -> None:
        return None

    def truth(self, request: GenerationRequest, progress: ProgressFn | None,
              should_cancel: CancelFn | None) -> tuple:
        """ground_truth() of the request, after the usual cancel check and first progress report."""
        raise_if_cancelled(should_cancel)
        report(progress, 0.0, "rendering ground truth")
        return ground_truth(self.source, request)


def with_history(frames: np.ndarray, request: GenerationRequest) -> np.ndarray:
    """`frames` whose first ones are the previous clip's (the overlap it hands over), as every
    generator returns them; a copy when there is history to put in."""
    if request.history is None:
        return frames
    frames = frames.copy()
    frames[: len(request.history)] = request.history
    return frames


class OracleGenerator(GroundTruthGenerator):
    """`source(cameras) -> (frames uint8 [F,H,W,3], depth float32 [F,H,W][, instances int32
    [F,H,W]])` supplies the truth; `instance_labels` ({truth id: label}) names the instances."""

    name = "oracle"

    def __init__(self, source: GroundTruth, *, instance_labels: dict | None = None,
                 renumber_seed: int | None = None):
        super().__init__(source)
        self.instance_labels = {int(k): str(v) for k, v in (instance_labels or {}).items()}
        self._rng = None if renumber_seed is None else np.random.default_rng(renumber_seed)
        self.renumberings: dict[int, dict[int, int]] = {}

    def generate(self, request: GenerationRequest, progress: ProgressFn | None = None,
                 should_cancel: CancelFn | None = None) -> GenerationResult:
        frames, depth, instances = self.truth(request, progress, should_cancel)
        f, h, w = request.num_frames, *request.size
        frames = with_history(frames, request)
        info = {"generator": "oracle"}
        if instances is not None:
            info.update(self._instances(np.asarray(instances), (f, h, w), request.round_index))
        report(progress, 1.0, "ground truth ready")
        return GenerationResult(frames=frames, depth=depth, info=info)

    def _instances(self, instances: np.ndarray, shape, round_index: int) -> dict:
        if instances.shape != shape or not np.issubdtype(instances.dtype, np.integer):
            raise ValueError(f"instance masks must be integer {list(shape)}, got {instances.dtype} "
                             f"{list(instances.shape)}")
        present = [int(i) for i in np.unique(instances) if i > 0]
        if self._rng is None:
            ids = {i: i for i in present}
        else:
            ids = renumbering(present, self._rng)
        self.renumberings[round_index] = ids
        lookup = np.zeros(int(instances.max(initial=0)) + 1, dtype=np.int32)
        for truth_id, clip_id in ids.items():
            lookup[truth_id] = clip_id
        masks = lookup[np.clip(instances, 0, None)]
        labels = {clip_id: self.instance_labels.get(truth_id, "object") for truth_id, clip_id in ids.items()}
        return {"instance_masks": masks.astype(np.int32), "instance_labels": labels}


class FrameTable:
    """Ground truth looked up from frames rendered beforehand, matched by camera pose (and
    instance masks when given: then a lookup returns three arrays).

    A request is a run of consecutive frames of the stored path, so when a pose occurs more
    than once (a closed loop's last frame is its first) the run that matches as a whole decides.
    """

    TOLERANCE = 1e-6

    def __init__(self, cameras: Cameras, frames: np.ndarray, depth: np.ndarray, instances: np.ndarray | None = None):
        self.cameras, self.frames, self.depth = cameras, np.asarray(frames), np.asarray(depth)
        self.instances = None if instances is None else np.asarray(instances, dtype=np.int32)

    def index(self, cameras: Cameras, start_frame: int | None = None) -> np.ndarray:
        """The stored frame of each requested camera: the run from `start_frame` when its poses
        are the requested ones, else the first run of the path that matches, else the nearest."""
        dist = np.abs(cameras.w2c[:, None] - self.cameras.w2c[None]).max(axis=(2, 3))
        if start_frame is not None and 0 <= start_frame and start_frame + len(cameras) <= len(self.cameras):
            run = start_frame + np.arange(len(cameras))
            if (dist[np.arange(len(cameras)), run] <= self.TOLERANCE).all():
                return run
        match = dist <= self.TOLERANCE
        if not match.any(axis=1).all():
            raise ValueError("the oracle has no ground truth for some requested cameras")
        n, m = match.shape
        starts = [s for s in np.flatnonzero(match[0]) if s + n <= m and match[np.arange(n), s + np.arange(n)].all()]
        if starts:
            return int(starts[0]) + np.arange(n)
        return dist.argmin(axis=1)  # not a run of the path: the nearest pose, frame by frame

    def __call__(self, cameras: Cameras, start_frame: int | None = None) -> tuple:
        index = self.index(cameras, start_frame)
        if self.instances is None:
            return self.frames[index], self.depth[index]
        return self.frames[index], self.depth[index], self.instances[index]
