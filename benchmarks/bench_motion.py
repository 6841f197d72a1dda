"""The object memory's motion filter alone, on motions made unseen: a walker (or a car) seen for a
few seconds, then out of view while it goes straight on, turns 90 degrees, stops or turns round
at a random moment of its absence, then back. Per motion class: the median distance between the
pose the filter would draw at re-entry (its likeliest hypothesis' mean) and the truth, the
signed error along the way it was going (negative: behind), and the share of re-entries certain
enough to be drawn. Then, seen again in the CONFIRM_FRAMES keyframes the tracker needs before it
draws an object seen again after a while unseen (stale motion loosened first, as the tracker
does: `associate.reacquire`), the next 4 s as the following round would draw them: the share
of those frames drawn, and the median and 90th-percentile error of the drawn ones, with the
drawing limit a tenth of the mover's footprint (the rule) and of its height (the rule before: a
walker is 1.75 m tall and 0.5 m across). No Blender, no renderer: seconds on a CPU, so
the filter's constants can be weighed quickly before the scenario suite (`spatia eval --scenes
scenarios`) measures them.

Both with the straight-on hypothesis' place kept pure ("straight on since it was last seen",
the default) and mixed as an interacting-multiple-model filter mixes every hypothesis: how much
of the error at re-entry is that mixing rather than the unpredictability of the motion itself.

    .venv/bin/python benchmarks/bench_motion.py [--quick] [--trials 200] [--seen-s 3] [--unseen-s 11]
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager

import numpy as np

from harness import write
from spatia.engine.objects import motion
from spatia.engine.objects.associate import CONFIRM_FRAMES, REACQUIRE_SECONDS, reacquire

UP = np.array([0.0, 0.0, 1.0])
FPS = 6.0
KEY_STEP = 2  # a keyframe every other frame, as the world observes
MOVERS = {"person": (0.35, 1.75, 0.5), "car": (2.0, 4.2, 4.2)}  # speed m/s, largest extent m, footprint m
AHEAD_S = 4.0  # seconds predicted after the mover is seen again: about a round


def truth(kind: str, t: float, speed: float, event: float) -> np.ndarray:
    """Where the mover is at t seconds (along +a, turning towards +b)."""
    if kind == "constant velocity" or t <= event:
        return np.array([speed * t, 0.0])
    after = t - event
    return {"turn": np.array([speed * event, speed * after]), "stop": np.array([speed * event, 0.0]),
            "reversal": np.array([speed * (event - after), 0.0])}[kind]


def trial(kind: str, label: str, rng: np.random.Generator, seen_s: float, unseen_s: float, sigma: float,
          again: np.random.Generator) -> tuple:
    speed, _, across = MOVERS[label]
    seen = int(seen_s * FPS)
    event = seen_s + unseen_s * rng.uniform(0.2, 0.8)
    state, last = None, 0
    for frame in range(0, seen, KEY_STEP):
        a, b = truth(kind, frame / FPS, speed, event) + rng.normal(0.0, sigma, 2)
        heading = float(rng.normal(0.0, 0.1))
        if state is None:
            state = motion.initial_state(frame, (a, b, 0.8), heading, UP, label, sigma)
        else:
            state = motion.observe_pose(state, frame, (a, b, 0.8), heading, UP, FPS, sigma)
        last = frame
    back = seen + int(unseen_s * FPS)
    state = motion.advance(state, back, FPS)
    position, _ = state.pose(UP)
    error = position[:2] - truth(kind, back / FPS, speed, event)
    at_reentry = (float(np.linalg.norm(error)), float(error[0]), state.sigma() <= motion.limit_for(across))
    # seen again (its heading measured unturned, as registration may), after what the tracker does
    # to an object seen again after a while unseen (its old motion is stale), in the CONFIRM_FRAMES
    # keyframes the tracker needs before it draws it again, then the next AHEAD_S
    if back - last > REACQUIRE_SECONDS * FPS:
        state = reacquire(state)
    for frame in range(back, back + CONFIRM_FRAMES * KEY_STEP, KEY_STEP):
        a, b = truth(kind, frame / FPS, speed, event) + again.normal(0.0, sigma, 2)
        state = motion.observe_pose(state, frame, (a, b, 0.8), float(again.normal(0.0, 0.1)), UP, FPS, sigma)
    back = frame
    after = []
    for frame in range(back + 1, back + 1 + int(AHEAD_S * FPS)):
        state = motion.advance(state, frame, FPS)
        position, _ = state.pose(UP)
        after.append((float(np.linalg.norm(position[:2] - truth(kind, frame / FPS, speed, event))), state.sigma()))
    return at_reentry, np.array(after)


def drawn_figures(after: np.ndarray, size: float) -> dict:
    """Of the frames after re-acquisition ([N, 2]: error, uncertainty): the share drawn under the
    limit for `size`, and the drawn ones' median and 90th-percentile error."""
    drawn = after[:, 1] <= motion.limit_for(size)
    errors = after[drawn, 0]
    return {"drawn_share": round(float(drawn.mean()), 3),
            "median_error_m": round(float(np.median(errors)), 3) if len(errors) else None,
            "p90_error_m": round(float(np.percentile(errors, 90)), 3) if len(errors) else None}


@contextmanager
def straight_state(pure: bool):
    """The filter with the straight-on hypothesis' place kept pure (motion.PURE_STRAIGHT) or mixed."""
    before = motion.PURE_STRAIGHT
    motion.PURE_STRAIGHT = pure
    try:
        yield
    finally:
        motion.PURE_STRAIGHT = before


def measure(trials: int, seen_s: float, unseen_s: float, sigma: float) -> dict:
    out = {}
    for m, label in enumerate(MOVERS):
        for k, kind in enumerate(("constant velocity", "turn", "stop", "reversal")):
            rng = np.random.default_rng([m, k])  # the same draws for every variant measured
            again = np.random.default_rng([m, k, 1])  # apart, so the re-entry figures keep their draws
            runs = [trial(kind, label, rng, seen_s, unseen_s, sigma, again) for _ in range(trials)]
            rows = np.array([r[0] for r in runs])
            after = np.concatenate([r[1] for r in runs])
            _, height, across = MOVERS[label]
            out[f"{label}, {kind}"] = {"median_error_m": round(float(np.median(rows[:, 0])), 3),
                                       "median_signed_error_m": round(float(np.median(rows[:, 1])), 3),
                                       "drawn_share": round(float(rows[:, 2].mean()), 3),
                                       "seen_again_footprint_limit": drawn_figures(after, across),
                                       "seen_again_height_limit": drawn_figures(after, height)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 trials a class")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seen-s", type=float, default=3.0, help="seconds seen before it leaves the view")
    parser.add_argument("--unseen-s", type=float, default=11.0, help="seconds out of view")
    parser.add_argument("--sigma", type=float, default=0.04, help="m: the noise of each registered position")
    args = parser.parse_args()
    trials = 20 if args.quick else args.trials
    results = {}
    for name, pure in (("pure_straight", True), ("mixed_straight", False)):
        with straight_state(pure):
            results[name] = measure(trials, args.seen_s, args.unseen_s, args.sigma)
    write("motion", {"trials": trials, "seen_s": args.seen_s, "unseen_s": args.unseen_s, "sigma_m": args.sigma,
                     "fps": FPS, "movers": MOVERS, "pure_straight_default": motion.PURE_STRAIGHT, **results})


if __name__ == "__main__":
    main()
