"""How a long camera path is split into generation rounds, as in the paper.

The first round generates `first_round_frames` frames (121) starting from the first image;
every later round generates `round_frames` frames (81) of which the first `overlap` (9)
repeat the end of the previous clip, so it adds round_frames - overlap (72) new frames.

A round's `target` is its full length (121 for a first round, 81 after): the reference pads a
short last round to it by repeating the last camera and crops the extra frames afterwards,
because its model was trained on full rounds only (see `padded_indices`).
"""

from __future__ import annotations

from dataclasses import dataclass


class PlanError(ValueError):
    """The round plan cannot be made; the message says why."""


@dataclass(frozen=True)
class Round:
    index: int
    start: int  # first trajectory frame of the clip (inclusive)
    end: int  # one past the last trajectory frame
    overlap: int  # leading frames shared with the previous clip (0 in round 0)
    prompt: str
    target: int = 0  # the full round length (first_round_frames or round_frames); 0: the round's own length

    @property
    def frames(self) -> int:
        return self.end - self.start

    @property
    def padding(self) -> int:
        """Frames the reference appends to a short round (repeats of its last camera)."""
        return max(self.target - self.frames, 0)

    def padded_indices(self) -> list[int]:
        """Trajectory frame of each frame of the padded round: start..end-1, then end-1 repeated."""
        return list(range(self.start, self.end)) + [self.end - 1] * self.padding

    @property
    def new_start(self) -> int:
        """First frame this round adds to the video."""
        return self.start + self.overlap


def plan_rounds(
    frame_count: int,
    prompts: list[str],
    *,
    first_round_frames: int = 121,
    round_frames: int = 81,
    overlap: int = 9,
    start_frame: int = 0,
    repeat_last_prompt: bool = False,
) -> list[Round]:
    """Rounds covering trajectory frames [start_frame, frame_count).

    `start_frame` > 0 continues a video whose first `start_frame` frames exist: every round
    is then a continuation round. `prompts` holds one prompt per round, or one for all; with
    fewer, `repeat_last_prompt` gives the remaining rounds the last one (as the reference's
    script), else the plan is refused.
    """
    if frame_count < 1:
        raise PlanError("the trajectory has no frames")
    if first_round_frames < 2 or round_frames < 2:
        raise PlanError("rounds must have at least 2 frames")
    if not 0 <= overlap < round_frames:
        raise PlanError(f"overlap must be in [0, {round_frames}), got {overlap}")
    if not 0 <= start_frame < frame_count:
        raise PlanError(f"nothing to generate: the video already has {start_frame} of {frame_count} frames")
    spans = []
    if start_frame == 0:
        spans.append((0, min(first_round_frames, frame_count), 0, first_round_frames))
    else:
        begin = max(start_frame - overlap, 0)
        spans.append((begin, min(begin + round_frames, frame_count), start_frame - begin, round_frames))
    while spans[-1][1] < frame_count:
        begin = spans[-1][1] - overlap
        spans.append((begin, min(begin + round_frames, frame_count), overlap, round_frames))

    prompts = [p.strip() for p in prompts]
    if not prompts or any(not p for p in prompts):
        raise PlanError("every prompt must be a non-empty string")
    if len(prompts) == 1:
        prompts = prompts * len(spans)
    elif len(prompts) < len(spans):
        if not repeat_last_prompt:
            raise PlanError(
                f"fewer prompts than rounds: {len(prompts)} prompts for {len(spans)} rounds "
                f"({frame_count - start_frame} frames); give one prompt per round or a single prompt for all"
            )
        prompts = prompts + [prompts[-1]] * (len(spans) - len(prompts))
    return [Round(i, s, e, o, prompts[i], t) for i, (s, e, o, t) in enumerate(spans)]
