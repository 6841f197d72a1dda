"""Known depth maps as a depth source, e.g. Blender's Z pass for a rendered first frame."""

from __future__ import annotations

import numpy as np

from .base import DepthEstimator, DepthResult, ModelInputError, ModelRequirements, check_images, check_intrinsics


class ExactDepth(DepthEstimator):
    """Wraps depth maps that are already known exactly.

    depth: [F,H,W] or [H,W], metres along the optical axis (z, as Blender's Z pass; not ray
    length); 0, negative or non-finite values mean "no depth" (e.g. the sky).
    intrinsics: [F,4] or [4] pixels, used when estimate() is called without intrinsics.
    Confidence is 1 wherever depth is valid: nothing about it is estimated.
    """

    name = "exact"

    def __init__(self, depth: np.ndarray, intrinsics: np.ndarray | None = None):
        depth = np.asarray(depth, dtype=np.float32)
        if depth.ndim == 2:
            depth = depth[None]
        if depth.ndim != 3:
            raise ModelInputError(f"depth must be [F, H, W] or [H, W], got shape {list(depth.shape)}")
        self.depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
        self.intrinsics = None if intrinsics is None else check_intrinsics(intrinsics, len(self.depth))

    @property
    def requirements(self) -> ModelRequirements:
        return ModelRequirements()

    def check_available(self) -> None:
        return None

    def estimate(self, images: np.ndarray, intrinsics: np.ndarray | None = None) -> DepthResult:
        images = check_images(images, "images")
        if images.shape[:3] != self.depth.shape:
            raise ModelInputError(
                f"images {list(images.shape[:3])} do not match the known depth maps {list(self.depth.shape)} ([F, H, W])"
            )
        if intrinsics is not None:
            k = check_intrinsics(intrinsics, len(images))
        elif self.intrinsics is not None:
            k = self.intrinsics.copy()
        else:
            raise ModelInputError("ExactDepth has no intrinsics: pass them to ExactDepth(...) or to estimate()")
        confidence = (self.depth > 0).astype(np.float32)
        return DepthResult(self.depth.copy(), k, confidence)

