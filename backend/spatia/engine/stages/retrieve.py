"""Retrieve: the past frames that saw the same part of the memory as the round's cameras."""

from __future__ import annotations

from dataclasses import dataclass, field

from spatia.cameras import Cameras
from spatia.engine.memory import SpatialMemory
from spatia.engine.retrieval import padded_targets, retrieve_indexed
from spatia.engine.view_index import ViewIndex


@dataclass(frozen=True)
class Retrieved:
    """Past video frame indices chosen as references (in the order the generator takes them),
    their overlap scores, and the scoring used."""

    indices: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    scoring: str = "iou"


def retrieve(index: ViewIndex | None, memory: SpatialMemory, cameras: Cameras, before: int, *, k: int,
             scoring: str, fps: float, padding: int = 0, device=None) -> Retrieved:
    """Up to `k` indexed frames before video frame `before` (never the history frames) scored
    against `cameras` (a short round's padded with `padding` repeats of its last camera, as the
    model that takes the padding was trained); nothing when there is no past or no reference is
    asked for."""
    if index is None or k <= 0:
        return Retrieved(scoring=scoring)
    index.retain(memory.point_id.cpu().numpy())  # points deleted since (edits, carving)
    candidates = index.frames[index.frames < before]
    found = retrieve_indexed(index, memory.xyz, memory.point_id, padded_targets(cameras, padding), candidates, k=k,
                             scoring=scoring, frame_fps=fps, device=device)
    return Retrieved([int(i) for i in found.indices], [float(s) for s in found.scores], scoring)
