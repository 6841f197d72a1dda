"""How a long camera path is split into generation rounds, as in the paper.

The first round generates `first_round_frames` frames (121) starting from the first image;
every later round generates `round_frames` frames (81) of which the first `overlap` (9)
repeat the end of the previous clip, so it adds round_frames - overlap (72) new frames.
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

    @property
    def frames(self) -> int:
        return self.end - self.start

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
) -> list[Round]:
    """Rounds covering trajectory frames [start_frame, frame_count).

    `start_frame` > 0 continues a video whose first `start_frame` frames exist: every round
    is then a continuation round. `prompts` holds one prompt per round, or one for all.
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
        spans.append((0, min(first_round_frames, frame_count), 0))
    else:
        begin = max(start_frame - overlap, 0)
        spans.append((begin, min(begin + round_frames, frame_count), start_frame - begin))
    while spans[-1][1] < frame_count:
        begin = spans[-1][1] - overlap
        spans.append((begin, min(begin + round_frames, frame_count), overlap))

    prompts = [p.strip() for p in prompts]
    if not prompts or any(not p for p in prompts):
        raise PlanError("every prompt must be a non-empty string")
    if len(prompts) == 1:
        prompts = prompts * len(spans)
    elif len(prompts) < len(spans):
        raise PlanError(
            f"fewer prompts than rounds: {len(prompts)} prompts for {len(spans)} rounds "
            f"({frame_count - start_frame} frames); give one prompt per round or a single prompt for all"
        )
    return [Round(i, s, e, o, prompts[i]) for i, (s, e, o) in enumerate(spans)]
