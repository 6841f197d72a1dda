"""Measure: what the memory gives back after the round (engine/recall.py), in every round record:
the memory at the first camera against the first image, recall at the keyframes it fused, and the
round's frames that return to an earlier frame's camera, exact and near returns apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.memory import SpatialMemory
from spatia.engine.plan import Round
from spatia.engine.recall import keyframe_recall, recall, revisit_pairs, score_revisits


def loop_closure(memory: SpatialMemory, cameras: Cameras, clip: np.ndarray, rnd: Round, *, first_frame,
                 first_camera: Cameras | None, keyframes_dir: Path, read_frames, device=None) -> dict:
    """`cameras`: every frame's so far; `clip`: the round's frames; `read_frames(indices)` gives
    earlier frames; the keyframes the memory fused are those saved in `keyframes_dir`."""
    out: dict = {}
    if first_frame is not None and first_camera is not None:
        view = recall(memory, first_frame[None], first_camera, pinned=first_camera, device=device)[0]
        out["memory_vs_first_psnr"], out["memory_vs_first_coverage"] = view["psnr"], view["coverage"]
        out["memory_vs_first_ssim"] = view["ssim"]
    keys = sorted(int(p.stem) for p in keyframes_dir.glob("[0-9]*.npz"))
    out["recall"] = keyframe_recall(memory, cameras, clip[rnd.overlap:], rnd.new_start,
                                    [k for k in keys if k < rnd.end], read_frames, pinned=first_camera, device=device)
    pairs = revisit_pairs(cameras, range(rnd.new_start, rnd.end), max(1, rnd.frames))
    out.update(score_revisits(memory, cameras, pairs, lambda g: clip[g - rnd.start], read_frames,
                              pinned=first_camera, device=device))
    return out
