"""Pixel-to-pixel noise in a depth map, measured from the map itself, and smoothed away before
the map's pixels become points.

A depth estimate whose pixels jitter independently (a few per cent at most) scatters the
samples of one surface over several voxels one behind the other, so a frame of 1% noise makes
four to five times the points exact depth makes of the same view. The jitter shows as the
difference between a pixel and the mean of its 3x3 neighbours; on exact depth of smooth
surfaces that difference is tiny everywhere but at edges, which its median ignores. Where the
jitter matters, each pixel's depth becomes the mean of its SMOOTH_WINDOW neighbours that lie
within NOISE_GUARD standard deviations of it (edges stay sharp); elsewhere the map is left as
it is, exact depth included.
"""

from __future__ import annotations

import numpy as np
import torch

SMOOTH_WINDOW = 3  # pixels: the mean of 9 neighbours has a third of one pixel's noise
WIDE_WINDOW = 9  # pixels: where the surface is flat enough, a ninth
NOISE_GUARD = 3.0  # neighbours further than this many standard deviations are another surface
SAMPLE_STRIDE = 4  # the noise is measured on every 4th row and column (at most) of a large frame
NEGLIGIBLE = 0.1  # noise below this share of a voxel (at the frame's median depth) is left alone
_MAD_TO_SIGMA = 1.4826 / np.sqrt(72 / 81)  # a pixel minus its 3x3 mean has sqrt(72/81) of the noise


def _box_sums(values: torch.Tensor, weights: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of values * weights and of weights [1,H,W] over each pixel's window x window square
    (zeros beyond the edges): along rows, then down columns."""
    def box(x):
        pool, pad = torch.nn.functional.avg_pool2d, window // 2
        x = pool(x[:, None], (1, window), 1, (0, pad), count_include_pad=True)
        return pool(x, (window, 1), 1, (pad, 0), count_include_pad=True)[:, 0] * (window * window)

    return box(values * weights), box(weights)


def white_noise(depth: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Each frame's pixel-to-pixel depth noise [F] (relative standard deviation), from depth
    [F,H,W] (0 = none) on the `valid` pixels whose 3x3 neighbourhood all has depth (every
    SAMPLE_STRIDE-th row and column of a large frame: a median of thousands is as good as of all)."""
    d = np.asarray(depth, dtype=np.float32)
    frames, height, width = d.shape
    step = max(1, min(SAMPLE_STRIDE, int(np.sqrt(height * width / 4096))))
    rows, cols = slice(1, height - 1, step), slice(1, width - 1, step)
    here = d[:, rows, cols]
    total = np.zeros_like(here)
    complete = here > 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            other = d[:, 1 + dy:height - 1 + dy:step, 1 + dx:width - 1 + dx:step]
            total += other
            complete &= other > 0
    if valid is not None:
        complete &= np.asarray(valid, dtype=bool)[:, rows, cols]
    out = np.zeros(frames)
    for f in range(frames):
        pick = complete[f]
        if int(pick.sum()) >= 16:
            out[f] = _MAD_TO_SIGMA * float(np.median(np.abs(here[f][pick] - total[f][pick] / 9.0) / here[f][pick]))
    return out


def smooth_noisy_depth(depth: np.ndarray, voxel_size: float, valid: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(depth [F,H,W] with the pixel-to-pixel noise of noisy frames smoothed out, each frame's
    measured noise [F]). Frames whose noise is negligible against `voxel_size` come back as
    they are; so do pixels outside `valid` and pixels with no depth."""
    depth = np.asarray(depth, dtype=np.float32)
    noise = white_noise(depth, valid)
    out = depth.copy()
    for f in range(len(depth)):
        sample = depth[f, ::SAMPLE_STRIDE, ::SAMPLE_STRIDE]
        sample = sample[sample > 0]
        if len(sample) == 0 or noise[f] * float(np.median(sample)) < NEGLIGIBLE * voxel_size:
            continue
        with_depth = depth[f] > 0
        d = torch.as_tensor(depth[f])[None]
        sums, counts = _near_neighbours(d, noise[f])
        smoothed = torch.where(counts > 0, sums / counts.clamp(min=1), d)
        # Then the mean over a wider square wherever it stays within the guard of that (flat
        # enough, away from edges): a voxel spans several pixels at full size.
        sums, counts = _box_sums(smoothed, (smoothed > 0).float(), WIDE_WINDOW)
        wide = sums / counts.clamp(min=1)
        band = NOISE_GUARD * noise[f] * np.sqrt(2.0) / SMOOTH_WINDOW * smoothed
        smoothed = torch.where((counts > 0) & ((wide - smoothed).abs() <= band), wide, smoothed)[0].numpy()
        keep = with_depth if valid is None else with_depth & np.asarray(valid[f], dtype=bool)
        out[f] = np.where(keep, smoothed, depth[f])
    return out, noise


def _near_neighbours(d: torch.Tensor, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums and counts over each pixel's SMOOTH_WINDOW square of the neighbours whose depth lies
    within NOISE_GUARD standard deviations of the pixel's (of the difference of two noisy depths)."""
    pad = SMOOTH_WINDOW // 2
    padded = torch.nn.functional.pad(d, (pad, pad, pad, pad))
    height, width = d.shape[1:]
    sums = torch.zeros_like(d)
    counts = torch.zeros_like(d)
    # Two noisy depths differ by sqrt(2) sigma. The band stays under the depth itself, so a
    # neighbour with no depth (0) is never within it of a pixel that has one.
    band = NOISE_GUARD * min(noise, 0.2) * np.sqrt(2.0) * d
    for dy in range(SMOOTH_WINDOW):
        for dx in range(SMOOTH_WINDOW):
            other = padded[:, dy:dy + height, dx:dx + width]
            near = (other - d).abs_().le_(band)
            sums.addcmul_(other, near)
            counts.add_(near)
    return sums, counts


__all__ = ["smooth_noisy_depth", "white_noise"]
