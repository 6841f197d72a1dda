"""Synthetic benchmark scenes: a coloured box room sampled with points, and camera paths inside it."""

from __future__ import annotations

import numpy as np

from spatia.cameras import Cameras

ROOM_SIZE = np.array([10.0, 8.0, 3.0])  # metres, x y z; the floor is z = 0


def room_points(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """`count` points spread uniformly over the six faces of the room.

    Returns xyz [N,3] float32, rgb [N,3] uint8 (a colour pattern by position) and the
    average point spacing (the matching voxel size).
    """
    rng = np.random.default_rng(seed)
    sx, sy, sz = ROOM_SIZE
    areas = np.array([sx * sy, sx * sy, sx * sz, sx * sz, sy * sz, sy * sz])
    face = rng.choice(6, size=count, p=areas / areas.sum())
    xyz = rng.random((count, 3)) * ROOM_SIZE
    fixed_axis = np.array([2, 2, 1, 1, 0, 0])[face]
    fixed_value = np.where(face % 2 == 0, 0.0, ROOM_SIZE[fixed_axis])
    xyz[np.arange(count), fixed_axis] = fixed_value
    checker = (np.floor(xyz * 2).astype(np.int64).sum(axis=1) % 2).astype(np.float64)
    rgb = np.stack([40 + 50 * face, 80 + 120 * checker, 255 * xyz[:, 2] / sz], axis=1)
    spacing = float(np.sqrt(areas.sum() / count))
    return xyz.astype(np.float32), np.clip(rgb, 0, 255).astype(np.uint8), spacing


def orbit_cameras(frames: int, width: int, height: int, *, turns: float = 1.0, fov_x_deg: float = 60.0) -> Cameras:
    """Cameras walking a small loop in the room centre while turning `turns` times around."""
    angle = np.linspace(0.0, 2 * np.pi * turns, frames, endpoint=False)
    centre = ROOM_SIZE / 2
    eye = centre + np.stack([1.5 * np.cos(angle / max(turns, 1e-9)), 1.0 * np.sin(angle / max(turns, 1e-9)), 0.2 * np.sin(3 * angle)], axis=1)
    target = eye + np.stack([np.cos(angle + 0.5), np.sin(angle + 0.5), -0.15 * np.ones_like(angle)], axis=1)
    return Cameras.look_at(eye, target, fov_x_deg=fov_x_deg, width=width, height=height)
