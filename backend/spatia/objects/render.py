"""Objects at their predicted poses in a round's conditioning: splatted with the memory's
renderer and composited by depth into the memory's projection (see docs/objects.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatia.cameras import Cameras
from spatia.render import SPLAT_OVERLAP, render

from .model import ObjectTrack, rotation
from .motion import PosePath

NEAR = 1e-2


@dataclass(frozen=True, eq=False)
class ObjectLayer:
    """The objects alone: rgb uint8 [F,H,W,3], depth float32 [F,H,W] (+inf where none), ids
    int32 [F,H,W] (the object that won each pixel, 0 where none)."""

    rgb: np.ndarray
    depth: np.ndarray
    ids: np.ndarray


def posed(track: ObjectTrack, position, heading: float, up) -> np.ndarray:
    """The track's points in the world at one pose, float32 [N,3]."""
    return (track.xyz.astype(np.float64) @ rotation(up, heading).T + position).astype(np.float32)


def _box(track: ObjectTrack) -> np.ndarray:
    lo, hi = track.xyz.min(axis=0), track.xyz.max(axis=0)
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], np.float64)


def in_view(track: ObjectTrack, path: PosePath, cameras: Cameras, up) -> np.ndarray:
    """bool [F]: whether any part of the object's box at its pose falls in each camera's image."""
    if not len(track.xyz):
        return np.zeros(len(cameras), bool)
    corners = _box(track)  # [8,3]
    world = np.einsum("fij,kj->fki", rotation(up, path.heading), corners) + path.position[:, None]
    cam = np.einsum("fij,fkj->fki", cameras.w2c[:, :3, :3], world) + cameras.w2c[:, None, :3, 3]
    z = cam[..., 2]
    front = z > NEAR
    zc = np.where(front, z, NEAR)
    u = cameras.intrinsics[:, None, 0] * cam[..., 0] / zc + cameras.intrinsics[:, None, 2]
    v = cameras.intrinsics[:, None, 1] * cam[..., 1] / zc + cameras.intrinsics[:, None, 3]
    # a box partly behind the camera is taken as in view when any corner is in front
    u0, u1 = np.where(front, u, np.inf).min(axis=1), np.where(front, u, -np.inf).max(axis=1)
    v0, v1 = np.where(front, v, np.inf).min(axis=1), np.where(front, v, -np.inf).max(axis=1)
    partly_behind = front.any(axis=1) & ~front.all(axis=1)
    overlaps = (u1 >= 0) & (u0 <= cameras.width) & (v1 >= 0) & (v0 <= cameras.height)
    return front.any(axis=1) & (overlaps | partly_behind)


def render_objects(tracks: list[ObjectTrack], paths: dict[int, PosePath], cameras: Cameras, up, *,
                   device=None) -> ObjectLayer:
    """Every track at its pose in every frame. Frames where no object is in view cost nothing;
    consecutive frames where every object holds still are rendered together."""
    f, h, w = len(cameras), cameras.height, cameras.width
    rgb = np.zeros((f, h, w, 3), np.uint8)
    depth = np.full((f, h, w), np.inf, np.float32)
    ids = np.zeros((f, h, w), np.int32)
    tracks = [t for t in tracks if len(t.xyz)]
    if not tracks:
        return ObjectLayer(rgb, depth, ids)
    visible = np.stack([in_view(t, paths[t.id], cameras, up) for t in tracks], axis=1)  # [F,T]
    poses = np.concatenate([np.concatenate([paths[t.id].position, paths[t.id].heading[:, None]], axis=1)
                            for t in tracks], axis=1)  # [F, 4T]
    start = 0
    while start < f:
        stop = start + 1
        while stop < f and np.array_equal(poses[stop], poses[start]) and np.array_equal(visible[stop], visible[start]):
            stop += 1
        shown = [t for t, v in zip(tracks, visible[start]) if v]
        if shown:
            xyz = np.concatenate([posed(t, paths[t.id].position[start], paths[t.id].heading[start], up) for t in shown])
            colours = np.concatenate([t.rgb for t in shown])
            owner = np.concatenate([np.full(len(t.xyz), t.id, np.int32) for t in shown] + [np.zeros(1, np.int32)])
            sizes = np.concatenate([np.full(len(t.xyz), t.spacing * SPLAT_OVERLAP, np.float32) for t in shown])
            out = render(xyz, colours, cameras[start:stop], point_size=sizes, return_index=True, device=device)
            index = out.index.cpu().numpy()
            ids[start:stop] = owner[np.where(index < 0, len(owner) - 1, index)]
            rgb[start:stop] = out.rgb.cpu().numpy()
            depth[start:stop] = out.depth.cpu().numpy()
        start = stop
    return ObjectLayer(rgb, depth, ids)


def composite(rgb: np.ndarray, depth: np.ndarray, hole: np.ndarray, layer: ObjectLayer):
    """The memory's projection (rgb, depth with 0 in holes, hole) with the objects drawn in
    where they are nearer or fill a hole -> (rgb, depth, hole, ids of the object pixels)."""
    static = np.where(hole, np.float32(np.inf), depth)
    wins = (layer.ids > 0) & (layer.depth < static)
    rgb = np.where(wins[..., None], layer.rgb, rgb)
    depth = np.where(wins, layer.depth, depth).astype(np.float32)
    return rgb, depth, hole & ~wins, np.where(wins, layer.ids, 0).astype(np.int32)


def frame_points(tracks: list[ObjectTrack], paths: dict[int, PosePath], cameras: Cameras, up):
    """Per frame, the points of the objects in view at their poses: (list of float32 [n,3],
    list of uint8 [n,3]); empty arrays where none is in view (spatia-5b's control video)."""
    f = len(cameras)
    xyz = [np.zeros((0, 3), np.float32) for _ in range(f)]
    rgb = [np.zeros((0, 3), np.uint8) for _ in range(f)]
    for t in tracks:
        if not len(t.xyz):
            continue
        path = paths[t.id]
        for i in np.flatnonzero(in_view(t, path, cameras, up)):
            xyz[i] = np.concatenate([xyz[i], posed(t, path.position[i], path.heading[i], up)])
            rgb[i] = np.concatenate([rgb[i], t.rgb])
    return xyz, rgb
