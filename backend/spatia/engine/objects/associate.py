"""Which instance of a clip is which remembered object, and what a matched instance teaches
the object (its pose by registration, new points, crops, frames seen). See docs/objects.md.

    cost = d / gate + APPEARANCE_WEIGHT * bhattacharyya(hist_instance, hist_object)

d: the median distance between the instance's observed centroids and the object's centroid at
its predicted poses for the same frames; gate = GATE_METRES + GATE_EXTENT x the object's
largest extent + GATE_SPEED x the seconds since it was last seen (at most GATE_TIME_CAP): the
longer unseen, the farther it may be. Pairs beyond the gate, with histograms farther than APPEARANCE_GATE, or with
two different known labels cannot match. The assignment minimises the total cost (Hungarian).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from .model import MAX_OBJECT_POINTS, ObjectTrack, rotation
from .motion import PosePath, interpolate
from .observe import Observation, bhattacharyya, colour_histogram

GATE_METRES = 1.0
GATE_EXTENT = 0.5
GATE_SPEED = 0.5  # m/s: the gate widens with the time an object was unseen (where else could it be) ...
GATE_TIME_CAP = 3.0  # ... by at most this many metres
APPEARANCE_GATE = 0.6
APPEARANCE_WEIGHT = 0.5
MIN_NEW_POINTS = 60  # an unmatched instance needs this many points in all to become an object
ICP_ITERATIONS = 12
MIN_FIT = 0.5  # a registration that puts less than this share of the points on the object gives no pose
APPEARANCE_MEMORY = 0.8  # an object's histogram keeps this share of its old value per clip


def instance_histogram(observations: list[Observation]) -> np.ndarray:
    return colour_histogram(np.concatenate([o.rgb for o in observations]))


def association_costs(tracks, paths: dict[int, PosePath], clip: dict[int, list[Observation]],
                      labels: dict[int, str], up, fps: float) -> tuple[list[int], np.ndarray]:
    """(instance ids, cost [instances, tracks]) with np.inf where a pair cannot match."""
    instances = sorted(clip)
    cost = np.full((len(instances), len(tracks)), np.inf)
    for i, k in enumerate(instances):
        obs = clip[k]
        frames = np.array([o.frame for o in obs])
        centroids = np.stack([o.centroid for o in obs])
        hist = instance_histogram(obs)
        label = labels.get(k)
        for j, track in enumerate(tracks):
            if label and track.label and label != track.label:
                continue
            path = paths.get(track.id)
            if path is not None:
                position, heading = path.at(frames)
            else:
                position, heading = interpolate(track.key_frame, track.key_position, track.key_heading, frames)
            predicted = position + np.einsum("fij,j->fi", rotation(up, heading), track.anchor)
            d = float(np.median(np.linalg.norm(centroids - predicted, axis=1)))
            unseen = max(0.0, float(frames.min() - track.last_frame)) / fps
            gate = (GATE_METRES + GATE_EXTENT * float(track.extent.max(initial=0.0))
                    + min(GATE_SPEED * unseen, GATE_TIME_CAP))
            a = bhattacharyya(hist, track.appearance)
            if d <= gate and a <= APPEARANCE_GATE:
                cost[i, j] = d / gate + APPEARANCE_WEIGHT * a
    return instances, cost


def associate(tracks, paths: dict[int, PosePath], clip: dict[int, list[Observation]], labels: dict[int, str],
              up, fps: float) -> dict[int, int | None]:
    """{instance id: the id of the object it is, or None (a new object)}."""
    instances, cost = association_costs(tracks, paths, clip, labels, up, fps)
    match: dict[int, int | None] = {k: None for k in instances}
    if cost.size and np.isfinite(cost).any():
        finite = np.where(np.isfinite(cost), cost, 1e9)
        rows, cols = linear_sum_assignment(finite)
        for r, c in zip(rows, cols):
            if np.isfinite(cost[r, c]):
                match[instances[r]] = tracks[c].id
    return match


# --- learning from a matched instance ---------------------------------------------------------------
def _plane_axes(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two axes spanning the plane normal to `up`, right-handed with it."""
    a = np.eye(3)[int(np.argmin(np.abs(up)))]
    a = a - np.dot(a, up) * up
    a /= np.linalg.norm(a)
    return a, np.cross(up, a)


