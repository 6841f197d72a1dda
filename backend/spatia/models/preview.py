"""The preview "generator": the memory's projection with its holes filled classically.

It is not a generative model and never invents content: it shows what the spatial memory
already holds along the camera path, with holes smoothly filled (push-pull pyramid fill for
colour and depth), so a shot can be checked on any machine, on CPU, in seconds, with no weights.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .base import (
    CancelFn,
    GenerationRequest,
    GenerationResult,
    ModelRequirements,
    ModelUnavailable,
    ProgressFn,
    VideoGenerator,
    raise_if_cancelled,
    report,
)
from .fill import push_pull_fill

# Confidence given to depth that the fill invented (memory depth has confidence 1).
FILLED_DEPTH_CONFIDENCE = 0.2
GREY = 0.5


class PreviewGenerator(VideoGenerator):
    """Projection + push-pull hole filling, deterministic and CPU-friendly.

    temporal_smoothing in [0, 1): where a pixel is a hole in two consecutive frames its fill is
    blended with the previous frame's output by this factor. Frames are filled one at a time,
    so memory stays at a few frames' worth whatever the clip length.
    """

    name = "preview"

    def __init__(self, *, temporal_smoothing: float = 0.5):
        if not 0.0 <= temporal_smoothing < 1.0:
            raise ValueError(f"temporal_smoothing must be in [0, 1), got {temporal_smoothing}")
        self.temporal_smoothing = temporal_smoothing

    @property
    def requirements(self) -> ModelRequirements:
        return ModelRequirements()

    def check_available(self) -> None:
        if importlib.util.find_spec("cv2") is None:
            raise ModelUnavailable("the preview needs OpenCV; run: pip install opencv-python-headless")

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressFn | None = None,
        should_cancel: CancelFn | None = None,
    ) -> GenerationResult:
        frames_total = request.num_frames
        colour_valid = ~request.hole_mask
        depth_valid = colour_valid & (request.projection_depth > 0)
        fallback = self._fallback(request, colour_valid, depth_valid)
        out_rgb = request.projection.copy()
        out_depth = request.projection_depth.copy()
        previous: tuple[np.ndarray, np.ndarray] | None = None
        report(progress, 0.0, "filling holes")
        for i in range(frames_total):
            raise_if_cancelled(should_cancel)
            values = np.concatenate([request.projection[i] / np.float32(255), request.projection_depth[i][..., None]], axis=2)
            weights = np.repeat(np.stack([colour_valid[i], depth_valid[i]], axis=2), [3, 1], axis=2).astype(np.float32)
            filled = push_pull_fill(values, weights, fallback)
            if previous is not None and self.temporal_smoothing > 0:
                filled = self._blend_with_previous(filled, weights, *previous)
            previous = (filled, weights)
            holes = ~colour_valid[i]
            out_rgb[i][holes] = (np.clip(filled[..., :3][holes], 0, 1) * 255 + 0.5).astype(np.uint8)
            depth_holes = ~depth_valid[i]
            out_depth[i][depth_holes] = np.maximum(filled[..., 3][depth_holes], 0)
            report(progress, (i + 1) / frames_total * 0.99, "filling holes")
        self._pin_known_frames(request, out_rgb)
        confidence = np.where(depth_valid, 1.0, FILLED_DEPTH_CONFIDENCE).astype(np.float32)
        confidence[out_depth <= 0] = 0.0
        report(progress, 1.0, "done")
        return GenerationResult(
            frames=out_rgb,
            depth=out_depth,
            info={
                "generator": self.name,
                "method": "memory projection with push-pull hole filling (preview, not generative)",
                "depth_confidence": confidence,
                "filled_mask": ~colour_valid,
                "hole_fraction": float(request.hole_mask.mean()),
            },
        )

    def _blend_with_previous(self, filled: np.ndarray, weights: np.ndarray, prev_filled: np.ndarray, prev_weights: np.ndarray) -> np.ndarray:
        """Where a pixel is a hole in this frame and the previous one, pull its fill towards the
        previous output: damps the flicker of a pyramid fill under small camera motion."""
        both_holes = (weights == 0) & (prev_weights == 0)
        return np.where(both_holes, filled + self.temporal_smoothing * (prev_filled - filled), filled)

    @staticmethod
    def _fallback(request: GenerationRequest, colour_valid: np.ndarray, depth_valid: np.ndarray) -> np.ndarray:
        """Per-channel clip-wide mean (of a 4x-strided sample: it only needs to be plausible),
        for frames where the memory shows nothing at all."""
        sample = (slice(None), slice(None, None, 4), slice(None, None, 4))
        rgb = request.projection[sample][colour_valid[sample]]
        colour = rgb.mean(axis=0) / 255.0 if len(rgb) else np.full(3, GREY)
        depth = request.projection_depth[sample][depth_valid[sample]]
        return np.array([*colour, float(depth.mean()) if depth.size else 0.0], dtype=np.float32)

    @staticmethod
    def _pin_known_frames(request: GenerationRequest, out_rgb: np.ndarray) -> None:
        """Round 0's first frame and the previous clip's history are exact outputs (history wins)."""
        if request.first_frame is not None:
            out_rgb[0] = request.first_frame
        if request.history is not None:
            out_rgb[: len(request.history)] = request.history
