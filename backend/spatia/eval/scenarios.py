"""A seeded generator of object-memory scenarios, built with bpy like the other moving scenes
(moving.py): people and cars on a plaza while the camera pans away and back, so each object is
out of view for a while (1 to 15 s) and comes back. Each scenario draws, from its seed, one
motion class and its numbers (speeds, lanes, when the camera turns away and for how long, which
way a turn goes, when a stop or a reversal happens, how alike two people look):

- constant velocity: walks or drives straight on;
- turn: turns 90 degrees (left or right) while unseen, then goes straight;
- stop: stops (parks) while unseen and stays;
- reversal: turns round while unseen and goes back;
- swap look-alike / swap distinct: two people walk past each other while unseen, shirts of
  nearly the same or of clearly different colours;
- approach / recede: comes towards the camera from far (or goes away from near) across the
  absence;
- crossing: two objects cross each other's paths at right angles while unseen.

The class and numbers come from `numpy.random.default_rng([seed, index])` alone: the suite is
the same on every machine, and a different seed makes scenarios nobody has looked at.
`register(seed, count)` adds them to the evaluation scenes (`spatia eval --scenes scenarios`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import moving
from .scenes import _empty_scene

CLASSES = ("constant velocity", "turn", "stop", "reversal", "swap look-alike", "swap distinct", "approach",
           "recede", "crossing")
DEFAULT_COUNT = 30
DEFAULT_SEED = 2026
FPS = 6  # low, so that a short render spans many seconds
ACTION_Y = 6.0  # the action happens around here, in front of the camera (which looks along +y)


@dataclass(frozen=True)
class Scenario:
    name: str
    motion: str  # one of CLASSES
    seed: int
    index: int
    duration_s: float
    away: tuple[float, float, float, float]  # normalised times: pan away starts, is away, turns back, is back
    pan_degrees: float
    params: dict

    @property
    def absence_s(self) -> float:
        """About how long the action is out of view: from half-way through the pan away to
        half-way through the pan back."""
        t0, t1, t2, t3 = self.away
        return ((t2 + t3) / 2 - (t0 + t1) / 2) * self.duration_s

    def description(self) -> str:
        return f"{self.motion}, out of view about {self.absence_s:.1f} s of {self.duration_s:.0f} s"


def make_scenarios(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT) -> list[Scenario]:
    """`count` scenarios; the classes go round in order (so every class is there from 9 on), all
    else is drawn from the seed."""
    out = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        motion = CLASSES[i % len(CLASSES)]
        absence = float(rng.uniform(1.0, 15.0))
        lead, tail = float(rng.uniform(2.5, 4.0)), float(rng.uniform(2.5, 4.0))
        pan = float(rng.uniform(1.0, 1.8))  # seconds each pan takes
        duration = lead + pan + max(absence - pan, 0.2) + pan + tail
        t0 = lead / duration
        t1 = t0 + pan / duration
        t3 = 1.0 - tail / duration
        t2 = t3 - pan / duration
        label = "car" if motion in ("stop", "approach", "recede") or (motion in ("constant velocity", "turn", "crossing")
                                                                     and rng.uniform() < 0.5) else "person"
        speed = float(rng.uniform(2.5, 5.0) if label == "car" else rng.uniform(0.8, 1.5))
        params = {
            "label": label, "speed": speed, "direction": float(rng.choice([-1.0, 1.0])),
            "lane": float(ACTION_Y + rng.uniform(-0.5, 1.0)), "turn": float(rng.choice([-1.0, 1.0])),
            "event": float(rng.uniform(0.2, 0.8)),  # where in the absence the turn, stop or reversal happens
            "shirt": [float(v) for v in rng.uniform(0.1, 0.9, 3)],
            "other_shirt": [float(v) for v in rng.uniform(0.1, 0.9, 3)],
            "gap": float(rng.uniform(1.0, 1.8)),
        }
        if motion == "swap look-alike":
            params["other_shirt"] = [min(0.95, max(0.05, v + float(rng.uniform(-0.06, 0.06)))) for v in params["shirt"]]
        elif motion == "swap distinct":
            params["other_shirt"] = [1.0 - v for v in params["shirt"]]
        out.append(Scenario(f"scenario-{i:02d}", motion, seed, i, duration, (t0, t1, t2, t3),
                            float(rng.choice([-1.0, 1.0]) * rng.uniform(80, 110)), params))
    return out


# --- bpy ------------------------------------------------------------------------------------------------
def _frames(duration_s: float) -> int:
    return max(3, int(round(duration_s * FPS)))


def build(scenario: Scenario, width: int, height: int):
    from spatia.demo.scene import DemoScene

    bpy, scene, camera = _empty_scene(width, height, FPS)
    moving._plaza(bpy, scene)
    p = scenario.params
    shirt = tuple(p["shirt"])
    if p["label"] == "car":
        moving._car(bpy, scene, "Mover", 1, ((shirt[0], 0.1, 0.08), (0.95, 0.8, 0.1)), ((0.1, 0.15, 0.35), (0.5, 0.7, 0.85)))
    else:
        moving._figure(bpy, scene, "Mover", 1, (shirt, (0.95, 0.9, 0.85)))
    if scenario.motion in ("swap look-alike", "swap distinct", "crossing"):
        other = tuple(p["other_shirt"])
        if scenario.motion == "crossing" and p["label"] == "car":
            moving._car(bpy, scene, "Other", 2, ((0.1, 0.2, other[2]), (0.9, 0.9, 0.9)), ((0.3, 0.3, 0.3), (0.6, 0.6, 0.6)))
        else:
            moving._figure(bpy, scene, "Other", 2, (other, (0.95, 0.9, 0.85)))
    return DemoScene(scene, camera)


def camera_path(scenario: Scenario, frame_count: int) -> list[np.ndarray]:
    """Look north at the action (5 m away), pan away (to one side) and back, drifting 40 cm forward."""
    t0, t1, t2, t3 = scenario.away
    away = math.radians(scenario.pan_degrees)
    times = np.arange(frame_count) / max(frame_count - 1, 1)
    return [moving._yaw_view((0.0, 1.0 + 0.4 * t, moving.EYE), moving._pan_away_and_back(t, away, t0, t1, t2, t3))
            for t in times]


IN_VIEW_X = 2.5  # metres either side of the view's centre where a person is when the camera turns away and back
CAR_IN_VIEW_X = 4.0  # ... and a car (on a lane farther away)
CAR_LANE_Y = 9.5  # cars drive 8.5 m from the camera, people walk about 5 m from it


def _keys_for(scenario: Scenario, frame_count: int, first: int, which: int) -> list:
    """(frame, location, heading) keys of mover `which` (1 or 2) over the shot. Speeds are held
    down so that the mover is in view (IN_VIEW_X from the centre) when the camera turns away and
    where a straight-on mover would be in view again when it is back."""
    p = scenario.params
    t0, t1, t2, t3 = scenario.away
    duration = scenario.duration_s
    last = first + frame_count - 1
    frame = lambda t: first + t * (frame_count - 1)
    d = p["direction"] if which == 1 else -p["direction"]
    car = p["label"] == "car"
    reach = CAR_IN_VIEW_X if car else IN_VIEW_X
    v = min(p["speed"], 2 * reach / ((t3 - t0) * duration))
    lane = (CAR_LANE_Y + (p["lane"] - ACTION_Y - 0.25) / 1.5 if car else p["lane"]) + (0.0 if which == 1 else p["gap"])
    heading = 0.0 if d > 0 else math.pi
    at = lambda t: -d * reach + d * v * (t - t0) * duration  # -X at t0, +X at t3
    motion = scenario.motion
    te = t1 + (t2 - t1) * p["event"]  # the turn, stop or reversal: while unseen
    straight = [(first, (at(0.0), lane, 0.0), heading), (last, (at(1.0), lane, 0.0), heading)]
    if motion in ("constant velocity", "swap look-alike", "swap distinct"):
        return straight
    if motion == "crossing":
        if which == 1:
            return straight
        # the other comes from the far side towards the camera, across the first one's lane mid-absence
        tm = (t1 + t2) / 2
        v2 = min(p["speed"], 4.0 / ((t3 - tm) * duration))
        y = lambda t: lane - v2 * (t - tm) * duration
        return [(first, (0.3, y(0.0), 0.0), -math.pi / 2), (last, (0.3, y(1.0), 0.0), -math.pi / 2)]
    if motion == "turn":
        xe = at(te)
        turn = p["turn"] if not car else (-1.0 if d > 0 else 1.0)  # a car turns towards the camera, off the facade
        h2 = heading + turn * math.pi / 2
        rest = min(v * (1.0 - te) * duration, 3.0 if math.sin(h2) < 0 else 3.5)  # not behind the camera nor the facade
        corner = min(1.0 / duration, (1.0 - te) / 2)
        end = (xe + rest * math.cos(h2), lane + rest * math.sin(h2), 0.0)
        return [(first, (at(0.0), lane, 0.0), heading), (frame(te), (xe, lane, 0.0), heading),
                (frame(te + corner), (xe + 0.5 * math.cos(heading) + 0.5 * math.cos(h2), lane + 0.5 * math.sin(h2), 0.0), h2),
                (last, end, h2)]
    if motion == "stop":
        xe = at(te)
        return [(first, (at(0.0), lane, 0.0), heading), (frame(te), (xe, lane, 0.0), heading),
                (last, (xe, lane, 0.0), heading)]
    if motion == "reversal":
        xe = at(te)
        turn = min(0.5 / duration, (1.0 - te) / 2)
        back = xe - d * v * (1.0 - te - turn) * duration
        return [(first, (at(0.0), lane, 0.0), heading), (frame(te), (xe, lane, 0.0), heading),
                (frame(te + turn), (xe, lane, 0.0), heading + math.pi), (last, (back, lane, 0.0), heading + math.pi)]
    # approach (towards the camera) and recede (away from it), on a slant, in front of the north facade
    far, near = CAR_LANE_Y + 1.0, ACTION_Y - 1.5
    y0, y1 = (far, near) if motion == "approach" else (near, far)
    h = -math.pi / 2 if motion == "approach" else math.pi / 2
    return [(first, (-0.8, y0, 0.0), h), (last, (0.8, y1, 0.0), h)]


def animate(scenario: Scenario, scene, frame_count: int) -> None:
    for k, root in enumerate(moving.moving_objects(scene), start=1):
        moving.key_linear(root, _keys_for(scenario, frame_count, scene.frame_start, k))


# --- registration --------------------------------------------------------------------------------------
ROUND_FRAMES = 24  # about 4 s a round at FPS


def eval_scenes_spec(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT) -> list[Scenario]:
    return make_scenarios(seed, count)


def eval_scenes(scene_type, seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT) -> list:
    """The scenarios as evaluation scenes (`scene_type`: groundtruth.EvalScene), each with its own
    length (its duration at FPS) and rounds of about ROUND_FRAMES frames."""
    out = []
    for s in make_scenarios(seed, count):
        n = _frames(s.duration_s)
        out.append(scene_type(
            s.name, lambda w, h, s=s: build(s, w, h), lambda n, s=s: camera_path(s, n),
            f"{'a car' if s.params['label'] == 'car' else 'a person'} on a paved plaza", s.description(),
            lambda scene, n, s=s: animate(s, scene, n), frames=n, rounds=max(2, math.ceil(n / ROUND_FRAMES))))
    return out


def classes_of(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT) -> dict[str, str]:
    return {s.name: s.motion for s in make_scenarios(seed, count)}
