"""Apple DepthPro (transformers): metric depth plus a horizontal field of view from one image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import DepthEstimator, DepthResult, check_images, check_intrinsics
from .imaging import DEFAULT_FOV_X_DEG, HALF_MEAN_STD, finalize_depth, focal_from_fov, images_to_tensor, normalize, resize
from .loading import PretrainedAdapter


class DepthProEstimator(PretrainedAdapter, DepthEstimator):
    """DepthProForDepthEstimation with the processor's preprocessing done in batched torch.

    The network predicts canonical inverse depth; metric depth is focal / (width * prediction),
    as in the image processor's post_process_depth_estimation. The focal length comes from the
    given intrinsics when there are some (which also fixes the metric scale), else from the
    model's field-of-view head, else from `default_fov_x_deg`.
    """

    default_preset = "depth-pro"

    def __init__(self, preset: str | None = None, *, batch_size: int = 4, default_fov_x_deg: float = DEFAULT_FOV_X_DEG, **kwargs):
        super().__init__(preset, **kwargs)
        self.batch_size = batch_size
        self.default_fov_x_deg = default_fov_x_deg

    def _load(self, folder: Path):
        from transformers import DepthProForDepthEstimation

        return DepthProForDepthEstimation.from_pretrained(folder, local_files_only=True)

    @property
    def input_size(self) -> int:
        """Square network input: the patch size at the smallest pyramid ratio (1536 for the release)."""
        cfg = self.model.config
        return int(round(cfg.patch_size / min(cfg.scaled_images_ratios)))

    @torch.inference_mode()
    def estimate(self, images: np.ndarray, intrinsics: np.ndarray | None = None) -> DepthResult:
        images = check_images(images, "images")
        frames, height, width = images.shape[:3]
        given = None if intrinsics is None else check_intrinsics(intrinsics, frames)
        size = self.input_size
        depths, focals = [], []
        for start in range(0, frames, self.batch_size):
            chunk = images[start : start + self.batch_size]
            x = normalize(images_to_tensor(chunk, self.device, self.dtype), HALF_MEAN_STD, HALF_MEAN_STD)
            out = self.model(pixel_values=resize(x, (size, size)))
            focal = self._focal(out.field_of_view, given, start, len(chunk), width)
            inverse = out.predicted_depth.float() * (width / focal)[:, None, None]
            inverse = resize(inverse[:, None], (height, width))[:, 0]
            depths.append(1.0 / inverse.clamp(1e-4, 1e4))
            focals.append(focal)
        depth, confidence = finalize_depth(torch.cat(depths))
        if given is not None:
            k = given
        else:
            f = torch.cat(focals).double().cpu().numpy()
            k = np.stack([f, f, np.full_like(f, width / 2), np.full_like(f, height / 2)], axis=1)
        return DepthResult(depth, k, confidence)

    def _focal(self, fov_deg: torch.Tensor | None, given: np.ndarray | None, start: int, count: int, width: int) -> torch.Tensor:
        """Focal length in pixels per frame of the chunk, [count] float32 on the device."""
        if given is not None:
            return torch.as_tensor(given[start : start + count, 0], dtype=torch.float32, device=self.device)
        if fov_deg is not None:
            return 0.5 * width / torch.tan(0.5 * torch.deg2rad(fov_deg.float()))
        return torch.full((count,), focal_from_fov(width, self.default_fov_x_deg), device=self.device)
