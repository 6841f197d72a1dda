"""What the memory gives back: the figures a round records about it.

- **Recall**: the memory rendered at the cameras of frames it fused, against those frames (PSNR
  and SSIM over the pixels the memory covers, and the share it covers). A bounded sample:
  some of this round's keyframes and some spread over the earlier ones, so the cost stays flat
  however long the shot is.
- **The user's views**: the memory at the camera of each image the user gave (the first image),
  against that image. Those views are pinned, so this should stay exact.
- **Revisits**: new frames whose camera comes back to an earlier frame's. An exact return (within
  spatia.engine.poses.EXACT_METRES and EXACT_DEGREES) compares the two frames directly; a near
  one (within REVISIT_METRES and REVISIT_DEGREES) differs by its pose as well, so the memory is
  rendered at both poses and that difference is reported beside the frames', and the two kinds
  are averaged apart: a pose difference is never read as drift, nor the other way round.
"""

from __future__ import annotations

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.metrics import psnr, ssim
from spatia.engine.poses import EXACT_DEGREES, EXACT_METRES, exact_matches, pose_gap
from spatia.engine.render import render_memory

REVISIT_METRES = 0.1  # a frame revisits an earlier one whose camera is this close ...
REVISIT_DEGREES = 5.0  # ... and turned by at most this much
REVISITS_PER_KIND = 4  # exact and near returns scored per round (the closest), so the cost stays bounded
RECALL_NEW = 4  # this round's keyframes rendered for recall
RECALL_PAST = 4  # earlier keyframes rendered for recall, spread over the shot


def db(value: float | None) -> float | None:
    """A PSNR for JSON: identical images (infinite PSNR) are reported as 100 dB."""
    return None if value is None else round(min(float(value), 100.0), 3)


def spread(items, count: int) -> list:
    """At most `count` of `items`, evenly spread, first and last included."""
    items = list(items)
    if len(items) <= count:
        return items
    picks = np.unique(np.round(np.linspace(0, len(items) - 1, count)).astype(int))
    return [items[i] for i in picks]


def compare_views(rendered_rgb: np.ndarray, covered: np.ndarray, truth: np.ndarray) -> dict:
    """PSNR and SSIM of one rendered view [H,W,3] against the frame [H,W,3] over the covered pixels
    [H,W], and the share covered."""
    share = float(covered.mean())
    if not covered.any():
        return {"psnr": None, "ssim": None, "coverage": 0.0}
    return {"psnr": db(psnr(rendered_rgb, truth, covered)), "ssim": round(float(ssim(rendered_rgb, truth, covered)), 4),
            "coverage": round(share, 4)}


def recall(memory, frames: np.ndarray, cameras: Cameras, *, pinned: Cameras | None = None,
           device=None) -> list[dict]:
    """The memory rendered at `cameras` against `frames` [F,H,W,3], one dict per frame."""
    if len(cameras) == 0 or len(memory) == 0:
        return [{"psnr": None, "ssim": None, "coverage": 0.0} for _ in range(len(cameras))]
    view = render_memory(memory, cameras, pinned=pinned, device=device)
    rgb, mask = view.rgb.cpu().numpy(), view.mask.cpu().numpy()
    return [compare_views(rgb[i], mask[i], frames[i]) for i in range(len(cameras))]


def _mean(rows: list[dict], key: str, digits: int = 3) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(float(np.mean(values)), digits) if values else None


def keyframe_recall(memory, cameras: Cameras, frames: np.ndarray, start: int, keyframes, read_frames, *,
                    pinned: Cameras | None = None, device=None) -> dict:
    """Recall at the keyframes the memory fused: up to RECALL_NEW of this round's (those at or
    after `start`, whose pixels are in `frames`, the round's frames from `start`) and up to
    RECALL_PAST earlier ones (read with `read_frames(indices)`), none at a pinned view's camera
    (the user's view is scored on its own). `cameras`: every frame's."""
    keyframes = sorted(int(k) for k in keyframes)
    if pinned is not None and keyframes:  # a frame at a pinned view's camera comes back exactly: reported apart
        at_pinned = exact_matches(cameras[keyframes], pinned)
        keyframes = [k for k, p in zip(keyframes, at_pinned) if not p]
    new = spread([k for k in keyframes if k >= start], RECALL_NEW)
    past = spread([k for k in keyframes if k < start], RECALL_PAST)
    chosen = past + new
    if not chosen:
        return {"frames": [], "psnr": None, "ssim": None, "coverage": None, "past_psnr": None, "new_psnr": None}
    images = [read_frames(past)] if past else []
    images.append(frames[[k - start for k in new]])
    scores = recall(memory, np.concatenate(images), cameras[chosen], pinned=pinned, device=device)
    rows = [{"frame": k, **s} for k, s in zip(chosen, scores)]
    return {"frames": rows, "psnr": _mean(rows, "psnr"), "ssim": _mean(rows, "ssim", 4),
            "coverage": _mean(rows, "coverage", 4), "new_psnr": _mean(rows[len(past):], "psnr"),
            "past_psnr": _mean(rows[:len(past)], "psnr")}


