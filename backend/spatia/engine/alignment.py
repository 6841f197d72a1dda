"""Align estimated depth to the depth the memory already renders (robust scale and shift).

A monocular depth estimate of a generated frame is only roughly metric; the memory's render
along the same camera is the reference. On pixels both know (covered by memory, static,
valid estimate) we fit reference = scale * estimate + shift with iteratively trimmed least
squares, so occlusion edges and freshly moved things do not drag the fit. What is left after
the fit says how noisy the estimate is (`noise`): the memory's update weighs the estimate's
pixels against its points with that much slack along each line of sight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_OVERLAP_FRACTION = 0.01  # below this share of pixels the fit is not trusted


@dataclass(frozen=True)
class DepthAlignment:
    scale: float
    shift: float
    inliers: int  # pixels used by the final fit
    overlap: int  # pixels known to both before trimming
    fitted: bool  # False: too little overlap, identity kept
    noise: float = 0.0  # robust spread of the fitted depth's relative residuals (a share of the depth); 0 when unknown

    def apply(self, depth: np.ndarray) -> np.ndarray:
        out = self.scale * depth + self.shift
        return np.where(depth > 0, np.maximum(out, 0.0), 0.0).astype(np.float32)


def fit_scale_shift(estimate, reference, valid, *, iterations: int = 5, trim_sigmas: float = 2.5,
                    with_shift: bool = True) -> DepthAlignment:
    """Fit reference ~ scale * estimate + shift on `valid` pixels (all arrays [H, W] or [N])."""
    estimate = np.asarray(estimate, dtype=np.float64).ravel()
    reference = np.asarray(reference, dtype=np.float64).ravel()
    valid = np.asarray(valid, dtype=bool).ravel() & (estimate > 0) & (reference > 0)
    valid &= np.isfinite(estimate) & np.isfinite(reference)
    overlap = int(valid.sum())
    if overlap < max(16, MIN_OVERLAP_FRACTION * estimate.size):
        return DepthAlignment(1.0, 0.0, 0, overlap, False)
    x, y = estimate[valid], reference[valid]
    # Start from the median depth ratio (robust to a large share of outliers), then refit on
    # the pixels that agree with the current model within a relative band: disagreement
    # scales with depth, so a fixed threshold would let far pixels dominate.
    scale, shift = float(np.median(y / x)), 0.0
    keep = None
    for _ in range(iterations):
        relative = np.abs(scale * x + shift - y) / y
        band = max(trim_sigmas * 1.4826 * float(np.median(relative)), 1e-6)
        new_keep = relative <= band
        if new_keep.sum() < 16 or (keep is not None and np.array_equal(new_keep, keep)):
            break
        keep = new_keep
        xs, ys = x[keep], y[keep]
        w = 1.0 / ys  # relative residuals: weight each pixel by 1/depth
        if with_shift:
            a = np.stack([xs, np.ones_like(xs)], axis=1) * w[:, None]
            (scale, shift), *_ = np.linalg.lstsq(a, ys * w, rcond=None)
        else:
            scale, shift = float((w * w * xs) @ ys / ((w * w * xs) @ xs)), 0.0
    if keep is None:
        keep = np.ones(len(x), dtype=bool)
    if not (np.isfinite(scale) and scale > 0):
        return DepthAlignment(1.0, 0.0, 0, overlap, False)
    noise = _relative_spread(scale * x + shift, y)
    return DepthAlignment(float(scale), float(shift), int(keep.sum()), overlap, True, noise)


NOISE_SAMPLES = 65_536  # the noise is measured on at most this many shared pixels, spread evenly


def _relative_spread(fitted: np.ndarray, reference: np.ndarray) -> float:
    # The relative residuals' median absolute value as a standard deviation: occlusion edges and
    # moved things are a minority of the shared pixels, so they barely move it.
    step = max(1, len(fitted) // NOISE_SAMPLES)
    return 1.4826 * float(np.median(np.abs(fitted[::step] - reference[::step]) / reference[::step]))
