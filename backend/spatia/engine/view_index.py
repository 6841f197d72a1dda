"""Which past frames saw which memory points: the view index that retrieval reads.

When a frame enters the memory, the ids of the points it sees front-most (one pixel per
point, see `visible_ids`) are recorded against it. Scoring past frames against a round's
targets then looks up the targets' own visible points, so its cost is the targets' visible
points times the frames kept per point, whatever the length of the video: each point keeps at
most `per_point` frames, the first half of them and the latest half (the first views of a
place are where a revisit should look; the latest are the freshest).

Pairs live in one sorted int64 array, key = point_id << 32 | frame, so a point's frames are
one contiguous run found by binary search, and adding a round is a merge of sorted runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from spatia.cameras import Cameras
from spatia.engine.render import render

FRAME_BITS = 32
FRAME_MASK = (1 << FRAME_BITS) - 1
DEFAULT_PER_POINT = 16


class ViewIndexError(ValueError):
    """The view index got malformed input; the message names the argument and the problem."""


def visible_ids(xyz, point_ids, cameras: Cameras, *, near: float = 1e-2, device=None) -> list[np.ndarray]:
    """Sorted ids of the points each camera sees front-most, one pixel per point (the z-buffer
    of the points' own pixels, no splats), at the cameras' full resolution."""
    ids = torch.as_tensor(point_ids).reshape(-1).cpu().numpy().astype(np.int64)
    if len(ids) != len(xyz):
        raise ViewIndexError(f"point_ids must hold one id per point ({len(xyz)}), got {len(ids)}")
    if len(cameras) == 0:
        return []
    if len(ids) == 0:
        return [np.zeros(0, np.int64) for _ in range(len(cameras))]
    out = []
    step = max(1, 8_000_000 // max(1, cameras.width * cameras.height))
    for start in range(0, len(cameras), step):
        winners = render(xyz, None, cameras[start:start + step], point_size=0.0, depth_only=True, return_index=True,
                         near=near, device=device).index
        for frame in winners.reshape(len(winners), -1):
            seen = torch.unique(frame[frame >= 0]).cpu().numpy()
            out.append(np.sort(ids[seen]))
    return out


@dataclass
class ViewIndex:
    """Sorted (point_id, frame) pairs, at most `per_point` frames per point."""

    per_point: int = DEFAULT_PER_POINT
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    frame_sizes: dict[int, int] = field(default_factory=dict)  # frame -> how many points it saw

    def __post_init__(self):
        if self.per_point < 2:
            raise ViewIndexError(f"per_point must be at least 2, got {self.per_point}")

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def frames(self) -> np.ndarray:
        return np.array(sorted(self.frame_sizes), dtype=np.int64)

    def add(self, frames, id_sets) -> None:
        """Record that each frame in `frames` saw the point ids in the matching entry of `id_sets`."""
        frames = [int(f) for f in frames]
        if len(frames) != len(id_sets):
            raise ViewIndexError(f"{len(frames)} frames but {len(id_sets)} id sets")
        parts = [self.keys]
        for frame, ids in zip(frames, id_sets):
            if not 0 <= frame <= FRAME_MASK:
                raise ViewIndexError(f"frame {frame} is out of range")
            ids = np.unique(np.asarray(ids, dtype=np.int64))
            if len(ids) and (ids[0] < 0 or ids[-1] >= 1 << (63 - FRAME_BITS)):
                raise ViewIndexError("point ids must be in [0, 2**31)")
            self.frame_sizes[frame] = len(ids)
            parts.append((ids << FRAME_BITS) | frame)
        self._store(np.concatenate(parts))

    def remap(self, ids, into) -> None:
        """Points `ids` merged into `into`: their frames now count for the surviving points."""
        ids = np.asarray(ids, dtype=np.int64)
        into = np.asarray(into, dtype=np.int64)
        if ids.shape != into.shape:
            raise ViewIndexError(f"ids and into must match, got {ids.shape} and {into.shape}")
        if len(ids) == 0 or len(self.keys) == 0:
            return
        order = np.argsort(ids)
        ids, into = ids[order], into[order]
        owner = self.keys >> FRAME_BITS
        pos = np.searchsorted(ids, owner).clip(max=len(ids) - 1)
        hit = ids[pos] == owner
        if hit.any():
            keys = self.keys.copy()
            keys[hit] = (into[pos[hit]] << FRAME_BITS) | (keys[hit] & FRAME_MASK)
            self._store(keys)

    def retain(self, alive_ids) -> None:
        """Forget the pairs of points that no longer exist (carved, deleted)."""
        alive = np.sort(np.asarray(alive_ids, dtype=np.int64))
        if len(self.keys):
            self.keys = self.keys[np.isin(self.keys >> FRAME_BITS, alive, assume_unique=False)]

    def _store(self, keys: np.ndarray) -> None:
        """Sort, drop duplicate pairs and keep each point's first and latest per_point / 2 frames."""
        keys = np.unique(keys)  # sorted by point, then frame
        if len(keys) == 0:
            self.keys = keys
            return
        owner = keys >> FRAME_BITS
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        counts = np.diff(np.r_[starts, len(keys)])
        if counts.max() > self.per_point:
            rank = np.arange(len(keys)) - np.repeat(starts, counts)
            from_end = np.repeat(counts, counts) - rank
            first, latest = self.per_point - self.per_point // 2, self.per_point // 2
            keys = keys[(rank < first) | (from_end <= latest)]
        self.keys = keys

    def shared_counts(self, target_sets, candidates) -> np.ndarray:
        """[T, C] how many points target set t (sorted ids) shares with candidate frame c, as far
        as the index remembers (exactly, while no point was seen by more than per_point frames)."""
        candidates = np.asarray(candidates, dtype=np.int64)
        counts = np.zeros((len(target_sets), len(candidates)), dtype=np.int64)
        if len(self.keys) == 0 or len(candidates) == 0:
            return counts
        order = np.argsort(candidates)
        sorted_candidates = candidates[order]
        for t, ids in enumerate(target_sets):
            ids = np.asarray(ids, dtype=np.int64)
            lo = np.searchsorted(self.keys, ids << FRAME_BITS)
            hi = np.searchsorted(self.keys, (ids + 1) << FRAME_BITS)
            lengths = hi - lo
            total = int(lengths.sum())
            if total == 0:
                continue
            # positions lo[i], lo[i]+1, ..., hi[i]-1 for every id, without a Python loop
            offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            frames = self.keys[np.repeat(lo, lengths) + offsets] & FRAME_MASK
            column = np.searchsorted(sorted_candidates, frames).clip(max=len(candidates) - 1)
            known = sorted_candidates[column] == frames
            counts[t, order] = np.bincount(column[known], minlength=len(candidates))[: len(candidates)]
        return counts

    # --- persistence: one file per batch of frames, replayed in order --------------------
    def batch_arrays(self, frames, id_sets, merged_ids=(), merged_into=(), *, reset: bool = False) -> dict[str, np.ndarray]:
        """What `add` (after `remap`, after clearing the index when `reset`) recorded, as arrays
        for a file that `replay` reads back."""
        id_sets = [np.unique(np.asarray(ids, dtype=np.int64)) for ids in id_sets]
        return {
            "frames": np.asarray(frames, dtype=np.int64),
            "offsets": np.cumsum([0] + [len(ids) for ids in id_sets]).astype(np.int64),
            # delta-coded: sorted ids become small numbers that compress well
            "ids": np.concatenate([np.diff(ids, prepend=0) for ids in id_sets]) if id_sets else np.zeros(0, np.int64),
            "merged_ids": np.asarray(merged_ids, dtype=np.int64),
            "merged_into": np.asarray(merged_into, dtype=np.int64),
            "reset": np.asarray(reset),
        }

    def clear(self) -> None:
        self.keys = np.zeros(0, np.int64)
        self.frame_sizes = {}

    def replay(self, arrays) -> None:
        """Apply one batch written by `batch_arrays`: its merges, then its frames."""
        if "reset" in arrays and bool(arrays["reset"]):
            self.clear()
        self.remap(arrays["merged_ids"], arrays["merged_into"])
        offsets, deltas = arrays["offsets"], arrays["ids"]
        sets = [np.cumsum(deltas[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)]
        self.add(arrays["frames"], sets)


__all__ = ["ViewIndex", "ViewIndexError", "visible_ids"]
