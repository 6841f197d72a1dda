"""How many generation rounds a frame range takes, mirroring the backend's round plan.

The first round generates `first_round_frames` frames (121); every later round generates
`round_frames` (81) of which the first `overlap` (9) repeat the end of the previous clip.
A world that already holds `start_frame` frames continues with continuation rounds only.
"""

from __future__ import annotations

FIRST_ROUND_FRAMES = 121
ROUND_FRAMES = 81
OVERLAP = 9


class PlanError(ValueError):
    """The plan cannot be made; the message says why."""


def plan_spans(frame_count: int, *, first_round_frames: int = FIRST_ROUND_FRAMES, round_frames: int = ROUND_FRAMES,
               overlap: int = OVERLAP, start_frame: int = 0) -> list[tuple[int, int, int]]:
    """(start, end, overlap) of every round covering trajectory frames [start_frame, frame_count)."""
    if frame_count < 1:
        raise PlanError("the frame range is empty")
    if first_round_frames < 2 or round_frames < 2:
        raise PlanError("rounds must have at least 2 frames")
    if not 0 <= overlap < round_frames:
        raise PlanError(f"overlap must be in [0, {round_frames}), got {overlap}")
    if not 0 <= start_frame < frame_count:
        raise PlanError(f"nothing to generate: the world already has {start_frame} of {frame_count} frames")
    if start_frame == 0:
        spans = [(0, min(first_round_frames, frame_count), 0)]
    else:
        begin = max(start_frame - overlap, 0)
        spans = [(begin, min(begin + round_frames, frame_count), start_frame - begin)]
    while spans[-1][1] < frame_count:
        begin = spans[-1][1] - overlap
        spans.append((begin, min(begin + round_frames, frame_count), overlap))
    return spans


def round_count(frame_count: int, **kwargs) -> int:
    return len(plan_spans(frame_count, **kwargs))


def round_prompts(prompts: list[str], rounds: int) -> list[str]:
    """One prompt per round: a single prompt serves every round; otherwise there must be enough."""
    prompts = [p.strip() for p in prompts]
    if not prompts or any(not p for p in prompts):
        raise PlanError("every prompt must be a non-empty string")
    if len(prompts) == 1:
        return prompts * rounds
    if len(prompts) < rounds:
        raise PlanError(f"fewer prompts than rounds: {len(prompts)} prompts for {rounds} rounds; "
                        "give one prompt per round or a single prompt for all")
    return prompts[:rounds]


def prompts_needed(rounds: int, given: int) -> str:
    """What the plan still needs in prompts, in words ("" when `given` prompts will do): one
    prompt serves every round, or one per round."""
    if given == 1 or (given >= rounds and given > 0):
        return ""
    if given == 0:
        return "needs a prompt" if rounds == 1 else f"needs a prompt (one for all {rounds} rounds, or one per round)"
    return f"needs {rounds} prompts (one per round; {given} given) or a single prompt for all"
