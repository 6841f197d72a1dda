"""The preview "generator": the memory's projection with its holes filled classically.

It is not a generative model and never invents content: it shows what the spatial memory
already holds along the camera path, with holes smoothly filled (push-pull pyramid fill for
colour and depth), so a shot can be checked on any machine, on CPU, in seconds, with no weights.
"""

from __future__ import annotations

import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor

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

# Confidence given to depth that the fill invented (memory depth has confidence 1).
FILLED_DEPTH_CONFIDENCE = 0.2
GREY = 127.5


class PreviewGenerator(VideoGenerator):
    """Projection + push-pull hole filling, deterministic and CPU-friendly.

    temporal_smoothing in [0, 1): where a pixel is a hole in two consecutive frames its fill is
    blended with the previous frame's output by this factor. Frames are filled a few at a time
    on `workers` threads, so memory stays at a few frames' worth whatever the clip length.
    """

    name = "preview"

    def __init__(self, *, temporal_smoothing: float = 0.5, workers: int | None = None):
        if not 0.0 <= temporal_smoothing < 1.0:
            raise ValueError(f"temporal_smoothing must be in [0, 1), got {temporal_smoothing}")
        self.temporal_smoothing = temporal_smoothing
        self.workers = max(1, workers or min(8, os.cpu_count() or 1))

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
        self.check_available()
        frames_total = request.num_frames
        colour_valid = ~request.hole_mask
        depth_valid = colour_valid & (request.projection_depth > 0)
        fallback = self._fallback(request, colour_valid, depth_valid)
        out_rgb = request.projection.copy()
        out_depth = request.projection_depth.copy()
        previous: tuple[np.ndarray, np.ndarray] | None = None

        def fill(i: int) -> tuple[np.ndarray, np.ndarray]:
            return self._half_resolution_fill(
                request.projection[i], request.projection_depth[i], colour_valid[i], depth_valid[i], fallback
            )

        report(progress, 0.0, "filling holes")
        # Frames are filled independently in threads (OpenCV and numpy release the GIL), a small
        # window at a time to bound memory; the temporal blend then runs in frame order.
        with ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, frames_total, 2 * self.workers):
                raise_if_cancelled(should_cancel)
                window = range(start, min(start + 2 * self.workers, frames_total))
                for i, (estimate, holes_half) in zip(window, pool.map(fill, window)):
                    if previous is not None and self.temporal_smoothing > 0:
                        estimate = self._blend_with_previous(estimate, holes_half, *previous)
                    previous = (estimate, holes_half)
                    self._paste_holes(estimate, colour_valid[i], depth_valid[i], out_rgb[i], out_depth[i])
                    report(progress, (i + 1) / frames_total * 0.99, "filling holes")
        self._pin_known_frames(request, out_rgb)
        confidence = np.where(depth_valid, np.float32(1.0), np.float32(FILLED_DEPTH_CONFIDENCE))
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
                "hole_fraction": np.count_nonzero(request.hole_mask) / request.hole_mask.size,
            },
        )

    @staticmethod
    def _half_resolution_fill(
        rgb: np.ndarray, depth: np.ndarray, colour_valid: np.ndarray, depth_valid: np.ndarray, fallback: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame's fill at half resolution -> (rgb 0..255 + depth [h,w,4], hole flags [h,w,4]).

        Holes at full resolution take exactly the upsampled half-resolution fill (their own
        weight is 0), so the full-resolution pull step is skipped; known pixels are copied.
        """
        from .fill import build_pyramid, pull  # OpenCV is imported on first use, not with the package

        colour = build_pyramid(rgb.astype(np.float32), colour_valid[..., None])
        depth = build_pyramid(depth[..., None], depth_valid[..., None])
        level = min(1, len(colour) - 1)
        estimate = np.concatenate([pull(colour, fallback[:3], level), pull(depth, fallback[3:], level)], axis=2)
        holes = np.concatenate([colour[level][1], depth[level][1]], axis=2) == 0
        return estimate, holes

    @staticmethod
    def _paste_holes(
        estimate: np.ndarray, colour_valid: np.ndarray, depth_valid: np.ndarray, rgb_out: np.ndarray, depth_out: np.ndarray
    ) -> None:
        """Upsample the half-resolution estimate and write it into the hole pixels, in place.
        Colour is rounded to uint8 before upsampling: bilinear uint8 resizing is the fast path."""
        import cv2
        height, width = depth_out.shape
        colour_half = np.ascontiguousarray(estimate[..., :3] + 0.5).astype(np.uint8)
        depth_half = np.ascontiguousarray(np.maximum(estimate[..., 3], 0))
        colour = cv2.resize(colour_half, (width, height), interpolation=cv2.INTER_LINEAR)
        depth = cv2.resize(depth_half, (width, height), interpolation=cv2.INTER_LINEAR)
        cv2.copyTo(colour, (~colour_valid).view(np.uint8), rgb_out)
        cv2.copyTo(depth, (~depth_valid).view(np.uint8), depth_out)

    def _blend_with_previous(
        self, estimate: np.ndarray, holes: np.ndarray, prev_estimate: np.ndarray, prev_holes: np.ndarray
    ) -> np.ndarray:
        """Where a region is a hole in this frame and the previous one, pull its fill towards the
        previous output: damps the flicker of a pyramid fill under small camera motion."""
        both = holes & prev_holes
        return np.where(both, estimate + self.temporal_smoothing * (prev_estimate - estimate), estimate)

    @staticmethod
    def _fallback(request: GenerationRequest, colour_valid: np.ndarray, depth_valid: np.ndarray) -> np.ndarray:
        """Per-channel clip-wide mean (of a 4x-strided sample: it only needs to be plausible),
        for frames where the memory shows nothing at all."""
        sample = (slice(None), slice(None, None, 4), slice(None, None, 4))
        rgb = request.projection[sample][colour_valid[sample]]
        colour = rgb.mean(axis=0) if len(rgb) else np.full(3, GREY)
        depth = request.projection_depth[sample][depth_valid[sample]]
        return np.array([*colour, float(depth.mean()) if depth.size else 0.0], dtype=np.float32)

    @staticmethod
    def _pin_known_frames(request: GenerationRequest, out_rgb: np.ndarray) -> None:
        """Round 0's first frame and the previous clip's history are exact outputs (history wins)."""
        if request.first_frame is not None:
            out_rgb[0] = request.first_frame
        if request.history is not None:
            out_rgb[: len(request.history)] = request.history
