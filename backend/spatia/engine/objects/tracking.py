"""One round of object memory, above the pure parts: the artist's directions applied, every
object's poses predicted over the round, and what the round's keyframes teach the objects: the
instances seen (association, registration, motion updates) and the places seen empty (negative
evidence), and where each object stands in its lifecycle (docs/objects.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from spatia.cameras import Cameras

from .associate import MIN_NEW_POINTS, absorb, associate, new_track
from .model import ObjectSet, ObjectTrack, rotation
from .motion import CV, STOPPED, M, MotionState, PosePath, initial_state, measure_sigma, plane_axes, predict, size_limit
from .observe import Observation

# --- negative evidence and the lifecycle -----------------------------------------------------------
NEGATIVE_MARGIN = 0.5  # m: a pixel sees past an object's place when its depth is this much beyond it
FREE_SHARE = 0.6  # this share of the place's pixels seen past (and no instance there): the place is empty
NEGATIVE_SAMPLES = 200  # object points projected per check
MISS_FACTOR = 0.05  # a hypothesis whose place was seen empty keeps this share of its weight
LOST_EVIDENCE = 0.25  # below this belief (the share not contradicted) an object is lost ...
LOST_RATIO = 3.0  # ... and when its uncertainty passes this many times a tenth of its size (motion.size_limit)
RETIRE_SECONDS = 60.0  # unseen this long: retired (kept for re-identification, never predicted)


class ObjectDirectionError(ValueError):
    """A direction names an object the world does not have, or a copy's id is taken."""


@dataclass(frozen=True)
class Direction:
    """The artist's say over one object: a path (video frame indices, positions [K,3], headings
    [K]; empty: the motion model), the switches, and for a copy the object it copies."""

    id: int
    path_frames: tuple[int, ...] = ()
    path_position: tuple[tuple[float, float, float], ...] = ()
    path_heading: tuple[float, ...] = ()
    condition: bool = True
    reference: bool = True
    copy_of: int | None = None

    @classmethod
    def keyed(cls, object_id: int, keys, *, frame_offset: int = 0, **switches) -> "Direction":
        """From keys with `frame`, `position`, `heading` (a shot's or a query's), frames shifted
        by `frame_offset` into video frames."""
        return cls(id=object_id, path_frames=tuple(k.frame - frame_offset for k in keys),
                   path_position=tuple(tuple(k.position) for k in keys), path_heading=tuple(k.heading for k in keys),
                   **switches)

    def path(self):
        if not self.path_frames:
            return None
        return (np.array(self.path_frames, np.int64), np.array(self.path_position, np.float64).reshape(-1, 3),
                np.array(self.path_heading, np.float64))


def apply_directions(objects: ObjectSet, directions, forget=()) -> ObjectSet:
    """Forgotten objects removed; copies made; the switches set. Raises ObjectDirectionError for
    an unknown id (nothing is changed then)."""
    known = set(objects.ids())
    unknown = sorted({int(i) for i in forget} - known)
    if unknown:
        raise ObjectDirectionError(f"cannot forget objects {unknown}: the world remembers {sorted(known) or 'none'}")
    for d in directions:
        if d.copy_of is None and d.id not in known:
            raise ObjectDirectionError(f"object {d.id} is not remembered by this world (it remembers {sorted(known) or 'none'})")
        if d.copy_of is not None and d.copy_of not in known:
            raise ObjectDirectionError(f"object {d.id} copies object {d.copy_of}, which the world does not remember")
        if d.copy_of is not None and d.id in known:
            raise ObjectDirectionError(f"object {d.id} is a copy but the id is taken; give it an id above {max(known)}")
    before = objects  # a copy may be of an object forgotten now (duplicate, then delete the original)
    objects = objects.without(forget) if forget else objects
    tracks = []
    for d in directions:
        source = before.get(d.copy_of if d.copy_of is not None else d.id)
        track = replace(source, id=d.id, condition=d.condition, reference=d.reference)
        if d.copy_of is not None:  # the copy starts where its path does, its own motion from there
            frames, position, heading = d.path()
            track = replace(track, key_frame=frames[:1], key_position=position[:1], key_heading=heading[:1],
                            seen=np.zeros((0, 2), np.int64), motion=None, status="confirmed")
        tracks.append(track)
    return objects.replaced(tracks)


