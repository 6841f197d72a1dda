"""Where each object is over a round's frames: the artist's path where there is one, else a
motion model fitted to its observed track (constant velocity, damped, stopping at the memory's
surfaces; a parked object stays parked). See docs/objects.md."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import ObjectTrack, rotation, wrap_angle

FIT_SECONDS = 1.0  # the velocity is fitted to the observed poses of the last second seen ...
MIN_FIT_KEYS = 3  # ... or to the last three, when they span up to MAX_FIT_SECONDS
MAX_FIT_SECONDS = 3.0
PARKED_SPEED = 0.1  # m/s: slower than this is parked
HOLD_SECONDS = 2.0  # unseen for t seconds, an object keeps its velocity for the first HOLD_SECONDS ...
DAMPING_SECONDS = 4.0  # ... then slows: v (H + tau (1 - exp(-(t - H) / tau))), at most v (H + tau) in all
BLOCK_POINTS = 5  # memory points inside an object's box (above its lowest fifth) that stop it
BOTTOM_SHARE = 0.2


@dataclass(frozen=True, eq=False)
class PosePath:
    """Poses of one object at `frames` (int64 [F]): position float64 [F,3], heading [F]."""

    frames: np.ndarray
    position: np.ndarray
    heading: np.ndarray
    source: str  # "path" (the artist's), "motion", "parked"

    def at(self, frames) -> tuple[np.ndarray, np.ndarray]:
        return interpolate(self.frames, self.position, self.heading, frames)

    def as_dict(self) -> dict:
        return {"frames": self.frames.tolist(), "position": np.round(self.position, 5).tolist(),
                "heading": np.round(self.heading, 6).tolist()}


def interpolate(key_frames, key_position, key_heading, frames) -> tuple[np.ndarray, np.ndarray]:
    """Poses between keys (linear position, shortest-turn heading), held before the first key
    and after the last, as Blender's constant extrapolation does."""
    kf = np.asarray(key_frames, np.float64)
    frames = np.asarray(frames, np.float64)
    kp, kh = np.asarray(key_position, np.float64).reshape(-1, 3), np.asarray(key_heading, np.float64)
    position = np.stack([np.interp(frames, kf, kp[:, i]) for i in range(3)], axis=-1)
    unwrapped = kh[0] + np.concatenate([[0.0], np.cumsum(wrap_angle(np.diff(kh)))])
    return position, wrap_angle(np.interp(frames, kf, unwrapped))


def velocity(track: ObjectTrack, fps: float) -> np.ndarray:
    """The velocity (m/s) over the observed poses of the last FIT_SECONDS seen: the median of
    the pairwise slopes (Theil-Sen), so one poorly registered pose does not stop or fling it."""
    frames = track.key_frame.astype(np.float64)
    recent = frames >= frames[-1] - FIT_SECONDS * fps
    if recent.sum() < MIN_FIT_KEYS:  # seen in glimpses: reach back further for a few poses
        recent = (frames >= frames[-1] - MAX_FIT_SECONDS * fps) & (np.arange(len(frames)) >= len(frames) - MIN_FIT_KEYS)
    t = frames[recent] / fps
    if len(t) < 2 or np.ptp(t) <= 0:
        return np.zeros(3)
    p = track.key_position[recent]
    i, j = np.triu_indices(len(t), k=1)
    return np.median((p[j] - p[i]) / (t[j] - t[i])[:, None], axis=0)


def travel_time(t: np.ndarray) -> np.ndarray:
    """How many seconds of its last velocity an object unseen for `t` seconds has travelled."""
    late = np.maximum(np.asarray(t, np.float64) - HOLD_SECONDS, 0.0)
    return np.minimum(t, HOLD_SECONDS) + DAMPING_SECONDS * (1 - np.exp(-late / DAMPING_SECONDS))


def predict(track: ObjectTrack, frames, fps: float, up: np.ndarray, *, path=None, obstacles=None) -> PosePath:
    """The object's poses at `frames` (video indices). `path`: the artist's keys (frames,
    positions [K,3], headings [K]), which take precedence. `obstacles`: static memory points
    [N,3] the motion model does not push the object into."""
    frames = np.asarray(frames, np.int64)
    if path is not None and len(path[0]):
        position, heading = interpolate(*path, frames)
        return PosePath(frames, position, heading, "path")
    position, heading = interpolate(track.key_frame, track.key_position, track.key_heading, frames)
    v = velocity(track, fps)
    if np.linalg.norm(v) < PARKED_SPEED:
        return PosePath(frames, position, heading, "parked")
    last = track.last_frame
    ahead = frames > last
    if ahead.any():
        travelled = travel_time((frames[ahead] - last) / fps)
        position[ahead] = track.key_position[-1] + travelled[:, None] * v
        heading[ahead] = track.key_heading[-1]  # constant velocity: no turn
        if obstacles is not None and len(obstacles):
            _stop_at_surfaces(track, up, position, heading, ahead, np.asarray(obstacles))
    return PosePath(frames, position, heading, "motion")


def _inside(track: ObjectTrack, up: np.ndarray, points: np.ndarray, position, heading) -> np.ndarray:
    """Which `points` lie in the object's box at a pose, above the lowest BOTTOM_SHARE of it."""
    local = (points - position) @ rotation(up, heading)  # R^T (p - position), row vectors
    lo, hi = track.xyz.min(axis=0), track.xyz.max(axis=0)
    h = track.xyz @ up
    floor = h.min() + BOTTOM_SHARE * np.ptp(h)
    return (local >= lo).all(axis=1) & (local <= hi).all(axis=1) & (local @ up >= floor)


def _stop_at_surfaces(track, up, position, heading, ahead, obstacles) -> None:
    """Hold the object at its last free pose once its box would enter the memory's surfaces.
    Points already inside it where it was last seen (ground bumps, leftovers of itself) do not
    count."""
    if not len(track.xyz):
        return
    reach = float(np.linalg.norm(np.abs(track.xyz).max(axis=0)))
    lo, hi = position[ahead].min(axis=0) - reach, position[ahead].max(axis=0) + reach
    near = obstacles[(obstacles >= lo).all(axis=1) & (obstacles <= hi).all(axis=1)].astype(np.float64)
    if not len(near):
        return
    near = near[~_inside(track, up, near, track.key_position[-1], track.key_heading[-1])]
    steps = np.flatnonzero(ahead)
    for n, i in enumerate(steps):
        if np.count_nonzero(_inside(track, up, near, position[i], heading[i])) >= BLOCK_POINTS:
            free = track.key_position[-1] if n == 0 else position[steps[n - 1]].copy()
            position[steps[n:]] = free
            return
