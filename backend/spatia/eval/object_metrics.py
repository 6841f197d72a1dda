"""Object-memory metrics: how well the world keeps a moving object that went out of view.

For each moving object of the ground truth (pure numpy; the world's records and conditioning
come in as plain data, see `measure_objects`):

- **re-entry frames**: the object is *visible* in a frame when its true instance mask covers
  at least VISIBLE_FRACTION of the image (and VISIBLE_MIN_PIXELS pixels). After it has been
  visible, then not visible for at least MIN_GAP_FRAMES consecutive frames, the first
  REENTRY_WINDOW frames from the one where it is visible again (up to the next frame where it is
  not) are its re-entry frames. Every such event counts.
- **position error** (metres) at re-entry: the track's anchor c (the centroid of its points in
  its own frame) carried by the predicted pose, T_pred(f) c, against the same point carried by
  the truth, T_true(f) T_true(f0)^-1 T_obs(f0) c, with f0 the track's first observed keyframe:
  the constant offset between the track's origin and the Blender object's origin cancels, so
  a perfect prediction scores 0 whatever the track chose as its origin. Poses turn about the
  world's up axis.
- **mask IoU** at re-entry: the pixels the conditioning gave to the track (`object_ids == id`)
  against the true instance mask.
- **object PSNR** at re-entry: the conditioning's colour against the true frame over the true
  mask (what the generator was shown where the object really is), pooled over the re-entry
  frames' pixels.
- **identity changes**: how often the world object id given to the truth object's instance
  changes from one clip to the next it appears in; **swaps**: how often, between two
  consecutive appearances, an object takes the id another truth object held before
  (counted once per pair and clip, so two objects that exchange ids make one swap).

The track that stands for a truth object at frame f is the world object its instance was last
assigned to before the clip that generated f (falling back to that clip's own assignment).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from spatia.engine import metrics

VISIBLE_FRACTION = 0.001  # of the image's pixels
VISIBLE_MIN_PIXELS = 4
MIN_GAP_FRAMES = 3
REENTRY_WINDOW = 4
UP = (0.0, 0.0, 1.0)  # a Blender world's up axis


# --- poses ------------------------------------------------------------------------------------
def rotation_about(up, heading) -> np.ndarray:
    """Rotation matrices [..., 3, 3] turning by `heading` radians (right-handed) about `up`."""
    u = np.asarray(up, dtype=np.float64)
    u = u / np.linalg.norm(u)
    a = np.asarray(heading, dtype=np.float64)[..., None, None]
    k = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    return np.cos(a) * np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * np.outer(u, u)


def pose_matrix(position, heading, up=UP) -> np.ndarray:
    """4x4 object-to-world transforms [..., 4, 4] of poses (position [..., 3], heading [...])."""
    position = np.asarray(position, dtype=np.float64)
    r = rotation_about(up, heading)
    out = np.zeros(r.shape[:-2] + (4, 4))
    out[..., :3, :3] = r
    out[..., :3, 3] = position
    out[..., 3, 3] = 1.0
    return out


def _apply(t: np.ndarray, point: np.ndarray) -> np.ndarray:
    return t[..., :3, :3] @ point + t[..., :3, 3]


def true_anchor(truth_pose: np.ndarray, f0: int, observed_pose: np.ndarray, anchor) -> np.ndarray:
    """Where the track's anchor truly is at every frame [F,3]: T_true(f) T_true(f0)^-1 T_obs(f0) c.
    truth_pose [F,4,4], observed_pose [4,4] (the track's pose at its first keyframe f0)."""
    c = np.asarray(anchor, dtype=np.float64)
    body = np.linalg.inv(truth_pose[f0]) @ observed_pose  # the track's frame in the object's frame
    point = _apply(body, c)
    return _apply(truth_pose, point)


def position_error(predicted_pose: np.ndarray, truth_pose: np.ndarray, f0: int, observed_pose: np.ndarray,
                   anchor, frames) -> np.ndarray:
    """Distance (m) between T_pred(f) c and the true anchor at `frames`; predicted_pose [N,4,4]
    holds the predicted pose of each of `frames`."""
    frames = np.asarray(frames, dtype=np.int64)
    truth = true_anchor(truth_pose, f0, observed_pose, anchor)[frames]
    pred = _apply(np.asarray(predicted_pose), np.asarray(anchor, dtype=np.float64))
    return np.linalg.norm(pred - truth, axis=-1)


# --- visibility and re-entry ------------------------------------------------------------------
def visible_frames(mask: np.ndarray) -> np.ndarray:
    """bool [F]: frames where the boolean mask [F,H,W] covers enough of the image to count."""
    mask = np.asarray(mask, dtype=bool)
    area = mask.reshape(len(mask), -1).sum(axis=1)
    needed = max(VISIBLE_MIN_PIXELS, math.ceil(VISIBLE_FRACTION * mask[0].size)) if len(mask) else 1
    return area >= needed


def reentry_events(visible, *, min_gap: int = MIN_GAP_FRAMES, window: int = REENTRY_WINDOW) -> list[list[int]]:
    """The re-entry frames of each return into view (see the module doc), in order."""
    visible = np.asarray(visible, dtype=bool)
    events, seen, gap = [], False, 0
    for f, v in enumerate(visible):
        if not v:
            gap += 1
            continue
        if seen and gap >= min_gap:
            run = []
            for g in range(f, min(f + window, len(visible))):
                if not visible[g]:
                    break
                run.append(g)
            events.append(run)
        seen, gap = True, 0
    return events


# --- masks ------------------------------------------------------------------------------------
def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks; nan when both are empty."""
    predicted, truth = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    union = np.logical_or(predicted, truth).sum()
    return float("nan") if union == 0 else float(np.logical_and(predicted, truth).sum() / union)


# --- identities -------------------------------------------------------------------------------
def id_changes(assigned: Sequence) -> int:
    """How often the id in a per-clip sequence changes; None (not seen in that clip) is skipped."""
    ids = [a for a in assigned if a is not None]
    return sum(1 for a, b in zip(ids, ids[1:]) if a != b)


def identity_swaps(assignments: Sequence[Mapping]) -> int:
    """Swaps over clips: `assignments[r]` maps each truth object seen in clip r to the world id
    it was given. A swap is a pair of truth objects {A, B} where A, at a new appearance, takes
    the id B held at its last appearance (either way round, counted once per pair and clip)."""
    last: dict = {}
    swaps = 0
    for clip in assignments:
        pairs = set()
        for a, world_id in clip.items():
            if world_id is None:
                continue
            for b, held in last.items():
                if b != a and held == world_id and last.get(a) != world_id:
                    pairs.add(frozenset((a, b)))
        swaps += len(pairs)
        for a, world_id in clip.items():
            if world_id is not None:
                last[a] = world_id
    return swaps


# --- one run ----------------------------------------------------------------------------------
def _generating_round(records: Sequence[Mapping], frame: int) -> int | None:
    """The index in `records` of the round whose new frames include `frame`."""
    for i, r in enumerate(records):
        if r["start"] + r["overlap"] <= frame < r["end"]:
            return i
    return None


def _track_for(assignment: Sequence, r: int):
    earlier = [a for a in assignment[:r] if a is not None]
    return earlier[-1] if earlier else assignment[r]


def _first_observation(records: Sequence[Mapping], track_id) -> tuple[int, np.ndarray, float] | None:
    best = None
    for rec in records:
        for o in rec.get("objects") or []:
            obs = o.get("observed")
            if o.get("id") != track_id or not obs or not obs.get("frames"):
                continue
            k = int(np.argmin(obs["frames"]))
            f = int(obs["frames"][k])
            if best is None or f < best[0]:
                best = (f, np.asarray(obs["position"][k], dtype=np.float64), float(obs["heading"][k]))
    return best


def _predicted(record: Mapping, track_id, frame: int) -> tuple[np.ndarray, float] | None:
    for o in record.get("objects") or []:
        pred = o.get("predicted")
        if o.get("id") != track_id or not pred or frame not in pred.get("frames", []):
            continue
        k = list(pred["frames"]).index(frame)
        return np.asarray(pred["position"][k], dtype=np.float64), float(pred["heading"][k])
    return None


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def measure_objects(truth_rgb: np.ndarray, truth_instances: np.ndarray, truth_objects: Mapping,
                    records: Sequence[Mapping], renumberings: Mapping, conditioning: Callable,
                    anchors: Mapping | None = None, *, up=UP, object_memory: bool = True) -> dict:
    """Object metrics of one run of the world (see the module doc).

    truth_rgb uint8 [F,H,W,3], truth_instances int32 [F,H,W]; truth_objects {truth id: object
    with .label, .position [F,3], .heading [F]}; records: the rounds' round.json dicts in order
    (start, end, overlap, objects, instances); renumberings {round index: {truth id: clip id}}
    (the oracle's); conditioning(round index) -> an object with rgb [Fr,H,W,3] and object_ids
    [Fr,H,W] of that round's frames; anchors {world object id: c [3]} (default: the origin).
    With object_memory False there are no tracks: position errors and identities are None.
    Returns {"objects": {truth id: ...}, "swaps": n or None, "rule": text}.
    """
    anchors = anchors or {}
    n = len(truth_rgb)
    tracked = bool(object_memory)
    cached: dict[int, object] = {}

    def cond(r: int):
        if r not in cached:
            cached.clear()
            cached[r] = conditioning(r)
        return cached[r]

    assignments: list[dict] = []  # per round: truth id -> world id (None: seen, not assigned)
    for i, rec in enumerate(records):
        clip_ids = renumberings.get(rec.get("round", i), renumberings.get(i, {}))
        instances = {str(k): v for k, v in (rec.get("instances") or {}).items()}
        assignments.append({t: (None if instances.get(str(c)) is None else int(instances[str(c)]))
                            for t, c in clip_ids.items()})

    out = {}
    # The rounds' frames in order, so per-frame lookups go through one conditioning at a time.
    frame_round = [_generating_round(records, f) for f in range(n)]
    for tid, obj in truth_objects.items():
        tid = int(tid)
        true_mask = truth_instances == tid
        visible = visible_frames(true_mask)
        events = reentry_events(visible)
        reentry = sorted({f for e in events for f in e})
        assignment = [a.get(tid) for a in assignments]
        truth_pose = pose_matrix(obj.position, obj.heading, up)
        per_frame_error = np.full(n, np.nan)
        per_frame_iou = np.full(n, np.nan)
        per_frame_psnr = np.full(n, np.nan)
        track_at = {}
        shown_px, true_px = [], []  # the re-entry frames' object pixels, for one pooled PSNR
        for f in range(n):
            r = frame_round[f]
            if r is None:
                continue
            track = _track_for(assignment, r) if tracked else None
            track_at[f] = track
            rec = records[r]
            if track is not None:
                first = _first_observation(records, track)
                pred = _predicted(rec, track, f)
                if first is not None and pred is not None:
                    f0, p0, h0 = first
                    per_frame_error[f] = position_error(pose_matrix(pred[0], pred[1], up)[None], truth_pose, f0,
                                                        pose_matrix(p0, h0, up), anchors.get(track, np.zeros(3)),
                                                        [f])[0]
            if visible[f]:
                c = cond(r)
                local = f - rec["start"]
                shown = (c.object_ids[local] == track) if track is not None else np.zeros(true_mask[f].shape, bool)
                per_frame_iou[f] = mask_iou(shown, true_mask[f])
                per_frame_psnr[f] = metrics.psnr(c.rgb[local], truth_rgb[f], true_mask[f])
                if f in reentry:
                    shown_px.append(c.rgb[local][true_mask[f]])
                    true_px.append(truth_rgb[f][true_mask[f]])
        out[tid] = {
            "label": obj.label,
            "visible_frames": int(visible.sum()),
            "reentry_events": events,
            "reentry_frames": reentry,
            "tracks": sorted({t for t in (track_at.get(f) for f in reentry) if t is not None}),
            "assigned_ids": assignment,
            "id_changes": id_changes(assignment) if tracked else None,
            "position_error_m": _mean(per_frame_error[reentry]) if tracked else None,
            "position_error_first_m": _mean(per_frame_error[reentry[:1]]) if tracked else None,
            "mask_iou": _mean(per_frame_iou[reentry]),
            "object_psnr_db": metrics.psnr(np.concatenate(shown_px), np.concatenate(true_px)) if shown_px else None,
            "per_frame": {"position_error_m": per_frame_error.tolist(), "mask_iou": per_frame_iou.tolist(),
                          "object_psnr_db": per_frame_psnr.tolist(), "visible": visible.tolist()},
        }
    return {"objects": out, "swaps": identity_swaps(assignments) if tracked else None}


def ghost_pixels(truth_instances: np.ndarray, records: Sequence[Mapping], conditioning: Callable) -> dict:
    """Object pixels the conditioning drew where the truth has no moving object, over the new
    frames of every round: {"ghost_px", "drawn_px", "share" (None when nothing was drawn)}."""
    ghost = drawn = 0
    for r, rec in enumerate(records):
        frames = np.arange(rec["start"] + rec["overlap"], rec["end"])
        if not len(frames):
            continue
        c = conditioning(r)
        shown = np.asarray(c.object_ids)[frames - rec["start"]] > 0
        drawn += int(shown.sum())
        ghost += int((shown & (np.asarray(truth_instances)[frames] == 0)).sum())
    return {"ghost_px": ghost, "drawn_px": drawn, "share": ghost / drawn if drawn else None}


RULE = (f"Re-entry frames: an object is visible in a frame when its true instance mask covers at least "
        f"{VISIBLE_FRACTION:.1%} of the image (and {VISIBLE_MIN_PIXELS} pixels); after it has been visible, then "
        f"not visible for at least {MIN_GAP_FRAMES} consecutive frames, the first {REENTRY_WINDOW} frames from the one "
        "where it is visible again (up to the next frame where it is not) are re-entry frames.")
