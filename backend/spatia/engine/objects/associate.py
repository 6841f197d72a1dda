"""Which instance of a clip is which remembered object, and what a matched instance teaches
the object (its pose by registration, new points, crops, frames seen, its motion state). See
docs/objects.md.

    cost = d_h / gate_h + HYPOTHESIS_COST ln(w_likeliest / w_h) + APPEARANCE_WEIGHT * bhattacharyya(hist_instance, hist_object)

d_h: the median distance between the instance's observed centroids and the object's centroid as
its motion hypothesis h places it (weight w_h) at the same frames, taking the hypothesis that
explains it best; gate_h = sqrt(base^2 + (GATE_SIGMA sigma_h)^2), base = GATE_METRES +
GATE_EXTENT x the object's largest extent, sigma_h that hypothesis' own position uncertainty.
Every instance may instead be a new object, at NEW_OBJECT_COST. An object that is lost or
retired, or whose likeliest hypothesis' wider gate (HOLD_SIGMA) misses the instance, can then be re-identified by
the instances left: within how far it could have gone since it was last seen (MAX_SPEED x the
seconds unseen) and only if its appearance is close (REID_APPEARANCE, REID_REGION), at a cost
raised by REID_COST. Appearance vetoes, however close the positions: a whole-object histogram
farther than APPEARANCE_GATE, or one height band (legs, shirt, head) farther than REGION_VETO, or
two different known labels cannot match. Each stage minimises its total cost (Hungarian).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from .model import MAX_OBJECT_POINTS, ObjectTrack, rotation
from .motion import INITIAL_WEIGHTS, STOPPED, MotionState, PosePath, initial_state, interpolate, measure_sigma, observe_pose, state_of
from .observe import Observation, bhattacharyya, colour_histogram, region_histograms

GATE_METRES = 1.0
GATE_EXTENT = 0.5
GATE_SIGMA = 2.0  # the gate widens with the hypothesis' own uncertainty (in quadrature with the base)
HOLD_SIGMA = 3.0  # ... and within this many of the likeliest's, its motion need not have changed: no re-identification
APPEARANCE_GATE = 0.6
REGION_VETO = 0.55  # one height band this far apart is a different object, however close
APPEARANCE_WEIGHT = 1.0
HYPOTHESIS_COST = 0.2  # per nat of odds against a hypothesis (against the likeliest)
NEW_OBJECT_COST = 1.0  # an instance is a new object rather than a pairing dearer than this (at a gate's edge)
MIN_HYPOTHESIS_WEIGHT = 0.01
MAX_SPEED = {"car": 15.0, "person": 3.0}  # m/s: how far an unseen object can have gone ...
DEFAULT_MAX_SPEED = 5.0
REID_APPEARANCE = 0.35  # ... and how alike it must look to be re-identified there
REID_REGION = 0.45
REID_COST = 0.5
FRAGMENT_GATE = 0.5  # an instance never seen whole re-identifies an object only this far into a hypothesis' gate
CONFIRM_FRAMES = 2  # seen in this many keyframes: confirmed
MIN_NEW_POINTS = 60  # an unmatched instance needs this many points in all to become an object
ICP_ITERATIONS = 12
MIN_FIT = 0.5  # a registration that puts less than this share of the points on the object gives no pose
APPEARANCE_MEMORY = 0.8  # an object's histogram keeps this share of its old value per clip
START_TURNS = (0.0, np.pi / 2, np.pi, -np.pi / 2)  # registration starts from the predicted heading and these turns of it
TURN_MARGIN = 0.1  # another start must fit this much better than the predicted heading's to win
COLOUR_TOLERANCE = 60  # a point fits where its nearest object point is near and of a colour within this (0-255 per channel)
REFINE_RATIO = 0.7  # seen with a pixel footprint below this share of its spacing: its points are refined
REACQUIRE_SECONDS = 1.0  # seen again after this long unseen, its old velocity and motion are stale evidence:
REACQUIRE_SPEED = 1.0  # m/s added (1 sigma) to every hypothesis' velocity uncertainty, and the weights
REACQUIRE_MIX = 0.5  # ... this share back to a new object's, before the new poses update it


def instance_histogram(observations: list[Observation]) -> np.ndarray:
    return colour_histogram(np.concatenate([o.rgb for o in observations]))


def instance_regions(observations: list[Observation], up) -> np.ndarray | None:
    """The height bands' histograms over the whole views (None when every view is cut: a view
    without feet or head puts the bands elsewhere)."""
    whole = [o for o in observations if not o.partial]
    if not whole:
        return None
    return np.mean([region_histograms(o.xyz, o.rgb, up) for o in whole], axis=0)


def region_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """The largest distance between corresponding height bands (0 when either is unknown)."""
    if a is None or b is None:
        return 0.0
    return max(bhattacharyya(x, y) for x, y in zip(a, b))


def _hypotheses_at(path: PosePath, frames: np.ndarray):
    """(position [H,F,3], heading [H,F], weight [H], own position uncertainty [H], the median over
    `frames`) of each hypothesis at `frames`."""
    if path.hypotheses is None:
        position, heading = path.at(frames)
        return position[None], heading[None], np.ones(1), np.zeros(1)
    pos, head, weight = path.hypotheses[:3]
    idx = np.clip(np.searchsorted(path.frames, frames), 0, len(path.frames) - 1)
    own = (np.median(path.hypotheses[3][idx], axis=0) if len(path.hypotheses) > 3
           else np.full(weight.shape[1], float(np.median(path.sigma[idx]))))
    return (np.transpose(pos[idx], (1, 0, 2)), np.transpose(head[idx], (1, 0)), weight[idx].mean(axis=0), own)


def _hypothesis_cost(track: ObjectTrack, path: PosePath, frames: np.ndarray, centroids: np.ndarray, up,
                     skip_weight: float = 0.0) -> tuple[float, bool]:
    """The best over hypotheses h of d_h / gate_h + HYPOTHESIS_COST ln(w_likeliest / w_h), over
    those within their gate (np.inf where none is): gate_h = sqrt(base^2 + (GATE_SIGMA sigma_h)^2),
    base = GATE_METRES + GATE_EXTENT x extent (where a partial view's centroid may be), sigma_h
    the hypothesis' OWN position uncertainty. Also whether the likeliest hypothesis accounts for it:
    within sqrt(base^2 + (HOLD_SIGMA sigma_h)^2) of it. The spread between hypotheses is not part of any
    gate: a walker whose straight-on hypothesis is sure and right does not make its unlikely turn
    or stop hypothesis, metres away, wide enough to take whoever walks by there."""
    base = GATE_METRES + GATE_EXTENT * float(track.extent.max(initial=0.0))
    position, heading, weight, own = _hypotheses_at(path, frames)
    likeliest = float(weight.max())
    best, held = np.inf, False
    for h in range(len(weight)):
        if weight[h] < skip_weight:
            continue
        gate = float(np.hypot(base, GATE_SIGMA * own[h]))
        predicted = position[h] + np.einsum("fij,j->fi", rotation(up, heading[h]), track.anchor)
        d = float(np.median(np.linalg.norm(centroids - predicted, axis=1)))
        if h == int(np.argmax(weight)):
            held = d <= float(np.hypot(base, HOLD_SIGMA * own[h]))
        if d <= gate:
            odds = np.log(likeliest / max(float(weight[h]), MIN_HYPOTHESIS_WEIGHT))
            best = min(best, d / gate + HYPOTHESIS_COST * odds)
    return best, held


def association_costs(tracks, paths: dict[int, PosePath], clip: dict[int, list[Observation]],
                      labels: dict[int, str], up, fps: float) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(instance ids, cost [instances, tracks] where a motion hypothesis' gate holds the instance,
    re-identification cost [instances, tracks] where the likeliest hypothesis' wider gate (HOLD_SIGMA) does not (or
    the object has none: lost, retired)), np.inf where a pair cannot match."""
    instances = sorted(clip)
    cost = np.full((len(instances), len(tracks)), np.inf)
    reid = np.full((len(instances), len(tracks)), np.inf)
    for i, k in enumerate(instances):
        obs = clip[k]
        frames = np.array([o.frame for o in obs])
        centroids = np.stack([o.centroid for o in obs])
        hist = instance_histogram(obs)
        regions = instance_regions(obs, up)
        label = labels.get(k)
        for j, track in enumerate(tracks):
            if label and track.label and label != track.label:
                continue
            a = bhattacharyya(hist, track.appearance)
            r = region_distance(regions, track.regions)
            if a > APPEARANCE_GATE or r > REGION_VETO:
                continue  # it does not look like the object: no place makes it so
            extent = float(track.extent.max(initial=0.0))
            best, held = np.inf, False
            path = paths.get(track.id)
            if path is not None and track.status not in ("lost", "retired") and path.source not in ("lost", "retired"):
                best, held = _hypothesis_cost(track, path, frames, centroids, up, MIN_HYPOTHESIS_WEIGHT)
            elif path is None:
                position, heading = interpolate(track.key_frame, track.key_position, track.key_heading, frames)
                predicted = position + np.einsum("fij,j->fi", rotation(up, heading), track.anchor)
                d = float(np.median(np.linalg.norm(centroids - predicted, axis=1)))
                gate = GATE_METRES + GATE_EXTENT * extent
                if d <= gate:
                    best, held = d / gate, True
            if np.isfinite(best):
                cost[i, j] = best + APPEARANCE_WEIGHT * a
            if not held and a <= REID_APPEARANCE and r <= REID_REGION and (
                    regions is not None or _where_it_went(track, path, frames, centroids, up)):
                reid[i, j] = reidentify_cost(track, path, frames, centroids, up, fps) + APPEARANCE_WEIGHT * a
    return instances, cost, reid


def _where_it_went(track: ObjectTrack, path: PosePath | None, frames: np.ndarray, centroids: np.ndarray, up) -> bool:
    """Whether an instance seen in no whole view may re-identify the object: only where one of its
    hypotheses puts it (within FRAGMENT_GATE of a gate, odds counted). Such a view has no height
    bands to veto a stranger, and its colours are a part's: anywhere else the object could have got
    to, a stranger cut by the image's edge took a lost walker's id (who came back whole a moment
    later as a new object: a swap)."""
    if path is None or path.hypotheses is None:
        return False
    return _hypothesis_cost(track, path, frames, centroids, up)[0] <= FRAGMENT_GATE


def reidentify_cost(track: ObjectTrack, path: PosePath | None, frames: np.ndarray, centroids: np.ndarray,
                    up, fps: float) -> float:
    """Re-identification (np.inf where it cannot be): anywhere the object could have got to since
    it was last seen (GATE_METRES + GATE_EXTENT x extent + MAX_SPEED x the seconds unseen from its
    last place). The cost counts the distance from where its hypotheses put it (the best of them,
    weighed as association does, over the gate their uncertainty gives), not from where it was
    last seen: two look-alikes who walked past each other while unseen each come back nearer the
    other's last place, but each where its own motion says. Without hypotheses (retired), from
    its last place over the reach."""
    extent = float(track.extent.max(initial=0.0))
    last = track.key_position[-1] + rotation(up, track.key_heading[-1]) @ track.anchor
    unseen = max(0.0, float(frames.min() - track.last_frame)) / fps
    reach = GATE_METRES + GATE_EXTENT * extent + MAX_SPEED.get(track.label, DEFAULT_MAX_SPEED) * unseen
    d = float(np.median(np.linalg.norm(centroids - last, axis=1)))
    if d > reach:
        return np.inf
    if path is None or path.hypotheses is None:
        return REID_COST + d / reach
    best, _ = _hypothesis_cost(track, path, frames, centroids, up)
    return REID_COST + (best if np.isfinite(best) else 1.0 + d / reach)


def associate(tracks, paths: dict[int, PosePath], clip: dict[int, list[Observation]], labels: dict[int, str],
              up, fps: float) -> dict[int, int | None]:
    """{instance id: the id of the object it is, or None (a new object)}. First by the motion
    hypotheses: each instance has its own "a new object" alternative at NEW_OBJECT_COST (the cost
    of a pairing at a hypothesis' gate, looking the same), so no pairing dearer than that is made,
    and no instance is pushed onto a poor fit because its good one went to another. Then the
    instances left re-identify objects left whose likeliest hypothesis' wider gate missed them (its
    motion changed while unseen: it stopped, turned or turned round) or that have none (lost,
    retired). An instance within the likeliest hypothesis' wider gate but dearer than a new object is
    someone else: the object is most likely just where that hypothesis has it, unseen."""
    instances, cost, reid = association_costs(tracks, paths, clip, labels, up, fps)
    match: dict[int, int | None] = {k: None for k in instances}
    n = len(instances)
    if not cost.size:
        return match
    new = np.full((n, n), 1e9)
    np.fill_diagonal(new, NEW_OBJECT_COST)
    rows, cols = linear_sum_assignment(np.hstack([np.where(np.isfinite(cost), cost, 1e9), new]))
    taken = set()
    for r, c in zip(rows, cols):
        if c < len(tracks) and np.isfinite(cost[r, c]):
            match[instances[r]] = tracks[c].id
            taken.add(c)
    left = [i for i in range(n) if match[instances[i]] is None]
    free = [j for j in range(len(tracks)) if j not in taken]
    sub = reid[np.ix_(left, free)] if left and free else np.zeros((0, 0))
    if sub.size and np.isfinite(sub).any():
        rows, cols = linear_sum_assignment(np.where(np.isfinite(sub), sub, 1e9))
        for r, c in zip(rows, cols):
            if np.isfinite(sub[r, c]):
                match[instances[left[r]]] = tracks[free[c]].id
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


def fit_score(track: ObjectTrack, tree: cKDTree, xyz: np.ndarray, rgb: np.ndarray, position, heading: float, up) -> float:
    """The share of world points `xyz` that land, at a pose, within 3 spacings of an object point
    of about their colour: shape and colour together (a car's two ends differ in colour where
    their shapes alike)."""
    if not len(xyz):
        return 0.0
    dist, idx = tree.query((xyz - position) @ rotation(up, heading), distance_upper_bound=3.0 * track.spacing)
    ok = np.isfinite(dist)
    near = np.zeros(len(xyz), bool)
    near[ok] = np.abs(track.rgb[idx[ok]].astype(np.int64) - rgb[ok].astype(np.int64)).max(axis=1) <= COLOUR_TOLERANCE
    return float(near.mean())


def register_turns(track: ObjectTrack, obs: Observation, position, heading: float, up, tree: cKDTree,
                   *, keep_height: bool = False) -> tuple[np.ndarray, float, float]:
    """register() from the predicted heading and from START_TURNS of it (a turn of 90 or 180
    degrees while unseen is measured, not averaged away); the predicted heading's result stands
    unless another fits TURN_MARGIN better (shape and colour, `fit_score`)."""
    best, best_score = None, -1.0
    for n, turn in enumerate(START_TURNS):
        h = heading + turn
        start = obs.centroid - rotation(up, h) @ track.anchor
        if keep_height:
            start = start + np.dot(np.asarray(position) - start, up) * np.asarray(up)
        p, hh, fit = register(track, obs.xyz, start if n else position, h, up, tree, keep_height=keep_height)
        score = fit_score(track, tree, obs.xyz, obs.rgb, p, hh, up) if fit >= MIN_FIT else -1.0
        if best is None or score > best_score + (TURN_MARGIN if n else 0.0):
            best, best_score = (p, hh, fit), score
    return best


def register_onto_view(track: ObjectTrack, obs: Observation, position, heading: float, up) -> tuple[np.ndarray, float, float]:
    """The pose, in a whole view, of an object known so far only from partial views (a fragment:
    a car's front as it drove in from the image's side). The whole view registered to the fragment
    slides along it and turns on it; the fragment, placed at the predicted pose, registered onto
    the whole view (from START_TURNS of it, as register_turns does) finds its place. Returns
    (position, heading, the share of the fragment's points that land on the view)."""
    up = np.asarray(up, np.float64)
    centre = obs.centroid
    view = replace(track, xyz=(obs.xyz - centre).astype(np.float32), rgb=obs.rgb,
                   spacing=max(float(track.spacing), float(obs.spacing)))
    placed = track.xyz.astype(np.float64) @ rotation(up, heading).T + np.asarray(position, np.float64)
    fragment = replace(obs, xyz=placed, rgb=track.rgb, crop=None, partial=True)
    q, g, fit = register_turns(view, fragment, fragment.centroid - view.anchor, 0.0, up, cKDTree(view.xyz))
    # a view point y sits at R(g) y + q beside the placed fragment, and at y + centre in the world
    return rotation(up, -g) @ (np.asarray(position, np.float64) - q) + centre, float(heading - g), fit


def new_track(object_id: int, label: str, observations: list[Observation], up, voxel: float,
              fps: float = 30.0) -> ObjectTrack:
    """An object made from an unmatched instance: its frame's origin at the centroid of its first
    whole view (the first view when none is whole), heading 0; the later observations of the clip
    register to it, the partial views before that one only count as seen (a car entering from the
    image's side is a fragment that a whole view would register to a wrong pose and a false turn).
    It starts tentative."""
    base = next((i for i, o in enumerate(observations) if not o.partial), 0)
    first = observations[base]
    origin = first.centroid
    spacing = max(voxel, first.spacing)
    xyz, rgb = _voxel_unique(first.xyz - origin, first.rgb, spacing)
    track = ObjectTrack(id=object_id, label=label, xyz=xyz, rgb=rgb, key_frame=np.array([first.frame], np.int64),
                        key_position=origin[None].astype(np.float64), key_heading=np.zeros(1),
                        appearance=instance_histogram(observations), spacing=float(spacing),
                        status="tentative", regions=instance_regions(observations, up))
    track = replace(track, motion=initial_state(first.frame, origin, 0.0, up, label, measure_sigma(track)))
    track = track.with_seen([o.frame for o in observations[:base + 1]]).with_crops([first.crop] if first.crop else [])
    rest = observations[base + 1:]
    track = absorb(track, rest, None, up, voxel=voxel, fps=fps) if rest else track
    return replace(track, status=seen_status(track, fps))


def absorb(track: ObjectTrack, observations: list[Observation], path: PosePath | None, up, *,
           voxel: float | None = None, fps: float = 30.0) -> ObjectTrack:
    """The track after a clip's observations of it: each registered from the predicted pose
    (the first from several headings; the next from the previous observation's, moved by the
    centroids' shift), new sides added to its points (all of them, finer, when it is seen closer
    than before), its motion state updated by each pose, its lifecycle back to confirmed."""
    if not observations:
        return track
    up = np.asarray(up, np.float64)
    tree = cKDTree(track.xyz)
    xyz, rgb = track.xyz, track.rgb
    frames, positions, headings = [], [], []
    prev = None
    whole = [o for o in observations if not o.partial]
    finest = min((o.spacing for o in whole), default=np.inf)
    spacing = track.spacing
    if finest < REFINE_RATIO * track.spacing:  # seen closer: finer points from now on
        spacing = max(float(voxel or 0.0), float(finest))
    shape, seen_whole = track, bool(track.crops)  # what the views register to
    for obs in observations:
        if obs.partial and not obs.cut_vertically:
            continue  # a part cut by the image's side or an occluder slides under registration: no pose
        last = None if prev is None else (positions[-1], headings[-1], prev)
        position, heading, fit = _pose_of(shape, obs, last, path, up, tree, seen_whole)
        if fit < MIN_FIT:
            continue  # it does not lie on the object's points: no pose from it
        frames.append(obs.frame)
        positions.append(position)
        headings.append(heading)
        local = ((obs.xyz - position) @ rotation(up, heading)).astype(np.float32)
        if spacing < track.spacing and not obs.partial and obs.spacing <= spacing * 1.01:
            fresh = np.ones(len(local), bool)  # the close view's points all come in, thinned below
        else:
            dist, _ = tree.query(local, distance_upper_bound=2 * track.spacing)
            fresh = ~np.isfinite(dist)
        if fresh.any():
            xyz, rgb = np.concatenate([xyz, local[fresh]]), np.concatenate([rgb, obs.rgb[fresh]])
        if not seen_whole and not obs.partial:  # from now on the views register to the whole of it
            shape, seen_whole = replace(track, xyz=xyz, rgb=rgb), True
            tree = cKDTree(xyz)
        prev = obs
    xyz, rgb = _voxel_unique(xyz.astype(np.float64), rgb, spacing)
    hist = APPEARANCE_MEMORY * track.appearance + (1 - APPEARANCE_MEMORY) * instance_histogram(observations)
    regions = instance_regions(observations, up)
    if regions is not None and track.regions is not None:
        regions = APPEARANCE_MEMORY * track.regions + (1 - APPEARANCE_MEMORY) * regions
    elif regions is None:
        regions = track.regions
    if regions is not None:
        regions = (regions / regions.sum(axis=1, keepdims=True)).astype(np.float32)
    track = replace(track, xyz=xyz, rgb=rgb, spacing=float(spacing), appearance=(hist / hist.sum()).astype(np.float32),
                    regions=regions)
    state = state_of(track, fps, up)
    if frames and min(frames) - track.last_frame > REACQUIRE_SECONDS * fps:
        state = reacquire(state)
    sigma = measure_sigma(track)
    for f, pos, h in sorted(zip(frames, positions, headings), key=lambda k: k[0]):
        if f > state.frame or (f == state.frame and track.motion is None):
            state = observe_pose(state, f, pos, h, up, fps, sigma)
    crops = [o.crop for o in observations if o.crop is not None]
    seen = [o.frame for o in observations]
    track = track.with_keys(frames, positions, headings).with_seen(seen).with_crops(crops)
    if not frames:
        return track
    return replace(track, motion=state, status=seen_status(track, fps))


def seen_status(track: ObjectTrack, fps: float) -> str:
    """"confirmed" once seen in CONFIRM_FRAMES keyframes since it was last unseen for more than
    REACQUIRE_SECONDS, else "tentative" (not drawn). A new object's first view tells where it is,
    not how it moves; so does an object's first view after a while unseen: one pose cannot tell a
    parked car from one driving off, and "stopped" would be drawn where it stood while it drove
    off (up to a metre off in the next half second, tests/objects/test_object_motion.py)."""
    seen = track.frames_seen()
    gaps = np.flatnonzero(np.diff(seen) > REACQUIRE_SECONDS * fps)
    since = len(seen) - (int(gaps[-1]) + 1 if len(gaps) else 0)
    return "confirmed" if since >= CONFIRM_FRAMES else "tentative"


def _pose_of(track: ObjectTrack, obs: Observation, last, path: PosePath | None, up, tree: cKDTree,
             seen_whole: bool) -> tuple[np.ndarray, float, float]:
    """One view's registered pose (position, heading, fit). The clip's first view starts from the
    predicted heading, the object centred on what is seen (several headings; a first whole view
    of an object seen only in part so far places the part on it, `register_onto_view`); a later
    one (`last`: the previous view's position, heading and observation) from the previous pose
    moved by the centroids' shift. A view cut at the top or bottom keeps the predicted height."""
    if last is None:
        guess, heading = path.at([obs.frame]) if path is not None else (track.key_position[-1:], track.key_heading[-1:])
        heading = float(heading[0])
        if not seen_whole and not obs.partial:
            return register_onto_view(track, obs, guess[0], heading, up)
        position = obs.centroid - rotation(up, heading) @ track.anchor
    else:
        guess = last[0][None]
        position, heading = last[0] + (obs.centroid - last[2].centroid), last[1]
    if obs.cut_vertically:  # its height comes from the prediction: a cut view's centroid is not
        position = position + (np.dot(guess[0] - position, up)) * up
    if last is None:
        return register_turns(track, obs, position, heading, up, tree, keep_height=obs.cut_vertically)
    return register(track, obs.xyz, position, heading, up, tree, keep_height=obs.cut_vertically)


def reacquire(state: MotionState) -> MotionState:
    """The state of an object seen again after a while unseen: how it moves now is not known
    from how it moved before (it may have stopped, turned or turned round), so every moving
    hypothesis' velocity uncertainty grows by REACQUIRE_SPEED and the weights go REACQUIRE_MIX of
    the way back to a new object's; the new poses then say how it moves."""
    p = state.p.copy()
    moving = [j for j in range(len(state.mu)) if j != STOPPED]
    for j in moving:
        p[j, 2, 2] += REACQUIRE_SPEED ** 2
        p[j, 3, 3] += REACQUIRE_SPEED ** 2
    mu = (1 - REACQUIRE_MIX) * state.mu + REACQUIRE_MIX * INITIAL_WEIGHTS
    return MotionState(state.frame, state.x, p, mu / mu.sum(), state.height, state.evidence)
