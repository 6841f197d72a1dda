"""Push-pull hole filling (a pyramid of weighted averages) for one image of any channel count.

Push: halve the resolution repeatedly, each coarse pixel the weighted mean of its children
with weight min(1, sum of child weights), so a coarse pixel with any valid child is trusted.
Pull: from the coarsest level back up, keep what a level knows (weight 1) and take the
bilinearly upsampled coarser estimate for the rest. Valid input pixels come out unchanged
(up to float rounding); holes get a smooth, deterministic blend of their surroundings.

The resampling uses OpenCV (SIMD box and bilinear filters), several times faster on CPU than
the same pyramid in torch, which is what makes an 81-frame 720p clip take seconds.
"""

from __future__ import annotations

import cv2
import numpy as np

_EPS = 1e-8

Level = tuple[np.ndarray, np.ndarray]  # (colour, trust), both [h,w,C], at one pyramid level


def resize(image: np.ndarray, width: int, height: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """cv2.resize on [h,w,C] for any C (its general path takes at most 4 channels at a time)."""
    parts = [
        cv2.resize(image[..., i : i + 4], (width, height), interpolation=interpolation).reshape(height, width, -1)
        for i in range(0, image.shape[2], 4)
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)


def build_pyramid(values: np.ndarray, weights: np.ndarray) -> list[Level]:
    """values [H,W,C] (finite) and weights [H,W,C] or [H,W,1] (bool, or float in [0,1]) -> levels down to 1x1."""
    shapes_ok = values.ndim == 3 and weights.ndim == 3 and weights.shape[:2] == values.shape[:2]
    if not shapes_ok or weights.shape[2] not in (1, values.shape[2]):
        raise ValueError(
            f"values must be [H, W, C] and weights [H, W, C] or [H, W, 1], got {list(values.shape)} and {list(weights.shape)}"
        )
    colour = values.astype(np.float32, copy=False)
    trust = weights.astype(np.float32) if weights.dtype == np.bool_ else np.clip(weights, 0, 1).astype(np.float32, copy=False)
    if trust.shape != colour.shape:  # same-shape arithmetic is several times faster than broadcasting
        trust = cv2.merge([trust[..., 0]] * colour.shape[2]).reshape(colour.shape)
    levels = [(colour, trust)]
    while colour.shape[0] > 1 or colour.shape[1] > 1:
        height, width = (colour.shape[0] + 1) // 2, (colour.shape[1] + 1) // 2
        children = colour.shape[0] * colour.shape[1] / (height * width)
        weighted = resize(cv2.multiply(colour, trust).reshape(colour.shape), width, height, cv2.INTER_AREA)
        mean_trust = resize(trust, width, height, cv2.INTER_AREA)
        colour = weighted / np.maximum(mean_trust, _EPS)
        trust = np.minimum(mean_trust * children, 1.0)
        levels.append((colour, trust))
    return levels


def pull(levels: list[Level], fallback: np.ndarray | None = None, stop_level: int = 0) -> np.ndarray:
    """Filled image at pyramid level `stop_level` (0 = full resolution).

    fallback [C] fills a channel that has no valid pixel at all (default 0).
    """
    colour, trust = levels[-1]
    base = np.zeros(colour.shape[2], np.float32) if fallback is None else np.asarray(fallback, np.float32)
    filled = np.where(trust > 0, colour, base).astype(np.float32)
    for colour, trust in reversed(levels[stop_level:-1]):
        coarse = resize(filled, colour.shape[1], colour.shape[0])
        filled = coarse + trust * (colour - coarse)
    return filled


def push_pull_fill(values: np.ndarray, weights: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """Fill values [H,W,C] where weights ([H,W,C] or [H,W,1], 0 = hole) are low -> float32 [H,W,C]."""
    return pull(build_pyramid(values, weights), fallback)