def predict_all(objects: ObjectSet, frames, fps: float, *, directions=(), obstacles=None) -> dict[int, PosePath]:
    """Every object's poses over `frames`: its direction's path first, else its motion state
    propagated (a retired object is held where it was last seen and never drawn)."""
    by_id = {d.id: d for d in directions}
    out = {}
    frames = np.asarray(frames, np.int64)
    for t in objects.objects:
        path = by_id[t.id].path() if t.id in by_id else None
        if t.status == "retired" and path is None:
            position, heading = np.tile(t.key_position[-1], (len(frames), 1)), np.full(len(frames), t.key_heading[-1])
            out[t.id] = PosePath(frames, position, heading, "retired", np.full(len(frames), RETIRED_SIGMA),
                                 np.zeros(len(frames), bool))
            continue
        out[t.id] = predict(t, frames, fps, objects.up, path=path, obstacles=obstacles)
    return out


RETIRED_SIGMA = 999.0


@dataclass(frozen=True, eq=False)
class KeyViews:
    """The round's keyframes as the update saw them: cameras [K], depth float [K,H,W] (0: none),
    instances int [K,H,W] (0: static), frames int [K] (video indices)."""

    cameras: Cameras
    depth: np.ndarray
    instances: np.ndarray
    frames: np.ndarray


def empty_places(track: ObjectTrack, position: np.ndarray, heading: np.ndarray, views: KeyViews, up) -> np.ndarray:
    """bool [K,H]: whether keyframe k saw hypothesis h's place (position [K,H,3], heading [K,H])
    empty: most of the object's points there fall in the image, in front of the camera, where the
    keyframe's depth lies NEGATIVE_MARGIN beyond them and no instance is. A place hidden behind
    something nearer, or out of view, says nothing."""
    k_count, h_count = position.shape[:2]
    out = np.zeros((k_count, h_count), bool)
    if not len(track.xyz) or not k_count:
        return out
    up = np.asarray(up, np.float64)
    pts = track.xyz.astype(np.float64)
    h = pts @ up
    pts = pts[h >= h.min() + 0.2 * np.ptp(h)]  # not its foot on the ground, which the ground hides
    pts = pts[np.linspace(0, len(pts) - 1, min(len(pts), NEGATIVE_SAMPLES)).astype(np.int64)]
    cams = views.cameras
    height, width = views.depth.shape[1:]
    for k in range(k_count):
        world = np.einsum("hij,nj->hni", rotation(up, heading[k]), pts) + position[k][:, None]  # [H,N,3]
        cam = world @ cams.w2c[k, :3, :3].T + cams.w2c[k, :3, 3]
        z = cam[..., 2]
        fx, fy, cx, cy = cams.intrinsics[k]
        zc = np.where(z > 1e-2, z, 1.0)
        u = np.floor(fx * cam[..., 0] / zc + cx).astype(np.int64)
        v = np.floor(fy * cam[..., 1] / zc + cy).astype(np.int64)
        inside = (z > 1e-2) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        for j in range(h_count):
            if inside[j].mean() < 0.5:
                continue
            d = views.depth[k][v[j, inside[j]], u[j, inside[j]]]
            inst = views.instances[k][v[j, inside[j]], u[j, inside[j]]]
            zz = z[j, inside[j]]
            free = (d > zz + NEGATIVE_MARGIN) & (inst == 0) & np.isfinite(d)
            out[k, j] = free.mean() >= FREE_SHARE
    return out


def _path_state(path: PosePath, track: ObjectTrack, fps: float, up) -> MotionState:
    """The state at the end of the artist's path: its last pose, moving as the path last moved."""
    state = initial_state(int(path.frames[-1]), path.position[-1], float(path.heading[-1]), up, track.label,
                          measure_sigma(track))
    a, b = plane_axes(up)
    v = (path.position[-1] - path.position[-2]) * fps if len(path.frames) > 1 else np.zeros(3)
    x, p = state.x.copy(), state.p.copy()
    x[[j for j in range(M) if j != STOPPED], 2] = v @ a
    x[[j for j in range(M) if j != STOPPED], 3] = v @ b
    p[:, 2:4, 2:4] = np.eye(2) * 0.25 ** 2
    p[STOPPED, 2:5, 2:5] = 0.0
    mu = np.full(M, 0.05)
    mu[CV if np.linalg.norm(v) > 0.1 else STOPPED] = 1 - 0.05 * (M - 1)
    return MotionState(state.frame, x, p, mu, state.height)


