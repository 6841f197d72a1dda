"""How the scene's object Empties direct the world's remembered objects (docs/objects.md), on
plain data (no Blender here): what a shot says in `objects` and `forget_objects`, which Empty
stands for which object, frame conversions between Blender frames and the world's video frames.

An Empty is described by a dict: `name`, `id` (the object it stands for), `label`, `copy_of`
(0, or the object a not-yet-generated copy comes from), `condition`, `reference`, `path`
(its keyed poses in the shot, `[{"frame", "position", "heading"}]`, empty when unanimated)
and `pose` (its current `{"position", "heading"}`).
"""

from __future__ import annotations

import math


def object_name(label: str, object_id: int) -> str:
    return f"{label or 'object'} {int(object_id)}"


def path_frames(key_frames, start: int, end: int) -> list[int]:
    """The frames of an Empty's path in the shot [start, end]: its keyed frames inside the range,
    plus the range's ends where keys lie beyond them (so the path holds Blender's pose there
    rather than the nearest inner key's)."""
    keys = sorted({int(round(f)) for f in key_frames})
    if not keys:
        return []
    inside = {f for f in keys if start <= f <= end}
    if keys[0] < start:
        inside.add(start)
    if keys[-1] > end:
        inside.add(end)
    return sorted(inside)


def pose_key(frame: int, position, heading: float) -> dict:
    return {"frame": int(frame), "position": [float(v) for v in position], "heading": float(heading)}


def primary_order(empties: list[dict], object_id: int) -> list[dict]:
    """The Empties carrying one id, the one that stands for the object first: the one named as
    the fetch named it, else the first by name ("car 3" before its duplicate "car 3.001")."""
    return sorted(empties, key=lambda e: (e["name"] != object_name(e.get("label", ""), object_id), e["name"]))


def group_by_id(empties: list[dict]) -> dict[int, list[dict]]:
    groups: dict[int, list[dict]] = {}
    for empty in empties:
        if int(empty.get("id", 0)) > 0:
            groups.setdefault(int(empty["id"]), []).append(empty)
    return {oid: primary_order(group, oid) for oid, group in groups.items()}


def direct_objects(empties: list[dict], known, *, start: int, next_id: int = 1) -> dict:
    """What the shot says about the world's objects.

    - every Empty of a known object directs it: its path (when keyed) and its switches;
    - a known id no Empty carries any more (the artist deleted it) is forgotten, unless a copy
      in this shot is made from it (then it is forgotten with the next shot, after the copy);
    - a further Empty with the same id (Shift+D) becomes a copy: a new id above every id seen,
      `copy_of` the original, its path (or its current pose at `start` when unanimated);
    - an Empty still carrying the id a copy was given (`copy_of` set, the id not known yet:
      a shot that did not make it) is sent as that copy again;
    - an Empty of an unknown id that is no pending copy is left out (reported as stale).

    Returns {"objects", "forget_objects", "assign": {empty name: (new id, copy_of)}, "stale"}.
    """
    known = {int(i) for i in known}
    groups = group_by_id(empties)
    high = max([next_id - 1, *known, *groups, *(int(e.get("copy_of", 0)) for e in empties)], default=0)
    objects, assign, stale, sources = [], {}, [], set()

    def direction(empty, object_id, copy_of=None):
        item = {"id": int(object_id), "path": list(empty.get("path") or []),
                "condition": bool(empty.get("condition", True)), "reference": bool(empty.get("reference", True))}
        if copy_of is not None:
            if not item["path"]:
                pose = empty["pose"]
                item["path"] = [pose_key(start, pose["position"], pose["heading"])]
            item["copy_of"] = int(copy_of)
            sources.add(int(copy_of))
        return item

    for oid in sorted(groups):
        first, *rest = groups[oid]
        pending = int(first.get("copy_of", 0))
        if oid in known:
            original = oid
            objects.append(direction(first, oid))
        elif pending in known:
            original = pending
            objects.append(direction(first, oid, copy_of=pending))
        else:
            stale.append(first["name"])
            original = None
        for duplicate in rest:
            if original is None:
                stale.append(duplicate["name"])
                continue
            high += 1
            objects.append(direction(duplicate, high, copy_of=original))
            assign[duplicate["name"]] = (high, original)
    forget = sorted(known - set(groups) - sources)
    return {"objects": objects, "forget_objects": forget, "assign": assign, "stale": stale}


def pending_forgets(known, empties: list[dict]) -> list[int]:
    """Known ids whose Empty the artist deleted."""
    return sorted({int(i) for i in known} - set(group_by_id(empties)))


# --- sampled paths ---------------------------------------------------------------------------
def heading_from_matrix(matrix, up) -> float:
    """The turn about the world's up axis (snapped, see `up_axis`) of a 4x4 or 3x3 object matrix:
    the angle of its first in-plane axis, as `sign * rotation_euler[index]` is for a single-axis
    Euler rotation."""
    index, sign = up_axis(up)
    i, j = (index + 1) % 3, (index + 2) % 3
    column = [float(matrix[r][i]) for r in range(3)]
    return sign * math.atan2(column[j], column[i])


