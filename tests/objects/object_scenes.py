"""A small street built of points, with moving boxes, rendered by the memory's renderer: exact
depth, exact instance ids and exact object poses at every frame (Z up, like Blender)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spatia.cameras import Cameras, Trajectory
from spatia.engine.models.base import GenerationResult, ModelRequirements, VideoGenerator
from spatia.engine.render import render

UP = np.array([0.0, 0.0, 1.0])
W, H, FPS = 96, 64, 8.0
STATIC_SPACING = 0.1


def look(position, yaw_degrees: float, focal: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
    """(intrinsics, w2c) of a level camera at `position` looking along yaw (0: +x, 90: +y)."""
    a = np.radians(yaw_degrees)
    forward = np.array([np.cos(a), np.sin(a), 0.0])
    right = np.array([np.sin(a), -np.cos(a), 0.0])
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, -UP, forward], axis=1)
    c2w[:3, 3] = position
    return np.array([focal, focal, W / 2, H / 2]), np.linalg.inv(c2w)


def cameras(yaws, position=(0.0, 0.0, 1.5)) -> Cameras:
    k, w2c = zip(*(look(np.array(position), y) for y in yaws))
    return Cameras(np.stack(k), np.stack(w2c), W, H)


def _faces(lo, hi, step, colour_a, colour_b):
    """Points on the six faces of an axis-aligned box, in a two-colour checker of `step` cells."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    pts = []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        gu = np.arange(lo[u], hi[u] + 1e-9, step)
        gv = np.arange(lo[v], hi[v] + 1e-9, step)
        uu, vv = np.meshgrid(gu, gv, indexing="ij")
        for side in (lo[axis], hi[axis]):
            p = np.zeros((uu.size, 3))
            p[:, axis], p[:, u], p[:, v] = side, uu.ravel(), vv.ravel()
            pts.append(p)
    xyz = np.concatenate(pts)
    cell = np.floor(xyz / (step * 2)).astype(np.int64).sum(axis=1) % 2
    rgb = np.where(cell[:, None] == 0, colour_a, colour_b).astype(np.uint8)
    return xyz.astype(np.float32), rgb


@dataclass
class Mover:
    """A box of `size` whose centre moves from `start` at `velocity` (m/s), heading fixed."""

    label: str
    start: np.ndarray
    velocity: np.ndarray
    size: tuple = (1.6, 0.8, 0.6)
    colours: tuple = ((200, 30, 30), (240, 220, 60))
    xyz: np.ndarray = field(init=False)
    rgb: np.ndarray = field(init=False)

    def __post_init__(self):
        half = np.array(self.size) / 2
        self.xyz, self.rgb = _faces(-half, half, 0.05, *self.colours)
        self.start, self.velocity = np.asarray(self.start, float), np.asarray(self.velocity, float)

    def position(self, frame) -> np.ndarray:
        return self.start + self.velocity * (np.asarray(frame, float)[..., None] / FPS)

    def heading(self, frame) -> np.ndarray:
        return np.zeros(np.shape(frame))

    def world_points(self, frame) -> np.ndarray:
        a = float(self.heading(frame))
        turn = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        return (self.xyz @ turn.T + self.position(frame)).astype(np.float32)


@dataclass
class Circler(Mover):
    """A box driving round a circle of `radius` about `start` at `speed` m/s, facing along it."""

    radius: float = 3.0
    speed: float = 1.0
    phase: float = 0.0

    def _angle(self, frame):
        return self.phase + self.speed / self.radius * np.asarray(frame, float) / FPS

    def position(self, frame) -> np.ndarray:
        a = self._angle(frame)
        return self.start + self.radius * np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], axis=-1)

    def heading(self, frame) -> np.ndarray:
        return self._angle(frame) + np.pi / 2


class Street:
    """Ground, a building, and movers; `frames(indices, cameras)` renders the truth."""

    def __init__(self, movers: list[Mover], building=((3.0, 7.0, 0.0), (6.0, 11.0, 4.0))):
        gx, gy = np.meshgrid(np.arange(-14, 14, STATIC_SPACING), np.arange(-2, 24, STATIC_SPACING), indexing="ij")
        ground = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1).astype(np.float32)
        checker = (np.floor(gx.ravel()) + np.floor(gy.ravel())).astype(np.int64) % 2
        ground_rgb = np.where(checker[:, None] == 0, (90, 110, 90), (140, 150, 120)).astype(np.uint8)
        house, house_rgb = _faces(*building, STATIC_SPACING, (120, 120, 200), (60, 60, 140))
        self.static_xyz = np.concatenate([ground, house])
        self.static_rgb = np.concatenate([ground_rgb, house_rgb])
        self.movers = movers

    def frames(self, indices, cams: Cameras):
        rgb = np.zeros((len(cams), H, W, 3), np.uint8)
        depth = np.zeros((len(cams), H, W), np.float32)
        ids = np.zeros((len(cams), H, W), np.int32)
        for i, f in enumerate(indices):
            xyz = [self.static_xyz] + [m.world_points(f) for m in self.movers]
            colours = [self.static_rgb] + [m.rgb for m in self.movers]
            owner = np.concatenate([np.zeros(len(self.static_xyz), np.int32)]
                                   + [np.full(len(m.xyz), k + 1, np.int32) for k, m in enumerate(self.movers)])
            sizes = np.concatenate([np.full(len(self.static_xyz), STATIC_SPACING * 1.5, np.float32)]
                                   + [np.full(len(m.xyz), 0.075, np.float32) for m in self.movers])
            out = render(np.concatenate(xyz), np.concatenate(colours), cams[i:i + 1], point_size=sizes, return_index=True)
            index = out.index[0].numpy()
            rgb[i] = out.rgb[0].numpy()
            depth[i] = np.nan_to_num(out.depth[0].numpy(), posinf=0.0)
            ids[i] = np.where(index >= 0, owner[np.maximum(index, 0)], 0)
        return rgb, depth, ids


class StreetOracle(VideoGenerator):
    """The truth of a Street for the requested frames, instances renumbered per clip (the world
    must associate them itself); `instances=False` gives no instance masks."""

    name = "street-oracle"

    def __init__(self, street: Street, *, instances: bool = True, seed: int = 0):
        self.street, self.instances = street, instances
        self.rng = np.random.default_rng(seed)
        self.requests, self.perms = [], []

    @property
    def requirements(self):
        return ModelRequirements()

    def check_available(self):
        return None

    def generate(self, request, progress=None, should_cancel=None):
        self.requests.append(request)
        frames = request.start_frame + np.arange(request.num_frames)
        rgb, depth, ids = self.street.frames(frames, request.cameras)
        if request.history is not None:
            rgb[: len(request.history)] = request.history
        info = {}
        if self.instances:
            perm = np.r_[0, self.rng.permutation(len(self.street.movers)) + 5]  # clip-local ids
            self.perms.append(perm)
            info["instance_masks"] = perm[ids].astype(np.int32)
            info["instance_labels"] = {int(perm[k + 1]): m.label for k, m in enumerate(self.street.movers)}
        return GenerationResult(frames=rgb, depth=depth, info=info)


def trajectory(yaws) -> Trajectory:
    return Trajectory(cameras(yaws), fps=FPS)
