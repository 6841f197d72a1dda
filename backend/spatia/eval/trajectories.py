"""Camera paths that leave a place and come back to it exactly (closed loops), as Blender
matrix_world per frame. The last frame's pose equals the first's, so the revisit can be
compared with the start view pixel for pixel."""

from __future__ import annotations

import math

import numpy as np

from spatia.demo.scene import look_at_matrix_world, look_away_and_back

from .scenes import terrain_height


def _loop_times(frame_count: int) -> np.ndarray:
    if frame_count < 3:
        raise ValueError(f"a closed loop needs at least 3 frames, got {frame_count}")
    return np.arange(frame_count) / (frame_count - 1)  # 0 .. 1 inclusive: last pose == first


def room_look_away_and_back(frame_count: int) -> list[np.ndarray]:
    """The demo's path: turn away from the far wall, swing to the other side, come back."""
    _loop_times(frame_count)
    return look_away_and_back(frame_count)


STREET_WALK = 12.0  # metres walked down the street before turning back
STREET_LANE = 1.0  # lateral offset: out on the right lane, back on the left
STREET_EYE = 1.6


def street_out_and_back(frame_count: int) -> list[np.ndarray]:
    """Walk down the street on one side, U-turn, walk back on the other side and U-turn into
    the starting pose: a stadium-shaped loop at constant speed. Halfway back, the camera sees
    houses that look like the ones at the start but stand 7 m away."""
    length, radius = STREET_WALK, STREET_LANE
    perimeter = 2 * length + 2 * math.pi * radius
    out = []
    for t in _loop_times(frame_count):
        s = (t * perimeter) % perimeter
        if s < length:  # out, heading +y at x = +r
            theta, pos = 0.0, (radius, s)
        elif s < length + math.pi * radius:  # U-turn around (0, L)
            theta = (s - length) / radius
            pos = (radius * math.cos(theta), length + radius * math.sin(theta))
        elif s < 2 * length + math.pi * radius:  # back, heading -y at x = -r
            theta, pos = math.pi, (-radius, length - (s - length - math.pi * radius))
        else:  # U-turn around (0, 0) into the start
            theta = math.pi + (s - 2 * length - math.pi * radius) / radius
            pos = (radius * math.cos(theta), radius * math.sin(theta))
        heading = np.array([-math.sin(theta), math.cos(theta), -0.08])
        eye = np.array([pos[0], pos[1], STREET_EYE])
        out.append(look_at_matrix_world(eye, eye + heading))
    return out


ORBIT_RADIUS = 11.0
ORBIT_HEIGHT = 2.5  # above the ground under the camera


def terrain_orbit(frame_count: int) -> list[np.ndarray]:
    """A full circle around the rocks and trees at the centre, looking slightly past the
    centre, with a gentle in-and-out breathing of the radius so the path is not a pure cone."""
    out = []
    target_z = float(terrain_height(0.0, 0.0)) + 0.8
    for t in _loop_times(frame_count):
        angle = 2 * math.pi * t
        r = ORBIT_RADIUS * (1.0 + 0.1 * math.sin(2 * angle))
        x, y = r * math.cos(angle), r * math.sin(angle)
        eye = np.array([x, y, float(terrain_height(x, y)) + ORBIT_HEIGHT])
        out.append(look_at_matrix_world(eye, np.array([0.0, 0.0, target_z])))
    return out


def round_plan(frames: int, rounds: int) -> dict:
    """Equal rounds that cover `frames` frames with ~10% overlap (the paper's 81-frame rounds
    share 9 frames): first_round_frames, round_frames and overlap for GenerateSettings."""
    if rounds == 1:
        return {"first_round_frames": frames, "round_frames": frames, "overlap": 1}
    overlap = max(1, round(0.1 * frames / rounds))
    length = math.ceil((frames + (rounds - 1) * overlap) / rounds)
    return {"first_round_frames": length, "round_frames": max(length, overlap + 2), "overlap": overlap}