def carry(track: ObjectTrack, path: PosePath | None, views: KeyViews | None, up, fps: float) -> ObjectTrack:
    """An object the round did not see: its state carried to the round's end (where the
    prediction left it, stops at surfaces included), its hypotheses weighed down where a
    keyframe saw their place empty, and its lifecycle moved on."""
    if path is None or track.status == "retired":
        return track
    if path.source == "path":
        state = _path_state(path, track, fps, up)
    elif path.end is not None:
        state = path.end
    else:
        return track
    mu, evidence = state.mu.copy(), float(state.evidence)
    if views is not None and path.hypotheses is not None and len(views.frames):
        at = np.searchsorted(path.frames, views.frames)
        ok = (at < len(path.frames)) & (path.frames[np.minimum(at, len(path.frames) - 1)] == views.frames)
        ok &= views.frames > track.last_frame
        if ok.any():
            pos, head = path.hypotheses[:2]
            sub = KeyViews(views.cameras[np.flatnonzero(ok)], views.depth[ok], views.instances[ok], views.frames[ok])
            empty = empty_places(track, pos[at[ok]], head[at[ok]], sub, up)
            for row in empty:
                factor = np.where(row, MISS_FACTOR, 1.0)
                evidence *= float((mu * factor).sum() / mu.sum())
                mu = np.maximum(mu * factor, 1e-6)
                mu /= mu.sum()
    state = MotionState(state.frame, state.x, state.p, mu, state.height, evidence)
    unseen = (state.frame - track.last_frame) / fps
    status = track.status
    if unseen > RETIRE_SECONDS:
        status = "retired"
    elif evidence < LOST_EVIDENCE or state.sigma() > LOST_RATIO * size_limit(track):
        status = "lost"
    return replace(track, motion=state, status=status)


def founds_object(observations: list[Observation]) -> bool:
    """Whether an unmatched instance becomes a new object: it has MIN_NEW_POINTS points in all and
    at least one view that gives a pose (whole, or cut only at the top or bottom of a level
    camera's image). A car seen only as a fragment at the image's side has neither a frame nor a
    pose to trust: a whole view registered later to the fragment slides and turns on it (on the
    scenario suite such objects came back 2 to 2.5 m off with a false 90-degree turn). It is
    still kept out of the static memory, and becomes an object when it is seen whole."""
    if sum(len(o.xyz) for o in observations) < MIN_NEW_POINTS:
        return False
    return any(not o.partial or o.cut_vertically for o in observations)


@dataclass
class Learned:
    objects: ObjectSet
    instances: dict[int, int] = field(default_factory=dict)  # clip instance id -> object id
    observed: dict[int, PosePath] = field(default_factory=dict)  # object id -> observed poses this clip
    changed: bool = False  # whether anything of the objects changed (a state carried on counts)


def learn(objects: ObjectSet, paths: dict[int, PosePath], clip: dict[int, list[Observation]],
          labels: dict[int, str], voxel: float, fps: float, *, views: KeyViews | None = None) -> Learned:
    """Associate the clip's instances with the objects, update the matched ones, make new
    objects of the rest (those with enough points), and carry the others on (negative evidence
    from `views`, the keyframes, where given)."""
    tracks = list(objects.objects)
    match = associate(tracks, paths, clip, labels, objects.up, fps)
    updated, instances = [], {}
    for k, object_id in match.items():
        observations = clip[k]
        if object_id is None:
            if not founds_object(observations):
                continue
            object_id, objects = objects.new_id()
            track = new_track(object_id, labels.get(k, ""), observations, objects.up, voxel, fps)
        else:
            track = absorb(objects.get(object_id), observations, paths.get(object_id), objects.up, voxel=voxel, fps=fps)
        updated.append(track)
        instances[k] = object_id
    matched = set(instances.values())
    carried = [carry(t, paths.get(t.id), views, objects.up, fps) for t in tracks if t.id not in matched]
    changed = bool(updated) or any(c is not t for c, t in zip(carried, [t for t in tracks if t.id not in matched]))
    objects = objects.replaced([*updated, *carried])
    observed = {}
    for k, object_id in instances.items():
        frames = np.array([o.frame for o in clip[k]], np.int64)
        track = objects.get(object_id)
        keep = np.isin(track.key_frame, frames)
        observed[object_id] = PosePath(track.key_frame[keep], track.key_position[keep], track.key_heading[keep], "observed")
    return Learned(objects, instances, observed, changed)