def register(track: ObjectTrack, xyz: np.ndarray, position, heading: float, up,
             tree: cKDTree | None = None, *, keep_height: bool = False) -> tuple[np.ndarray, float, float]:
    """The pose (position, heading) that puts world points `xyz` onto the track's points:
    nearest-neighbour ICP over translation and a turn about up, from the given pose (its height
    kept when `keep_height`: a view cut at the top or bottom cannot say it). Returns
    (position, heading, the share of the points within 3 spacings of the object's)."""
    tree = tree or cKDTree(track.xyz)
    a, b = _plane_axes(up)
    position = np.asarray(position, np.float64).copy()
    reach = float(track.extent.max(initial=0.0)) * 0.5 + 0.5
    floor = 3.0 * track.spacing
    # Nearest-neighbour ICP barely slides along a flat side (only the side's ends pull), so the
    # translation in the ground plane is first found by the most points landing on the object.
    position = position + rotation(up, heading) @ _best_shift(tree, (xyz - position) @ rotation(up, heading), a, b,
                                                               reach, 2.0 * track.spacing)
    for it in range(ICP_ITERATIONS):
        threshold = max(floor, reach * (0.5 ** (it + 2)))
        local = (xyz - position) @ rotation(up, heading)
        dist, idx = tree.query(local, distance_upper_bound=threshold)
        ok = np.isfinite(dist)
        if ok.sum() < 3:
            break
        src, dst = local[ok], track.xyz[idx[ok]].astype(np.float64)
        sc, dc = src.mean(axis=0), dst.mean(axis=0)
        s, d = src - sc, dst - dc
        delta = np.arctan2((s @ a * (d @ b) - s @ b * (d @ a)).sum(), (s @ a * (d @ a) + s @ b * (d @ b)).sum())
        t = dc - rotation(up, delta) @ sc  # object frame: p = R(delta) local + t
        if keep_height:
            t = t - np.dot(t, up) * up
        heading = heading - delta
        position = position - rotation(up, heading) @ t
        if abs(delta) < 1e-5 and np.linalg.norm(t) < 1e-4:
            break
    dist, _ = tree.query((xyz - position) @ rotation(up, heading), distance_upper_bound=floor)
    return position, float(heading), float(np.isfinite(dist).mean()) if len(dist) else 0.0


SEARCH_STEPS = 9  # per axis and level: 9 x 9 shifts, then 9 x 9 finer ones around the best
SEARCH_POINTS = 400  # observed points used for the search


def _best_shift(tree: cKDTree, local: np.ndarray, a, b, reach: float, inlier: float) -> np.ndarray:
    """The shift s in the plane (a, b) that puts the most of `local` (points in the object's frame)
    within `inlier` of the object's points; returned so that local - s lies on the object."""
    sample = local[np.linspace(0, len(local) - 1, min(len(local), SEARCH_POINTS)).astype(np.int64)]
    centre, span = np.zeros(3), reach
    for _ in range(3):
        steps = np.linspace(-span, span, SEARCH_STEPS)
        su, sv = np.meshgrid(steps, steps, indexing="ij")
        shifts = centre + su.reshape(-1, 1) * a + sv.reshape(-1, 1) * b  # [S,3]
        moved = sample[None] - shifts[:, None]
        dist, _ = tree.query(moved.reshape(-1, 3), distance_upper_bound=inlier)
        score = np.isfinite(dist).reshape(len(shifts), -1).sum(axis=1) - 1e-3 * np.linalg.norm(shifts - centre, axis=1)
        centre, span = shifts[int(np.argmax(score))], span * 2 / (SEARCH_STEPS - 1)
    return centre


