"""The world's moving objects at one version: tracks with points in their own frame, observed
poses, appearance crops and the frames they were seen in (see docs/objects.md).

A pose is a position (world metres) and a heading (radians, a right-handed turn about the
world's up axis); an object's point p is at `position + R(up, heading) @ p` in the world.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

MAX_KEYS = 64  # observed poses kept per object: the first FIRST_KEYS and the latest
FIRST_KEYS = 4
MAX_CROPS = 4  # the best crops kept per object
CROP_SIZE = 96  # crops are letterboxed into CROP_SIZE x CROP_SIZE
HIST_BINS = 4  # per channel: 64 colour bins
REGIONS = 3  # appearance: a histogram per height band (bottom, middle, top third) besides the whole
STATUSES = ("tentative", "confirmed", "lost", "retired")
MAX_OBJECT_POINTS = 20_000


def snap_up(c2w_first: np.ndarray) -> np.ndarray:
    """The world's up axis: the first camera's up (minus its y axis) snapped to the nearest world
    axis (+Z for a Blender world, -Y for an OpenCV case whose first camera is the identity)."""
    up = -np.asarray(c2w_first, dtype=np.float64)[:3, 1]
    axis = int(np.argmax(np.abs(up)))
    out = np.zeros(3)
    out[axis] = np.sign(up[axis]) or 1.0
    return out


def rotation(up: np.ndarray, heading) -> np.ndarray:
    """R(up, heading) for one heading -> [3,3], or for [F] headings -> [F,3,3] (Rodrigues)."""
    heading = np.asarray(heading, dtype=np.float64)
    k = np.asarray(up, dtype=np.float64)
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    s, c = np.sin(heading)[..., None, None], np.cos(heading)[..., None, None]
    return np.eye(3) + s * skew + (1 - c) * (skew @ skew)


def wrap_angle(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


@dataclass(frozen=True, eq=False)
class Crop:
    """An appearance crop: rgb uint8 [S,S,3] and mask bool [S,S] letterboxed, from `frame`."""

    frame: int
    score: float
    rgb: np.ndarray
    mask: np.ndarray

    def on_white(self) -> np.ndarray:
        """The crop on a white background, as subject references are given to VACE."""
        return np.where(self.mask[..., None], self.rgb, np.uint8(255)).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class ObjectTrack:
    """One moving entity. xyz float32 [N,3] / rgb uint8 [N,3]: its points in its own frame.
    key_*: observed poses, frames ascending. seen: int64 [R,2] runs (first frame, count).
    spacing: the distance its points stand for (splat size). condition / reference: the
    artist's switches (render into the conditioning / offer a crop as reference)."""

    id: int
    label: str
    xyz: np.ndarray
    rgb: np.ndarray
    key_frame: np.ndarray
    key_position: np.ndarray
    key_heading: np.ndarray
    appearance: np.ndarray
    spacing: float
    crops: tuple[Crop, ...] = ()
    seen: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    condition: bool = True
    reference: bool = True
    motion: object = None  # motion.MotionState: the hypotheses where the last round left them (None: fit from keys)
    status: str = "confirmed"  # lifecycle: tentative -> confirmed -> lost -> retired (docs/objects.md)
    regions: np.ndarray | None = None  # float32 [REGIONS, 64]: colour histograms of its height bands

    @property
    def last_frame(self) -> int:
        return int(self.key_frame[-1])

    @property
    def last_pose(self) -> tuple[np.ndarray, float]:
        return self.key_position[-1].copy(), float(self.key_heading[-1])

    @property
    def anchor(self) -> np.ndarray:
        """The centroid of its points, in its own frame."""
        return self.xyz.mean(axis=0).astype(np.float64) if len(self.xyz) else np.zeros(3)

    @property
    def extent(self) -> np.ndarray:
        return np.ptp(self.xyz, axis=0).astype(np.float64) if len(self.xyz) else np.zeros(3)

    def best_crop(self) -> Crop | None:
        return max(self.crops, key=lambda c: c.score) if self.crops else None

    def frames_seen(self) -> np.ndarray:
        if not len(self.seen):
            return np.zeros(0, np.int64)
        return np.concatenate([np.arange(a, a + n) for a, n in self.seen]).astype(np.int64)

    def with_keys(self, frames, positions, headings) -> "ObjectTrack":
        """Observed poses added (a frame observed again keeps the newer pose), at most MAX_KEYS."""
        frame = np.concatenate([self.key_frame, np.asarray(frames, np.int64)])
        position = np.concatenate([self.key_position, np.asarray(positions, np.float64).reshape(-1, 3)])
        heading = np.concatenate([self.key_heading, np.asarray(headings, np.float64)])
        order = np.argsort(frame, kind="stable")
        frame, position, heading = frame[order], position[order], heading[order]
        last = np.r_[frame[1:] != frame[:-1], True]  # of equal frames, the one added last
        frame, position, heading = frame[last], position[last], heading[last]
        if len(frame) > MAX_KEYS:
            keep = np.r_[np.arange(FIRST_KEYS), np.arange(len(frame) - (MAX_KEYS - FIRST_KEYS), len(frame))]
            frame, position, heading = frame[keep], position[keep], heading[keep]
        return replace(self, key_frame=frame, key_position=position, key_heading=heading)

    def with_seen(self, frames) -> "ObjectTrack":
        frames = np.union1d(self.frames_seen(), np.asarray(frames, np.int64))
        return replace(self, seen=runs(frames))

    def with_crops(self, crops) -> "ObjectTrack":
        best = sorted([*self.crops, *crops], key=lambda c: -c.score)[:MAX_CROPS]
        return replace(self, crops=tuple(best))


def runs(frames: np.ndarray) -> np.ndarray:
    """Sorted unique frames -> int64 [R,2] (first frame, count) of consecutive runs."""
    frames = np.asarray(frames, np.int64)
    if not len(frames):
        return np.zeros((0, 2), np.int64)
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    starts = np.r_[0, breaks]
    ends = np.r_[breaks, len(frames)]
    return np.stack([frames[starts], ends - starts], axis=1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class ObjectSet:
    """Every remembered object of a world at one version (ordered by id)."""

    up: np.ndarray
    next_id: int = 1
    objects: tuple[ObjectTrack, ...] = ()

    def __len__(self) -> int:
        return len(self.objects)

    def ids(self) -> list[int]:
        return [o.id for o in self.objects]

    def get(self, object_id: int) -> ObjectTrack:
        for o in self.objects:
            if o.id == object_id:
                return o
        raise KeyError(f"no object {object_id}; the world remembers {self.ids() or 'none'}")

    def replaced(self, tracks) -> "ObjectSet":
        """With `tracks` put in (replacing those of the same id); ids above next_id raise it."""
        by_id = {o.id: o for o in self.objects}
        by_id.update({t.id: t for t in tracks})
        next_id = max([self.next_id, *(i + 1 for i in by_id)])
        return replace(self, objects=tuple(by_id[i] for i in sorted(by_id)), next_id=next_id)

    def without(self, ids) -> "ObjectSet":
        ids = set(int(i) for i in ids)
        missing = ids - set(self.ids())
        if missing:
            raise KeyError(f"no object {sorted(missing)}; the world remembers {self.ids() or 'none'}")
        return replace(self, objects=tuple(o for o in self.objects if o.id not in ids))

    def new_id(self) -> tuple[int, "ObjectSet"]:
        return self.next_id, replace(self, next_id=self.next_id + 1)
