"""Measure: how well the world returns to where it has been (loop closure, in every round record)."""

from __future__ import annotations

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.memory import SpatialMemory
from spatia.engine.metrics import psnr, ssim
from spatia.engine.plan import Round
from spatia.engine.render import render_memory

REVISIT_METRES = 0.1  # a frame revisits an earlier one whose camera is this close ...
REVISIT_DEGREES = 5.0  # ... and turned by at most this much
REVISITS_PER_ROUND = 8  # revisit pairs scored per round (the closest), so the cost stays bounded


def db(value: float) -> float:
    """A PSNR for JSON: identical images (infinite PSNR) are reported as 100 dB."""
    return round(min(float(value), 100.0), 3)


def revisit_pairs(c2w: np.ndarray, rnd: Round) -> list[tuple[float, int, int, int]]:
    """(distance, frame, earlier frame, index in the clip) of the round's new frames whose camera
    comes back within REVISIT_METRES and REVISIT_DEGREES of a frame at least a round earlier: the
    closest REVISITS_PER_ROUND, nearest first."""
    earliest_gap = max(1, rnd.frames)
    pairs = []
    for j in range(rnd.overlap, rnd.frames):
        frame = rnd.start + j
        older = frame - earliest_gap
        if older < 0:
            continue
        distance = np.linalg.norm(c2w[:older + 1, :3, 3] - c2w[frame, :3, 3], axis=1)
        cos = (np.einsum("fij,ij->f", c2w[:older + 1, :3, :3], c2w[frame, :3, :3]) - 1) / 2
        angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        close = np.flatnonzero((distance <= REVISIT_METRES) & (angle <= REVISIT_DEGREES))
        if len(close):
            best = close[np.argmin(distance[close] + angle[close] * np.pi / 180)]
            pairs.append((float(distance[best]), frame, int(best), j))
    pairs.sort()
    return pairs[:REVISITS_PER_ROUND]


def loop_closure(memory: SpatialMemory, cameras: Cameras, clip: np.ndarray, rnd: Round, *, first_frame, read_frames,
                 device=None) -> dict:
    """The memory rendered at the first camera against the first image (when the world has one),
    and each of the round's frames that revisits an earlier frame's camera against that frame.
    `cameras`: every frame's so far; `read_frames(indices)` gives earlier frames."""
    out: dict = {}
    if first_frame is not None and len(cameras):
        view = render_memory(memory, cameras[:1], device=device)
        known = view.mask[0].cpu().numpy()
        out["memory_vs_first_psnr"] = db(psnr(view.rgb[0].cpu().numpy(), first_frame, known)) if known.any() else None
        out["memory_vs_first_coverage"] = round(float(known.mean()), 4)
    scored = []
    for _, frame, earlier, j in revisit_pairs(cameras.c2w, rnd):
        then = read_frames([earlier])[0]
        scored.append({"frame": frame, "earlier": earlier, "psnr": db(psnr(clip[j], then)),
                       "ssim": round(ssim(clip[j], then), 4)})
    out["revisits"] = scored
    out["revisit_psnr_mean"] = round(float(np.mean([p["psnr"] for p in scored])), 3) if scored else None
    return out
