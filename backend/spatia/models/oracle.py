"""The oracle generator: returns ground-truth frames (and exact depth) for the requested
cameras, e.g. Blender renders of a known scene. It isolates the memory pipeline
(initialisation, alignment, fusion, carving, retrieval) from any generative model, for
evaluation and tests. It is not a generative model.
"""

from __future__ import annotations

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

GroundTruth = Callable[[Cameras], tuple[np.ndarray, np.ndarray]]


class OracleGenerator(VideoGenerator):
    """`source(cameras) -> (frames uint8 [F,H,W,3], depth float32 [F,H,W])` supplies the truth."""

    name = "oracle"

    def __init__(self, source: GroundTruth):
        self.source = source

    @property
    def requirements(self) -> ModelRequirements:
        return ModelRequirements()

    def check_available(self) -> None:
        return None

    def generate(self, request: GenerationRequest, progress: ProgressFn | None = None,
                 should_cancel: CancelFn | None = None) -> GenerationResult:
        raise_if_cancelled(should_cancel)
        report(progress, 0.0, "rendering ground truth")
        frames, depth = self.source(request.cameras)
        frames = np.asarray(frames, dtype=np.uint8)
        depth = np.asarray(depth, dtype=np.float32)
        f, h, w = request.num_frames, *request.size
        if frames.shape != (f, h, w, 3) or depth.shape != (f, h, w):
            raise ValueError(f"ground truth must be [{f}, {h}, {w}, 3] frames and [{f}, {h}, {w}] depth, "
                             f"got {list(frames.shape)} and {list(depth.shape)}")
        if request.history is not None:
            frames = frames.copy()
            frames[: len(request.history)] = request.history  # the overlap is the previous clip's
        report(progress, 1.0, "ground truth ready")
        return GenerationResult(frames=frames, depth=depth, info={"generator": "oracle"})


class FrameTable:
    """Ground truth looked up from frames rendered beforehand, matched by camera pose."""

    def __init__(self, cameras: Cameras, frames: np.ndarray, depth: np.ndarray):
        self.cameras, self.frames, self.depth = cameras, np.asarray(frames), np.asarray(depth)

    def __call__(self, cameras: Cameras) -> tuple[np.ndarray, np.ndarray]:
        # nearest stored pose for each requested one (exact for frames of the same path)
        dist = np.abs(cameras.w2c[:, None] - self.cameras.w2c[None]).max(axis=(2, 3))
        index = dist.argmin(axis=1)
        if (dist[np.arange(len(index)), index] > 1e-6).any():
            raise ValueError("the oracle has no ground truth for some requested cameras")
        return self.frames[index], self.depth[index]