def tangent_headings(positions, rest_heading: float, up, min_step: float = 1e-4) -> list[float]:
    """Headings along a path keyed by location only: the object turns as its path turns, keeping
    the heading it has at rest (`rest_heading`) where it first moves; held while it stands still."""
    index, sign = up_axis(up)
    i, j = (index + 1) % 3, (index + 2) % 3
    n = len(positions)
    angles: list[float | None] = []
    for k in range(max(n - 1, 0)):
        du, dv = positions[k + 1][i] - positions[k][i], positions[k + 1][j] - positions[k][j]
        angles.append(sign * math.atan2(dv, du) if math.hypot(du, dv) > min_step else None)
    moving = [a for a in angles if a is not None]
    if not moving:
        return [float(rest_heading)] * n
    offset = float(rest_heading) - moving[0]
    out, previous, unwrapped = [], moving[0], None
    for k in range(n):
        a = angles[k] if k < len(angles) else None
        if a is None and k == len(angles) and k > 0:
            a = angles[k - 1]
        if a is not None:
            unwrapped = a if unwrapped is None else unwrapped + (a - previous + math.pi) % (2 * math.pi) - math.pi
            previous = a
        out.append((unwrapped if unwrapped is not None else moving[0]) + offset)
    return out


def sampled_path(frames, matrices, up, *, rotation_from_path: bool, rest_heading: float = 0.0) -> list[dict]:
    """Path keys at every sampled frame from world matrices (4x4): the position, and the heading
    from the matrix, or from the path's tangent when only the location is animated."""
    positions = [[float(m[r][3]) for r in range(3)] for m in matrices]
    if rotation_from_path:
        headings = tangent_headings(positions, rest_heading, up)
    else:
        headings = [heading_from_matrix(m, up) for m in matrices]
    return simplify([pose_key(f, p, h) for f, p, h in zip(frames, positions, headings)])


def simplify(keys: list[dict], position_tolerance: float = 1e-3, heading_tolerance: float = 1e-3) -> list[dict]:
    """The fewest of `keys` (every frame's pose) from which straight lines between them give every
    dropped pose back within the tolerances: a held pose is one key, a straight stretch two, a
    curve as many as it needs."""
    if len(keys) < 3:
        return keys

    def error(k, a, b):
        t = (keys[k]["frame"] - keys[a]["frame"]) / (keys[b]["frame"] - keys[a]["frame"])
        dp = max(abs(keys[k]["position"][i] - (keys[a]["position"][i] + t * (keys[b]["position"][i] - keys[a]["position"][i])))
                 for i in range(3))
        turn = (keys[b]["heading"] - keys[a]["heading"] + math.pi) % (2 * math.pi) - math.pi
        dh = abs((keys[k]["heading"] - (keys[a]["heading"] + t * turn) + math.pi) % (2 * math.pi) - math.pi)
        return max(dp / position_tolerance, dh / heading_tolerance)

    kept, stack = {0, len(keys) - 1}, [(0, len(keys) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        worst = max(range(a + 1, b), key=lambda k: error(k, a, b))
        if error(worst, a, b) > 1.0:
            kept.add(worst)
            stack += [(a, worst), (worst, b)]
    out = [keys[k] for k in sorted(kept)]
    if len(out) == 2 and error(len(keys) - 1, 0, len(keys) - 1) <= 1.0 and all(
            max(abs(keys[k]["position"][i] - keys[0]["position"][i]) for i in range(3)) <= position_tolerance
            and abs(keys[k]["heading"] - keys[0]["heading"]) <= heading_tolerance for k in range(len(keys))):
        return out[:1]  # held all along: one key holds it
    return out


def next_copy_id(known, empty_ids, copies_of, next_id: int) -> int:
    """The id a new copy takes: above every id known, carried or copied, and at least `next_id`."""
    return max([int(next_id), *(int(i) + 1 for i in (*known, *empty_ids, *copies_of))])


# --- frames ----------------------------------------------------------------------------------
def to_video_frames(directions: list[dict], world_start: int) -> list[dict]:
    """Object directions with path frames as the world's video indices (0 = `world_start`)."""
    return [{**d, "path": [{**k, "frame": int(k["frame"]) - int(world_start)} for k in d.get("path", [])]}
            for d in directions]


def latest_pose(keys: list[dict]) -> tuple[list[float], float]:
    """(position, heading) of the object's latest key (by frame); the origin when it has none."""
    if not keys:
        return [0.0, 0.0, 0.0], 0.0
    key = max(keys, key=lambda k: int(k["frame"]))
    return [float(v) for v in key["position"]], float(key.get("heading", 0.0))


def up_axis(up) -> tuple[int, float]:
    """(Euler component, sign) that turns an Empty about the world's up axis (snapped to the
    nearest world axis: +Z, component 2, for a Blender world). A single-axis Euler rotation is a
    turn about that axis, so the heading is `sign * rotation_euler[component]`."""
    up = [float(v) for v in (up or (0.0, 0.0, 1.0))]
    index = max(range(3), key=lambda i: abs(up[i]))
    return index, (1.0 if up[index] >= 0 else -1.0)


def entry_frames(response: list[dict], world_start: int, *, leave_out=()) -> list[tuple[int, int, str]]:
    """(Blender frame, object id, label) of every re-entry the object-entries query returned,
    sorted by frame, without the objects in `leave_out` (deleted in Blender)."""
    skip = {int(i) for i in leave_out}
    marks = [(int(world_start) + int(f), int(o["id"]), str(o.get("label", "")))
             for o in response if int(o["id"]) not in skip for f in o.get("entries", [])]
    return sorted(marks)
