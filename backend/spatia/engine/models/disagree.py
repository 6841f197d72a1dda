"""A generator that disagrees with the memory: the ground truth (as the oracle returns it)
perturbed the way a real video model and depth estimator err, seeded and deterministic.

Per clip it draws a colour shift (one offset per channel), a depth scale error and a small
displacement of the content (the picture and its depth moved by a few pixels, edges
repeated); per pixel it adds colour noise and relative depth noise. The frames of the previous
clip given as history come back as they were (they are that clip's), as with every generator.
The depth it returns is an estimate, not in the memory's frame (`depth_in_memory_frame` False
in the result's info), so the world fits it to the memory as it fits a depth model's.

It is for tests and benchmarks: figures measured with the oracle or the preview cannot show the
memory drifting, since neither can disagree with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .base import CancelFn, GenerationRequest, GenerationResult, ProgressFn, report
from .oracle import GroundTruth, GroundTruthGenerator, with_history


@dataclass(frozen=True)
class Disagreement:
    """How much the generator disagrees. Colour in levels of 255, depth as a share of the depth."""

    colour_shift: float = 4.0  # per clip and channel, uniform in +-colour_shift
    colour_noise: float = 3.0  # per pixel and channel, standard deviation
    depth_scale: float = 0.03  # per clip, the depth scaled by 1 + uniform(+-depth_scale)
    depth_noise: float = 0.01  # per pixel, relative standard deviation
    displacement_px: int = 1  # per clip, content moved by up to this many pixels each way

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.depth_scale >= 1 or self.depth_noise >= 0.5:
            raise ValueError("depth_scale must be below 1 and depth_noise below 0.5")


def _displace(array: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Frames [F,H,W,...] moved by (dx, dy) pixels, the edge rows and columns repeated."""
    if dx == 0 and dy == 0:
        return array
    h, w = array.shape[1:3]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return array[:, rows][:, :, cols]


def disagree(frames: np.ndarray, depth: np.ndarray, rng: np.random.Generator,
             settings: Disagreement) -> tuple[np.ndarray, np.ndarray, dict]:
    """Perturbed copies of frames uint8 [F,H,W,3] and depth float32 [F,H,W] (0 or inf where
    none), and what was drawn for the clip."""
    shift = rng.uniform(-settings.colour_shift, settings.colour_shift, 3)
    scale = 1.0 + rng.uniform(-settings.depth_scale, settings.depth_scale)
    d = settings.displacement_px
    dx, dy = (int(v) for v in rng.integers(-d, d + 1, 2)) if d else (0, 0)
    noise = rng.normal(0.0, settings.colour_noise, frames.shape) if settings.colour_noise else 0.0
    rgb = np.clip(np.rint(frames.astype(np.float32) + shift.astype(np.float32) + noise), 0, 255).astype(np.uint8)
    factor = scale * (1.0 + rng.normal(0.0, settings.depth_noise, depth.shape)) if settings.depth_noise else scale
    valid = np.isfinite(depth) & (depth > 0)
    out_depth = np.where(valid, depth * factor, 0.0).astype(np.float32)
    drawn = {"colour_shift": [round(float(v), 3) for v in shift], "depth_scale": round(float(scale), 5),
             "displacement_px": [dx, dy]}
    return _displace(rgb, dx, dy), _displace(out_depth, dx, dy), drawn


class DisagreeingGenerator(GroundTruthGenerator):
    """`source(cameras) -> (frames uint8 [F,H,W,3], depth float32 [F,H,W], ...)` supplies the
    truth (as for the oracle); each clip is perturbed by `disagreement`, drawn from `seed` and
    the clip's first frame, so the same request always gets the same clip."""

    name = "disagree"

    def __init__(self, source: GroundTruth, *, seed: int = 0, disagreement: Disagreement = Disagreement()):
        super().__init__(source)
        self.seed = int(seed)
        self.disagreement = disagreement

    def generate(self, request: GenerationRequest, progress: ProgressFn | None = None,
                 should_cancel: CancelFn | None = None) -> GenerationResult:
        frames, depth, _ = self.truth(request, progress, should_cancel)
        rng = np.random.default_rng([self.seed, int(request.start_frame or 0), int(request.round_index or 0)])
        frames, depth, drawn = disagree(frames, depth, rng, self.disagreement)
        frames = with_history(frames, request)
        info = {"generator": self.name, "depth_in_memory_frame": False, "disagreement": asdict(self.disagreement),
                **drawn}
        report(progress, 1.0, "clip ready")
        return GenerationResult(frames=frames, depth=depth, info=info)


__all__ = ["DisagreeingGenerator", "Disagreement", "disagree"]
