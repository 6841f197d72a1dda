"""One object as the HTTP API and `spatia objects --json` describe it."""

from __future__ import annotations

import numpy as np

from .model import ObjectTrack
from .motion import MODES, PARKED_SPEED, STOPPED


def speed(track: ObjectTrack, fps: float) -> float:
    """m/s: its most likely hypothesis' speed (a track without a motion state: over its last
    two observed poses)."""
    state = track.motion
    if state is not None:
        j = state.best()
        return 0.0 if j == STOPPED else float(np.linalg.norm(state.x[j, 2:4]))
    if len(track.key_frame) < 2:
        return 0.0
    dt = (track.key_frame[-1] - track.key_frame[-2]) / fps
    return float(np.linalg.norm(track.key_position[-1] - track.key_position[-2]) / dt)


def object_state(track: ObjectTrack, fps: float) -> str:
    """"parked" (its most likely hypothesis slower than PARKED_SPEED, or stopped) or "moving"."""
    return "moving" if speed(track, fps) >= PARKED_SPEED else "parked"


def last_seen(track: ObjectTrack) -> int | None:
    """The last frame the object was seen in (null for a copy never seen)."""
    if not len(track.seen):
        return None
    first, count = track.seen[-1]
    return int(first + count - 1)


def describe(track: ObjectTrack, fps: float) -> dict:
    """One object as the API and `--json` give it."""
    return {
        "id": int(track.id),
        "label": track.label,
        "state": object_state(track, fps),
        "status": track.status,
        "motion": MODES[track.motion.best()] if track.motion is not None else None,
        "uncertainty": round(track.motion.sigma(), 4) if track.motion is not None else None,
        "condition": bool(track.condition),
        "reference": bool(track.reference),
        "points": int(len(track.xyz)),
        "extent": [round(float(v), 6) for v in track.extent],
        "keys": [{"frame": int(f), "position": [float(v) for v in p], "heading": float(h)}
                 for f, p, h in zip(track.key_frame, track.key_position, track.key_heading)],
        "seen": [[int(a), int(n)] for a, n in track.seen],
        "last_seen": last_seen(track),
        "crops": [{"frame": int(c.frame), "score": round(float(c.score), 6)}
                  for c in sorted(track.crops, key=lambda c: -c.score)],
    }
