"""Tensor-side image plumbing shared by the adapters: batch conversion, normalisation, default
intrinsics and a depth-edge confidence. Done in torch on the model's device, so a clip of frames
is preprocessed in one batch rather than image by image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN_STD = (0.5, 0.5, 0.5)

# Horizontal field of view assumed when a model gives no focal length and none is given.
# 60 degrees is a typical phone/consumer camera and Hypersim's (Depth Anything V2 indoor) training FOV.
DEFAULT_FOV_X_DEG = 60.0

# Relative depth change per pixel at which confidence falls to 1/e: flying pixels at
# depth discontinuities get low confidence, smooth surfaces keep ~1.
EDGE_RELATIVE_GRADIENT = 0.05


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def images_to_tensor(images: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [F,H,W,3] -> float [F,3,H,W] in [0,1] on `device`."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.permute(0, 3, 1, 2).to(dtype) / 255.0


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """[N,C,h,w] -> [N,C,H,W]; bicubic overshoot is the caller's to clamp."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode=mode)
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def focal_from_fov(width: float, fov_x_deg: float) -> float:
    return 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)


def default_intrinsics(frames: int, width: int, height: int, fov_x_deg: float = DEFAULT_FOV_X_DEG) -> np.ndarray:
    """Square pixels, centred principal point, the given horizontal FOV -> [F,4]."""
    f = focal_from_fov(width, fov_x_deg)
    return np.tile(np.array([f, f, width / 2, height / 2], dtype=np.float64), (frames, 1))


def edge_confidence(depth: torch.Tensor) -> torch.Tensor:
    """[F,H,W] metric depth -> confidence in [0,1]: low at discontinuities, 0 where depth <= 0."""
    valid = depth > 0
    safe = torch.where(valid, depth, torch.ones_like(depth))
    log_d = torch.log(safe)
    grad = torch.zeros_like(depth)
    dx = (log_d[:, :, 1:] - log_d[:, :, :-1]).abs()
    dy = (log_d[:, 1:, :] - log_d[:, :-1, :]).abs()
    grad[:, :, 1:] = torch.maximum(grad[:, :, 1:], dx)
    grad[:, :, :-1] = torch.maximum(grad[:, :, :-1], dx)
    grad[:, 1:, :] = torch.maximum(grad[:, 1:, :], dy)
    grad[:, :-1, :] = torch.maximum(grad[:, :-1, :], dy)
    conf = torch.exp(-grad / EDGE_RELATIVE_GRADIENT)
    return torch.where(valid, conf, torch.zeros_like(conf))


def finalize_depth(depth: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Model depth [F,H,W] -> (float32 depth with non-finite/non-positive set to 0, confidence)."""
    depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth)).float()
    conf = edge_confidence(depth)
    return depth.cpu().numpy(), conf.cpu().numpy().astype(np.float32)


def reference_canvases(crops: np.ndarray, height: int, width: int, *, share: float = 0.6) -> np.ndarray:
    """Object crops uint8 [K,S,S,3] (on white) centred on white frames of height x width, scaled to
    `share` of the frame's shorter side, for generators whose reference slots take whole frames."""
    crops = np.asarray(crops, dtype=np.uint8)
    out = np.full((len(crops), height, width, 3), 255, np.uint8)
    if not len(crops):
        return out
    side = max(1, int(round(min(height, width) * share)))
    scaled = resize(images_to_tensor(crops, torch.device("cpu")), (side, side)).clamp(0, 1)
    scaled = (scaled.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    top, left = (height - side) // 2, (width - side) // 2
    out[:, top:top + side, left:left + side] = scaled
    return out
