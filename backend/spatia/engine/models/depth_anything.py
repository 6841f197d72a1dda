"""Depth Anything V2 metric (transformers DepthAnythingForDepthEstimation, metric head)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .base import DepthEstimator, DepthResult, ModelUnavailable, check_images, check_intrinsics
from .imaging import (
    DEFAULT_FOV_X_DEG,
    IMAGENET_MEAN,
    IMAGENET_STD,
    default_intrinsics,
    finalize_depth,
    images_to_tensor,
    normalize,
    resize,
)
from .loading import PretrainedAdapter

PATCH_MULTIPLE = 14
DEFAULT_INPUT_SIZE = 518


def dpt_resize_shape(height: int, width: int, target: int, multiple: int = PATCH_MULTIPLE) -> tuple[int, int]:
    """The DPT processor's keep-aspect-ratio rule: scale as little as possible towards a
    target x target square, then round each side to a multiple of the patch size."""
    scale_h, scale_w = target / height, target / width
    scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h

    def to_multiple(value: float) -> int:
        return max(multiple, int(round(value / multiple) * multiple))

    return to_multiple(scale * height), to_multiple(scale * width)


class DepthAnythingMetricEstimator(PretrainedAdapter, DepthEstimator):
    """Metric depth in metres from the V2 metric checkpoints (indoor: max 20 m, outdoor: 80 m).

    The model predicts no focal length. Returned intrinsics are the given ones, else a pinhole
    with a centred principal point and `fov_x_deg` horizontal field of view (default 60 deg,
    the Hypersim training camera), so back-projection has a documented, overridable focal.
    The depth itself does not depend on the focal: the checkpoint was trained at a fixed camera.
    Relative-depth checkpoints are refused: they carry no metric scale.
    """

    default_preset = "depth-anything-v2-metric-indoor"

    def __init__(
        self,
        preset: str | None = None,
        *,
        input_size: int | None = None,
        fov_x_deg: float = DEFAULT_FOV_X_DEG,
        batch_size: int = 8,
        **kwargs,
    ):
        super().__init__(preset, **kwargs)
        self._input_size = input_size
        self.fov_x_deg = fov_x_deg
        self.batch_size = batch_size

    def _load(self, folder: Path):
        from transformers import DepthAnythingForDepthEstimation

        model = DepthAnythingForDepthEstimation.from_pretrained(folder, local_files_only=True)
        if self._input_size is None:
            self._input_size = _processor_size(folder)
        return model

    def _metric_model(self):
        model = self.model  # loading may also read the input size from preprocessor_config.json
        if model.config.depth_estimation_type != "metric":
            raise ModelUnavailable(
                f"{self.name}: the checkpoint predicts relative depth, which has no metric scale; "
                "use a Depth-Anything-V2-Metric-* checkpoint"
            )
        return model

    @torch.inference_mode()
    def estimate(self, images: np.ndarray, intrinsics: np.ndarray | None = None) -> DepthResult:
        images = check_images(images, "images")
        frames, height, width = images.shape[:3]
        k = default_intrinsics(frames, width, height, self.fov_x_deg) if intrinsics is None else check_intrinsics(intrinsics, frames)
        model = self._metric_model()
        net_size = dpt_resize_shape(height, width, self._input_size or DEFAULT_INPUT_SIZE)
        depths = []
        for start in range(0, frames, self.batch_size):
            x = images_to_tensor(images[start : start + self.batch_size], self.device, self.dtype)
            x = normalize(resize(x, net_size, mode="bicubic").clamp(0, 1), IMAGENET_MEAN, IMAGENET_STD)
            predicted = model(pixel_values=x).predicted_depth.float()
            depths.append(resize(predicted[:, None], (height, width), mode="bicubic")[:, 0])
        depth, confidence = finalize_depth(torch.cat(depths))
        return DepthResult(depth, k, confidence)


def _processor_size(folder: Path) -> int | None:
    """The target side length from the checkpoint's preprocessor_config.json, if it has one."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None
    size = json.loads(path.read_text()).get("size", {})
    if isinstance(size, int):
        return size
    return int(size.get("height") or size.get("shortest_edge") or DEFAULT_INPUT_SIZE)
