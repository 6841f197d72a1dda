"""Push-pull hole filling (a pyramid of weighted averages) for one image of any channel count.

Push: halve the resolution repeatedly, each coarse pixel the weighted mean of its children
with weight min(1, sum of child weights), so a coarse pixel with any valid child is trusted.
Pull: from the coarsest level back up, keep what a level knows (weight 1) and take the
bilinearly upsampled coarser estimate for the rest. Valid input pixels come out unchanged
(up to float rounding); holes get a smooth, deterministic blend of their surroundings.

The resampling uses OpenCV (SIMD box and bilinear filters), several times faster on CPU than
the same pyramid in torch, which is what makes a 81-frame 720p clip take seconds.
"""

from __future__ import annotations

import cv2
import numpy as np

_EPS = 1e-8


def _resize(image: np.ndarray, width: int, height: int, interpolation: int) -> np.ndarray:
    """cv2.resize for any channel count (its general path takes at most 4 channels at a time)."""
    parts = [
        cv2.resize(image[..., i : i + 4], (width, height), interpolation=interpolation).reshape(height, width, -1)
        for i in range(0, image.shape[2], 4)
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)


def push_pull_fill(values: np.ndarray, weights: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """Fill values [H,W,C] where weights [H,W,C] (in [0,1], 0 = hole) are low.

    fallback [C] is used for a channel with no valid pixel at all (default 0).
    Returns float32 [H,W,C]; pixels with weight 1 keep their value.
    """
    if values.shape != weights.shape or values.ndim != 3:
        raise ValueError(f"values and weights must both be [H, W, C], got {list(values.shape)} and {list(weights.shape)}")
    channels = values.shape[2]
    trust = np.clip(weights, 0, 1).astype(np.float32)
    colour = np.where(trust > 0, values, 0).astype(np.float32)  # hole contents may be garbage
    pyramid = [(colour, trust)]
    while colour.shape[0] > 1 or colour.shape[1] > 1:
        height, width = (colour.shape[0] + 1) // 2, (colour.shape[1] + 1) // 2
        scale = colour.shape[0] * colour.shape[1] / (height * width)  # children per coarse pixel
        pooled = _resize(np.concatenate([colour * trust, trust], axis=2), width, height, cv2.INTER_AREA)
        weight_mean = pooled[..., channels:]
        colour = pooled[..., :channels] / np.maximum(weight_mean, _EPS)
        trust = np.minimum(weight_mean * scale, 1.0)
        pyramid.append((colour, trust))
    base = np.zeros(channels, np.float32) if fallback is None else np.asarray(fallback, np.float32)
    filled = np.where(trust > 0, colour, base).astype(np.float32)
    for colour, trust in reversed(pyramid[:-1]):
        coarse = _resize(filled, colour.shape[1], colour.shape[0], cv2.INTER_LINEAR)
        filled = coarse + trust * (colour - coarse)
    return filled
