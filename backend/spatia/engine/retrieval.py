"""Reference-frame retrieval: which past frames see the same part of the memory as the new ones.

Every camera's visible set is the set of memory points that win the z-buffer; the overlap of
a target frame and a history frame is the size (or IoU) of the intersection of their visible
sets; a one-to-one (Hungarian) assignment of history frames to target frames picks up to K
reference frames. The most recent history frames are left out (the model gets them as
history anyway); candidates are sampled at 6 fps and targets at 2 fps.

Two ways to score, `scoring=`:
- "reference", Spatia's own, input for input (what spatia-5b was trained with): visible sets
  at full resolution by the authors' front-most test (`view_index.frontmost_mask`), overlap =
  the count of shared points rounded to bfloat16 as their bf16 matrix product rounds it (so
  counts above 256 tie in steps of 2, 4, ...), one Hungarian assignment of targets to
  candidates on the float32 matrix exactly as they call it (the same ties break the same way),
  the chosen frames ordered by their target (the order gives each reference its temporal slot
  in the model), the first K kept, pairs sharing nothing kept too: the model always gets as
  many references as targets (7 for a round of 81 frames, a short round padded first).
- "iou": IoU of visible sets, repeated assignments until K frames are chosen, best first.

`retrieve` renders every candidate (its cost grows with the history); `retrieve_indexed`
reads the candidates' visible sets from a ViewIndex written when each frame entered the
memory, so a round costs the same however long the video is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
from scipy.optimize import linear_sum_assignment

from spatia.cameras import Cameras
from spatia.engine.render import render
from spatia.engine.view_index import visible_ids

SCORES = ("iou", "shared")
SCORINGS = ("reference", "iou")


class RetrievalError(ValueError):
    """Retrieval got malformed input; the message names the argument and the problem."""


@dataclass
class RetrievalResult:
    """Chosen reference frames, best first, and the overlap matrices they were chosen from.

    indices: [K'] int64 chosen history frames (indices into the history cameras), K' <= k.
    scores: [K'] the overlap score (IoU or shared count, as asked) with the target each was assigned to.
    assigned_targets: [K'] int64 that target frame (index into the target cameras).
    shared: [T', C'] int64 number of visible points shared by sampled target t and candidate c.
    iou: [T', C'] float64 shared / size of the union of the two visible sets.
    target_indices: [T'] int64 target frames that label the rows.
    candidate_indices: [C'] int64 history frames that label the columns.
    """

    indices: np.ndarray
    scores: np.ndarray
    assigned_targets: np.ndarray
    shared: np.ndarray
    iou: np.ndarray
    target_indices: np.ndarray
    candidate_indices: np.ndarray


def sample_at_rate(times, fps: float) -> np.ndarray:
    """Indices of the frames nearest to the instants first_time + i / fps, in time order, without repeats."""
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or not np.isfinite(times).all():
        raise RetrievalError(f"frame times must be a finite 1-D array, got shape {list(times.shape)}")
    if not (np.isfinite(fps) and fps > 0):
        raise RetrievalError(f"sampling rate must be positive, got {fps}")
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    instants = ordered[0] + np.arange(int(np.floor((ordered[-1] - ordered[0]) * fps + 1e-9)) + 1) / fps
    after = np.searchsorted(ordered, instants)
    later = np.minimum(after, len(ordered) - 1)
    earlier = np.maximum(after - 1, 0)
    nearest = np.where(np.abs(ordered[later] - instants) < np.abs(ordered[earlier] - instants), later, earlier)
    return order[np.unique(nearest)]


def reduced_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The image size scaled down (never up) so its longer side is at most max_side."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def visible_points(xyz, cameras: Cameras, *, point_size: float, max_side: int = 256, near: float = 1e-2,
                   device: str | torch.device | None = None) -> scipy.sparse.csr_matrix:
    """Front-most visible points of each camera, as a 0/1 sparse matrix [F, N] (row f: points frame f sees).

    Rendered at a reduced size (longer side max_side pixels) with the renderer's z-buffer.
    """
    if max_side < 1:
        raise RetrievalError(f"max_side must be >= 1, got {max_side}")
    count = len(xyz)
    small = cameras.resized(*reduced_size(cameras.width, cameras.height, max_side))
    winners = render(xyz, None, small, point_size=point_size, device=device, depth_only=True, return_index=True,
                     near=near).index
    winners = winners.reshape(len(small), -1)
    # Sort each frame's winners; empty pixels (-1) sort first. Keep the first of each run of equal ids.
    winners = torch.sort(winners.to(torch.int32), dim=1).values  # N < 2^31; int32 sorts faster
    first = torch.ones_like(winners, dtype=torch.bool)
    first[:, 1:] = winners[:, 1:] != winners[:, :-1]
    first &= winners >= 0
    per_frame = first.sum(dim=1).cpu().numpy()
    columns = winners[first].cpu().numpy()
    indptr = np.concatenate([[0], np.cumsum(per_frame)])
    data = np.ones(len(columns), dtype=np.int64)
    return scipy.sparse.csr_matrix((data, columns, indptr), shape=(len(small), count))


def overlap_matrices(rows: scipy.sparse.csr_matrix, columns: scipy.sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Shared visible points [R, C] of every row frame with every column frame, and their IoU."""
    shared = np.asarray((rows @ columns.T).todense(), dtype=np.int64)
    union = rows.getnnz(axis=1)[:, None] + columns.getnnz(axis=1)[None, :] - shared
    iou = np.divide(shared, union, out=np.zeros(shared.shape), where=union > 0)
    return shared, iou


def assign(score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to k distinct columns for the rows of `score` [R, C], by rounds of Hungarian assignment.

    Each round matches rows to the columns not chosen yet, one-to-one, maximising the total
    score, and keeps the best-scoring pairs; zero-score pairs are never kept. Returns the
    chosen columns and their rows, best first.
    """
    chosen_columns: list[int] = []
    chosen_rows: list[int] = []
    available = np.ones(score.shape[1], dtype=bool)
    while len(chosen_columns) < k and available.any() and score.shape[0] > 0:
        open_columns = np.flatnonzero(available)
        rows, cols = linear_sum_assignment(score[:, open_columns], maximize=True)
        cols = open_columns[cols]
        pair_scores = score[rows, cols]
        keep = np.argsort(-pair_scores, kind="stable")
        keep = keep[pair_scores[keep] > 0][: k - len(chosen_columns)]
        if len(keep) == 0:
            break
        chosen_columns.extend(cols[keep].tolist())
        chosen_rows.extend(rows[keep].tolist())
        available[cols[keep]] = False
    return np.asarray(chosen_columns, dtype=np.int64), np.asarray(chosen_rows, dtype=np.int64)


def bf16_counts(shared) -> np.ndarray:
    """Shared-point counts as the reference's bfloat16 matrix product returns them (fp32 sums of
    ones, exact, rounded to bfloat16, round-half-to-even), as float32."""
    counts = torch.as_tensor(np.asarray(shared, dtype=np.float32))
    return counts.to(torch.bfloat16).to(torch.float32).numpy()


def padded_targets(cameras: Cameras, padding: int) -> Cameras:
    """A short round's cameras padded with its last camera to the full round, as the reference
    pads them before sampling its retrieval targets."""
    if padding <= 0:
        return cameras
    return cameras[np.concatenate([np.arange(len(cameras)), np.full(padding, len(cameras) - 1)]).astype(np.int64)]


def select(shared: np.ndarray, target_sizes, candidate_sizes, k: int, scoring: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chosen columns, their rows and scores from shared counts [T, C] and the sizes of the
    visible sets, as `scoring` says (see the module docstring)."""
    if scoring not in SCORINGS:
        raise RetrievalError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    shared = np.asarray(shared, dtype=np.int64)
    if shared.size == 0 or k == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    if scoring == "reference":
        score = bf16_counts(shared)
        rows, columns = linear_sum_assignment(-score)  # rows come back in target order
        rows, columns = rows[:k], columns[:k]
        return columns.astype(np.int64), rows.astype(np.int64), score[rows, columns].astype(np.float64)
    union = np.asarray(target_sizes)[:, None] + np.asarray(candidate_sizes)[None, :] - shared
    iou = np.divide(shared, union, out=np.zeros(shared.shape), where=union > 0)
    columns, rows = assign(iou, k)
    return columns, rows, iou[rows, columns]


def _frame_times(times, count: int, fps: float, name: str) -> np.ndarray:
    if times is None:
        return np.arange(count) / fps
    times = np.asarray(times, dtype=np.float64)
    if times.shape != (count,):
        raise RetrievalError(f"{name} must have one time per camera ({count}), got shape {list(times.shape)}")
    return times


def retrieve(xyz, history_cameras: Cameras, target_cameras: Cameras, *, k: int = 7, exclude_recent: int = 9,
             point_size: float = 0.0, frame_fps: float = 24.0, history_fps: float = 6.0, target_fps: float = 2.0,
             history_times=None, target_times=None, score: str = "iou", max_side: int = 256, near: float = 1e-2,
             device: str | torch.device | None = None, scoring: str | None = None, point_ids=None) -> RetrievalResult:
    """Choose up to k history frames that see what the target cameras will see.

    xyz: [N,3] memory points; point_size: their spacing (voxel size), for splatting.
    history_times / target_times: seconds per camera; by default frame i is at i / frame_fps.
    The exclude_recent latest history frames are never chosen; the rest are sampled at
    history_fps, the targets at target_fps. score: "iou" or "shared" (count of shared points),
    with visible sets of splats at max_side pixels. scoring="reference" instead scores as Spatia
    does (see the module docstring; point_ids, default 0..N-1, name the points).
    """
    if scoring is not None and scoring not in SCORINGS:
        raise RetrievalError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    if score not in SCORES:
        raise RetrievalError(f"score must be one of {SCORES}, got {score!r}")
    if k < 0 or exclude_recent < 0:
        raise RetrievalError(f"k and exclude_recent must be >= 0, got k={k}, exclude_recent={exclude_recent}")
    if not (np.isfinite(frame_fps) and frame_fps > 0):
        raise RetrievalError(f"frame_fps must be positive, got {frame_fps}")
    history_times = _frame_times(history_times, len(history_cameras), frame_fps, "history_times")
    target_times = _frame_times(target_times, len(target_cameras), frame_fps, "target_times")

    by_time = np.argsort(history_times, kind="stable")
    older = by_time[: max(len(by_time) - exclude_recent, 0)]
    candidates = older[sample_at_rate(history_times[older], history_fps)]
    candidates.sort()
    targets = sample_at_rate(target_times, target_fps)
    empty = np.zeros(0, dtype=np.int64)
    if len(candidates) == 0 or len(targets) == 0 or k == 0:
        shape = (len(targets), len(candidates))
        return RetrievalResult(empty, np.zeros(0), empty, np.zeros(shape, np.int64), np.zeros(shape), targets, candidates)

    if scoring == "reference":
        ids = np.arange(len(xyz)) if point_ids is None else point_ids
        target_sets = visible_ids(xyz, ids, target_cameras[targets], device=device, rule="reference")
        candidate_sets = visible_ids(xyz, ids, history_cameras[candidates], device=device, rule="reference")
        shared = np.array([[len(np.intersect1d(t, c, assume_unique=True)) for c in candidate_sets] for t in target_sets],
                          dtype=np.int64).reshape(len(targets), len(candidates))
        sizes_t, sizes_c = [len(t) for t in target_sets], [len(c) for c in candidate_sets]
        columns, rows, scores = select(shared, sizes_t, sizes_c, k, "reference")
        union = np.asarray(sizes_t)[:, None] + np.asarray(sizes_c)[None, :] - shared
        iou = np.divide(shared, union, out=np.zeros(shared.shape), where=union > 0)
        return RetrievalResult(candidates[columns], scores, targets[rows], shared, iou, targets, candidates)

    visibility = dict(point_size=point_size, max_side=max_side, near=near, device=device)
    target_sets = visible_points(xyz, target_cameras[targets], **visibility)
    candidate_sets = visible_points(xyz, history_cameras[candidates], **visibility)
    shared, iou = overlap_matrices(target_sets, candidate_sets)
    matrix = iou if score == "iou" else shared.astype(np.float64)
    columns, rows = assign(matrix, k)
    return RetrievalResult(
        indices=candidates[columns],
        scores=matrix[rows, columns],
        assigned_targets=targets[rows],
        shared=shared,
        iou=iou,
        target_indices=targets,
        candidate_indices=candidates,
    )


def retrieve_from_memory(memory, history_cameras: Cameras, target_cameras: Cameras, **kwargs) -> RetrievalResult:
    """retrieve() for any object with `.xyz` and `.voxel_size` (e.g. a spatial memory)."""
    kwargs.setdefault("point_size", float(memory.voxel_size))
    if hasattr(memory, "point_id"):
        kwargs.setdefault("point_ids", memory.point_id)
    return retrieve(memory.xyz, history_cameras, target_cameras, **kwargs)


def retrieve_indexed(index, xyz, point_ids, target_cameras: Cameras, candidates, *, k: int = 7,
                     scoring: str = "reference", target_fps: float = 2.0, frame_fps: float = 24.0,
                     target_times=None, near: float = 1e-2, device: str | torch.device | None = None) -> RetrievalResult:
    """Choose up to k of the past frames `candidates` (frames the ViewIndex `index` holds) for
    the target cameras, reading the candidates' visible sets from the index: the work is
    rendering the targets (sampled at target_fps) and intersecting their points with each
    candidate's. With scoring="reference" the targets' sets follow the authors' front-most test
    (index the candidates with `visible_ids(..., rule="reference")` too); pad a short round's
    cameras first (`padded_targets`) as the reference does."""
    if k < 0:
        raise RetrievalError(f"k must be >= 0, got {k}")
    candidates = np.asarray(sorted(int(c) for c in candidates if int(c) in index), dtype=np.int64)
    targets = sample_at_rate(_frame_times(target_times, len(target_cameras), frame_fps, "target_times"), target_fps)
    empty = np.zeros(0, dtype=np.int64)
    if len(candidates) == 0 or len(targets) == 0 or k == 0:
        shape = (len(targets), len(candidates))
        return RetrievalResult(empty, np.zeros(0), empty, np.zeros(shape, np.int64), np.zeros(shape), targets, candidates)
    rule = "reference" if scoring == "reference" else "render"
    target_sets = visible_ids(xyz, point_ids, target_cameras[targets], near=near, device=device, rule=rule)
    shared = index.shared_counts(target_sets, candidates)
    sizes_t = np.array([len(t) for t in target_sets])
    sizes_c = np.array([index.size(c) for c in candidates])
    columns, rows, scores = select(shared, sizes_t, sizes_c, k, scoring)
    union = sizes_t[:, None] + sizes_c[None, :] - shared
    iou = np.divide(shared, union, out=np.zeros(shared.shape), where=union > 0)
    return RetrievalResult(candidates[columns], scores, targets[rows], shared, iou, targets, candidates)
