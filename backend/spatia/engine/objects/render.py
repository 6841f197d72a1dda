"""Objects at their predicted poses in a round's conditioning: splatted with the memory's
renderer and drawn by depth into the memory's projection (see docs/objects.md)."""

from __future__ import annotations

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.render import SPLAT_OVERLAP, render

from .model import ObjectTrack, rotation
from .motion import PosePath

NEAR = 1e-2


def posed(track: ObjectTrack, position, heading: float, up) -> np.ndarray:
    """The track's points in the world at one pose, float32 [N,3]."""
    return (track.xyz.astype(np.float64) @ rotation(up, heading).T + position).astype(np.float32)


def _box(track: ObjectTrack) -> np.ndarray:
    lo, hi = track.xyz.min(axis=0), track.xyz.max(axis=0)
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], np.float64)


def _projected_box(track: ObjectTrack, path: PosePath, cameras: Cameras, up):
    """The object's box at its pose in each frame, projected: (u0, u1, v0, v1) [F] over the corners
    in front of the camera (inf / -inf when none is), and whether any / all corners are in front."""
    world = np.einsum("fij,kj->fki", rotation(up, path.heading), _box(track)) + path.position[:, None]
    cam = np.einsum("fij,fkj->fki", cameras.w2c[:, :3, :3], world) + cameras.w2c[:, None, :3, 3]
    z = cam[..., 2]
    front = z > NEAR
    zc = np.where(front, z, NEAR)
    u = cameras.intrinsics[:, None, 0] * cam[..., 0] / zc + cameras.intrinsics[:, None, 2]
    v = cameras.intrinsics[:, None, 1] * cam[..., 1] / zc + cameras.intrinsics[:, None, 3]
    u0, u1 = np.where(front, u, np.inf).min(axis=1), np.where(front, u, -np.inf).max(axis=1)
    v0, v1 = np.where(front, v, np.inf).min(axis=1), np.where(front, v, -np.inf).max(axis=1)
    return u0, u1, v0, v1, front.any(axis=1), front.all(axis=1)


def in_view(track: ObjectTrack, path: PosePath, cameras: Cameras, up) -> np.ndarray:
    """bool [F]: whether any part of the object's box at its pose falls in each camera's image."""
    if not len(track.xyz):
        return np.zeros(len(cameras), bool)
    u0, u1, v0, v1, any_front, all_front = _projected_box(track, path, cameras, up)
    # a box partly behind the camera is taken as in view when any corner is in front
    overlaps = (u1 >= 0) & (u0 <= cameras.width) & (v1 >= 0) & (v0 <= cameras.height)
    return any_front & (overlaps | ~all_front)


MARGIN_PX = 10  # around an object's projected box: its splats reach past the box's corners


def _windows(track: ObjectTrack, path: PosePath, cameras: Cameras, up) -> np.ndarray:
    """int [F, 4] (x0, y0, x1, y1): the part of each frame the object can cover (its projected
    box and a margin; the whole frame when the box reaches behind the camera)."""
    u0, u1, v0, v1, _, all_front = _projected_box(track, path, cameras, up)
    w, h = cameras.width, cameras.height
    box = np.stack([np.clip(np.floor(u0) - MARGIN_PX, 0, w), np.clip(np.floor(v0) - MARGIN_PX, 0, h),
                    np.clip(np.ceil(u1) + MARGIN_PX, 0, w), np.clip(np.ceil(v1) + MARGIN_PX, 0, h)], axis=1)
    return np.where(all_front[:, None], box, [0, 0, w, h]).astype(np.int64)


def draw_objects(rgb: np.ndarray, depth: np.ndarray, hole: np.ndarray, tracks: list[ObjectTrack],
                 paths: dict[int, PosePath], cameras: Cameras, up, *, device=None) -> np.ndarray:
    """Draw every track at its poses into the memory's projection, in place, in the frames where
    its path says it is drawn (`PosePath.drawn`: its uncertainty small against its size, and not
    lost; docs/objects.md): rgb uint8 [F,H,W,3],
    depth float32 [F,H,W] (0 in holes), hole bool [F,H,W]. An object pixel replaces the memory's
    (or another object's) where it is nearer, and fills a hole. Returns int32 [F,H,W]: the object
    that won each pixel (0: none).

    Each object is rendered in its own frame, with one camera per frame carrying its pose
    (object-to-camera = w2c @ pose), over only the window of the image its box can cover: one
    batched render per object however it moves, and no frame-sized canvas for a small object."""
    ids = np.zeros((len(cameras), cameras.height, cameras.width), np.int32)
    for track in tracks:
        if not len(track.xyz):
            continue
        path = paths[track.id]
        frames = np.flatnonzero(in_view(track, path, cameras, up) & path.drawn)  # only where it is known well enough
        if not len(frames):
            continue
        seen = PosePath(path.frames[frames], path.position[frames], path.heading[frames], path.source)
        box = _windows(track, seen, cameras[frames], up)
        width, height = int((box[:, 2] - box[:, 0]).max()), int((box[:, 3] - box[:, 1]).max())
        if width < 1 or height < 1:
            continue
        k = cameras.intrinsics[frames].copy()
        k[:, 2] -= box[:, 0]
        k[:, 3] -= box[:, 1]
        pose = np.tile(np.eye(4), (len(frames), 1, 1))
        pose[:, :3, :3] = rotation(up, seen.heading)
        pose[:, :3, 3] = seen.position
        local = Cameras(k, cameras.w2c[frames] @ pose, width, height)
        out = render(track.xyz, track.rgb, local, point_size=track.spacing * SPLAT_OVERLAP, device=device)
        o_depth, o_mask, o_rgb = out.depth.cpu().numpy(), out.mask.cpu().numpy(), out.rgb.cpu().numpy()
        for n, i in enumerate(frames):
            x0, y0, x1, y1 = box[n]
            w, h = x1 - x0, y1 - y0
            window = (i, slice(y0, y1), slice(x0, x1))
            static = np.where(hole[window], np.float32(np.inf), depth[window])
            wins = o_mask[n, :h, :w] & (o_depth[n, :h, :w] < static)
            depth[window][wins] = o_depth[n, :h, :w][wins]
            rgb[window][wins] = o_rgb[n, :h, :w][wins]
            hole[window][wins] = False
            ids[window][wins] = track.id
    return ids


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
        for i in np.flatnonzero(in_view(t, path, cameras, up) & path.drawn):
            xyz[i] = np.concatenate([xyz[i], posed(t, path.position[i], path.heading[i], up)])
            rgb[i] = np.concatenate([rgb[i], t.rgb])
    return xyz, rgb