def revisit_pairs(cameras: Cameras, new_frames, min_gap: int) -> list[tuple]:
    """(kind, distance m, angle deg, frame, earlier frame) for each new frame whose camera comes
    back to an earlier frame's (at least `min_gap` frames before it): the closest such frame, an
    exact return preferred. Sorted exact first, then by distance."""
    pairs = []
    for frame in new_frames:
        older = frame - min_gap
        if older < 0:
            continue
        distance, angle = (a[0] for a in pose_gap(cameras.w2c[frame], cameras.w2c[:older + 1]))
        close = np.flatnonzero((distance <= REVISIT_METRES) & (angle <= REVISIT_DEGREES))
        if not len(close):
            continue
        exact = close[(distance[close] <= EXACT_METRES) & (angle[close] <= EXACT_DEGREES)]
        pool = exact if len(exact) else close
        best = int(pool[np.argmin(distance[pool] + np.radians(angle[pool]))])
        pairs.append(("exact" if len(exact) else "near", float(distance[best]), float(angle[best]), int(frame), best))
    pairs.sort(key=lambda p: (p[0] != "exact", p[1] + np.radians(p[2])))
    return pairs


def score_revisits(memory, cameras: Cameras, pairs: list[tuple], frame_of, read_frames, *,
                   pinned: Cameras | None = None, device=None) -> dict:
    """Score up to REVISITS_PER_KIND exact and near pairs: the new frame (`frame_of(index)`) against
    the earlier one (`read_frames(indices)`); for near returns also the memory rendered at both
    poses (how much the pose alone changes the view) and at the new pose against the new frame."""
    exact = [p for p in pairs if p[0] == "exact"][:REVISITS_PER_KIND]
    near = [p for p in pairs if p[0] == "near"][:REVISITS_PER_KIND]
    chosen = exact + near
    earlier = read_frames([p[4] for p in chosen]) if chosen else []
    views = None
    if near and len(memory):
        both = [p[3] for p in near] + [p[4] for p in near]
        views = render_memory(memory, cameras[both], pinned=pinned, device=device)
        rgb, mask = views.rgb.cpu().numpy(), views.mask.cpu().numpy()
    scored = []
    for i, (kind, distance, angle, frame, before) in enumerate(chosen):
        now = frame_of(frame)
        row = {"frame": frame, "earlier": before, "kind": kind, "distance_m": round(distance, 5),
               "angle_deg": round(angle, 4), "psnr": db(psnr(now, earlier[i])), "ssim": round(float(ssim(now, earlier[i])), 4)}
        if kind == "near" and views is not None:
            j = i - len(exact)
            a, b = j, j + len(near)
            both_covered = mask[a] & mask[b]
            row["memory_pose_psnr"] = db(psnr(rgb[a], rgb[b], both_covered)) if both_covered.any() else None
            row["memory_vs_frame_psnr"] = db(psnr(rgb[a], now, mask[a])) if mask[a].any() else None
        scored.append(row)
    exact_rows = [r for r in scored if r["kind"] == "exact"]
    near_rows = [r for r in scored if r["kind"] == "near"]
    return {"revisits": scored, "revisit_psnr_mean": _mean(exact_rows, "psnr"),
            "revisit_exact_count": sum(p[0] == "exact" for p in pairs),
            "revisit_near_count": sum(p[0] == "near" for p in pairs),
            "revisit_near_psnr_mean": _mean(near_rows, "psnr"),
            "revisit_near_memory_pose_psnr_mean": _mean(near_rows, "memory_pose_psnr")}


__all__ = ["RECALL_NEW", "RECALL_PAST", "REVISIT_DEGREES", "REVISIT_METRES", "compare_views", "keyframe_recall",
           "recall", "revisit_pairs", "score_revisits", "spread"]