def _voxel_unique(xyz: np.ndarray, rgb: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """One point per cell of `spacing` (the first), at most MAX_OBJECT_POINTS (a fixed stride)."""
    keys = np.floor(xyz / spacing).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    first.sort()
    if len(first) > MAX_OBJECT_POINTS:
        first = first[np.linspace(0, len(first) - 1, MAX_OBJECT_POINTS).astype(np.int64)]
    return xyz[first].astype(np.float32), rgb[first]


def new_track(object_id: int, label: str, observations: list[Observation], up, voxel: float) -> ObjectTrack:
    """An object made from an unmatched instance: its frame's origin at the first observation's
    centroid, heading 0; the later observations of the clip register to it."""
    first = observations[0]
    origin = first.centroid
    spacing = max(voxel, first.spacing)
    xyz, rgb = _voxel_unique(first.xyz - origin, first.rgb, spacing)
    track = ObjectTrack(id=object_id, label=label, xyz=xyz, rgb=rgb, key_frame=np.array([first.frame], np.int64),
                        key_position=origin[None].astype(np.float64), key_heading=np.zeros(1),
                        appearance=instance_histogram(observations), spacing=float(spacing))
    track = track.with_seen([first.frame]).with_crops([first.crop] if first.crop else [])
    return absorb(track, observations[1:], None, up) if len(observations) > 1 else track


def absorb(track: ObjectTrack, observations: list[Observation], path: PosePath | None, up) -> ObjectTrack:
    """The track after a clip's observations of it: each registered from the predicted pose
    (or the previous observation's, moved by the centroids' shift), new sides added to its points."""
    if not observations:
        return track
    tree = cKDTree(track.xyz)
    xyz, rgb = track.xyz, track.rgb
    frames, positions, headings = [], [], []
    prev = None
    for obs in observations:
        if obs.partial and not obs.cut_vertically:
            continue  # a part cut by the image's side or an occluder slides under registration: no pose
        if prev is None:  # the predicted heading, the object centred on what is seen
            guess, heading = (path.at([obs.frame]) if path is not None else
                              (track.key_position[-1:], track.key_heading[-1:]))
            heading = float(heading[0])
            position = obs.centroid - rotation(up, heading) @ track.anchor
        else:
            guess = positions[-1][None]
            position, heading = positions[-1] + (obs.centroid - prev.centroid), headings[-1]
        if obs.cut_vertically:  # its height comes from the prediction: a cut view's centroid is not
            position = position + (np.dot(guess[0] - position, up)) * up
        position, heading, fit = register(track, obs.xyz, position, heading, up, tree, keep_height=obs.cut_vertically)
        if fit < MIN_FIT:
            continue  # it does not lie on the object's points: no pose from it
        frames.append(obs.frame)
        positions.append(position)
        headings.append(heading)
        local = ((obs.xyz - position) @ rotation(up, heading)).astype(np.float32)
        dist, _ = tree.query(local, distance_upper_bound=2 * track.spacing)
        fresh = ~np.isfinite(dist)
        if fresh.any():
            xyz, rgb = np.concatenate([xyz, local[fresh]]), np.concatenate([rgb, obs.rgb[fresh]])
        prev = obs
    xyz, rgb = _voxel_unique(xyz.astype(np.float64), rgb, track.spacing)
    hist = APPEARANCE_MEMORY * track.appearance + (1 - APPEARANCE_MEMORY) * instance_histogram(observations)
    track = replace(track, xyz=xyz, rgb=rgb, appearance=(hist / hist.sum()).astype(np.float32))
    crops = [o.crop for o in observations if o.crop is not None]
    seen = [o.frame for o in observations]
    return track.with_keys(frames, positions, headings).with_seen(seen).with_crops(crops)
