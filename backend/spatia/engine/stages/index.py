"""Index: the round's new frames enter the view index, as the updated memory sees them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.memory import SpatialMemory
from spatia.engine.view_index import ViewIndex, visible_ids


def index_grid(start: int, end: int, fps: float, index_fps: float) -> list[int]:
    """The frames of [start, end) that enter the view index: a fixed grid at `index_fps`."""
    step = max(1, int(round(fps / index_fps)))
    return list(range(start + (-start) % step, end, step))


def index_round(index: ViewIndex, memory: SpatialMemory, cameras: Cameras, frames: list[int], stats, *,
                reset: bool = False, rule: str = "render", device=None) -> tuple[ViewIndex, dict]:
    """A copy of `index` with `frames` (video frame indices into `cameras`) added as `memory` sees
    them (`rule`: which points a frame sees, see view_index.visible_ids), and the arrays that
    record the change (saved with the round, replayed on open). The merges of the update
    (`stats`) are applied first; `reset`: the memory was rebuilt with new ids, so `frames` must
    list every indexed frame."""
    index = index.copy()
    merges = stats.merges if stats is not None and stats.merges is not None else None
    merged = (merges.ids.cpu().numpy(), merges.into.cpu().numpy()) if merges is not None else ((), ())
    sets = visible_ids(memory.xyz, memory.point_id, cameras[frames], device=device, rule=rule) if frames else []
    if reset:
        index.clear()
        merged = ((), ())
    index.remap(*merged)
    index.add(frames, sets)
    return index, index.batch_arrays(frames, sets, *merged, reset=reset)



def load_index(saved: list[Path], grid: list[int], index_missing) -> ViewIndex:
    """The view index replayed from the rounds' saved arrays (`saved`, in round order; a missing
    file is skipped); the frames of `grid` that have no record (a world made before the index
    existed) are indexed by `index_missing(frames)` -> their visible id sets."""
    views = ViewIndex()
    for path in saved:
        if path.exists():
            with np.load(path) as arrays:
                views.replay(arrays)
    missing = [f for f in grid if f not in views]
    if missing:
        views.add(missing, index_missing(missing))
    return views
