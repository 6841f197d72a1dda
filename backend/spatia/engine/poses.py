"""How far apart two camera poses are, and when a return to a pose counts as exact."""

from __future__ import annotations

import numpy as np

EXACT_METRES = 1e-3  # a camera within 1 mm ...
EXACT_DEGREES = 0.01  # ... and turned by at most 0.01 degree is back at the same pose


def pose_gap(w2c_a, w2c_b) -> tuple[np.ndarray, np.ndarray]:
    """Distance between camera centres (metres) and the rotation between the cameras (degrees)
    of every pair of world-to-camera matrices [A,4,4] x [B,4,4] -> two arrays [A,B]."""
    a = np.asarray(w2c_a, dtype=np.float64).reshape(-1, 4, 4)
    b = np.asarray(w2c_b, dtype=np.float64).reshape(-1, 4, 4)
    ra, rb = a[:, :3, :3], b[:, :3, :3]
    ca = -np.einsum("aji,aj->ai", ra, a[:, :3, 3])  # centre = -R^T t
    cb = -np.einsum("bji,bj->bi", rb, b[:, :3, 3])
    distance = np.linalg.norm(ca[:, None] - cb[None], axis=-1)
    cos = (np.einsum("aij,bij->ab", ra, rb) - 1) / 2  # trace(Ra Rb^T) = 1 + 2 cos(angle)
    return distance, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def exact_matches(cameras, pinned) -> np.ndarray:
    """Bool [F]: frames of `cameras` at the exact pose, intrinsics and size of one of `pinned`'s
    cameras (None or empty: none)."""
    if pinned is None or len(pinned) == 0 or len(cameras) == 0:
        return np.zeros(len(cameras), dtype=bool)
    if (pinned.width, pinned.height) != (cameras.width, cameras.height):
        return np.zeros(len(cameras), dtype=bool)
    distance, angle = pose_gap(cameras.w2c, pinned.w2c)
    same_lens = np.abs(cameras.intrinsics[:, None] - pinned.intrinsics[None]).max(axis=-1) <= 1e-6 * max(
        cameras.width, cameras.height)
    return ((distance <= EXACT_METRES) & (angle <= EXACT_DEGREES) & same_lens).any(axis=1)


__all__ = ["EXACT_DEGREES", "EXACT_METRES", "exact_matches", "pose_gap"]
