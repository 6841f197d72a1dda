"""MapAnything (facebookresearch/map-anything), a thin wrapper used only when it is installed.

It is the paper's choice for the memory update: it takes known poses and intrinsics and
returns metric depth consistent across the views. Not covered by tests here (the package and
its weights are optional); the view format follows the reference inference script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import DepthEstimator, DepthResult, ModelInputError, check_images, check_intrinsics
from .imaging import IMAGENET_MEAN, IMAGENET_STD, images_to_tensor, normalize, resize
from .loading import PretrainedAdapter

MAPANYTHING_INSTALL = "pip install git+https://github.com/facebookresearch/map-anything"
NETWORK_WIDTH = 518


class MapAnythingEstimator(PretrainedAdapter, DepthEstimator):
    default_preset = "map-anything"
    takes_poses = True  # estimate() accepts known world-to-camera poses
    required_modules = ("mapanything",)
    install_hint = MAPANYTHING_INSTALL

    def _load(self, folder: Path):
        from mapanything.models import MapAnything

        return MapAnything.from_pretrained(str(folder))

    @torch.inference_mode()
    def estimate(self, images: np.ndarray, intrinsics: np.ndarray | None = None, w2c: np.ndarray | None = None) -> DepthResult:
        """As DepthEstimator.estimate, plus optional known world-to-camera poses [F,4,4] (metric)."""
        images = check_images(images, "images")
        frames, height, width = images.shape[:3]
        given = None if intrinsics is None else check_intrinsics(intrinsics, frames)
        if w2c is not None and np.asarray(w2c).shape != (frames, 4, 4):
            raise ModelInputError(f"w2c must be [{frames}, 4, 4], got {list(np.asarray(w2c).shape)}")
        net_h = max(14, int(round(height * NETWORK_WIDTH / width / 14)) * 14)
        sx, sy = NETWORK_WIDTH / width, net_h / height
        x = resize(images_to_tensor(images, self.device), (net_h, NETWORK_WIDTH), "bicubic").clamp(0, 1)
        x = normalize(x, IMAGENET_MEAN, IMAGENET_STD)
        views = []
        for i in range(frames):
            view = {"img": x[i : i + 1], "data_norm_type": ["dinov2"]}
            if given is not None:
                fx, fy, cx, cy = given[i] * np.array([sx, sy, sx, sy])
                view["intrinsics"] = torch.tensor([[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]], dtype=torch.float32, device=self.device)
            if w2c is not None:
                c2w = np.linalg.inv(np.asarray(w2c[i], dtype=np.float64))
                view["camera_poses"] = torch.tensor(c2w[None], dtype=torch.float32, device=self.device)
                view["is_metric_scale"] = torch.tensor([True], device=self.device)
            views.append(view)
        predictions = self.model.infer(views, memory_efficient_inference=frames > 200, apply_mask=True, mask_edges=True)
        depth = torch.stack([p["depth_z"][0, ..., 0] for p in predictions]).float()
        conf = torch.stack([p["conf"][0] for p in predictions]).float()
        depth = resize(depth[:, None], (height, width), "nearest")[:, 0]
        conf = resize(conf[:, None], (height, width), "nearest")[:, 0]
        depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))
        # MapAnything's confidence is >= 1 and unbounded; 1 - 1/c maps it into [0, 1).
        confidence = torch.where(depth > 0, 1 - 1 / conf.clamp(min=1.0), torch.zeros_like(conf))
        if given is not None:
            k = given
        else:
            kk = torch.stack([p["intrinsics"][0] for p in predictions]).double().cpu().numpy()
            k = np.stack([kk[:, 0, 0] / sx, kk[:, 1, 1] / sy, kk[:, 0, 2] / sx, kk[:, 1, 2] / sy], axis=1)
        return DepthResult(depth.cpu().numpy(), k, confidence.cpu().numpy().astype(np.float32))
