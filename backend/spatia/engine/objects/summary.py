"""One object as the HTTP API and `spatia objects --json` describe it."""

from __future__ import annotations

import numpy as np

from .model import ObjectTrack
from .motion import PARKED_SPEED, velocity


def object_state(track: ObjectTrack, fps: float) -> str:
    """"parked" (slower than PARKED_SPEED over its last second seen, as the motion model takes
    it) or "moving"."""
    return "moving" if float(np.linalg.norm(velocity(track, fps))) >= PARKED_SPEED else "parked"


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
