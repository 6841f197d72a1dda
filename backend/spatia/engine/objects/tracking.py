"""One round of object memory, above the pure parts: the artist's directions applied, every
object's poses predicted over the round, and what the round's instances teach the objects."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .associate import MIN_NEW_POINTS, absorb, associate, new_track
from .model import ObjectSet
from .motion import PosePath, predict
from .observe import Observation


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
        if d.copy_of is not None:  # the copy starts where its path does
            frames, position, heading = d.path()
            track = replace(track, key_frame=frames[:1], key_position=position[:1], key_heading=heading[:1],
                            seen=np.zeros((0, 2), np.int64))
        tracks.append(track)
    return objects.replaced(tracks)


def predict_all(objects: ObjectSet, frames, fps: float, *, directions=(), obstacles=None) -> dict[int, PosePath]:
    """Every object's poses over `frames`: its direction's path first, else its motion model."""
    by_id = {d.id: d for d in directions}
    return {t.id: predict(t, frames, fps, objects.up, path=by_id[t.id].path() if t.id in by_id else None,
                          obstacles=obstacles) for t in objects.objects}


@dataclass
class Learned:
    objects: ObjectSet
    instances: dict[int, int] = field(default_factory=dict)  # clip instance id -> object id
    observed: dict[int, PosePath] = field(default_factory=dict)  # object id -> observed poses this clip


def learn(objects: ObjectSet, paths: dict[int, PosePath], clip: dict[int, list[Observation]],
          labels: dict[int, str], voxel: float, fps: float) -> Learned:
    """Associate the clip's instances with the objects, update the matched ones and make new
    objects of the rest (those with enough points)."""
    tracks = list(objects.objects)
    match = associate(tracks, paths, clip, labels, objects.up, fps)
    updated, instances = [], {}
    for k, object_id in match.items():
        observations = clip[k]
        if object_id is None:
            if sum(len(o.xyz) for o in observations) < MIN_NEW_POINTS:
                continue
            object_id, objects = objects.new_id()
            track = new_track(object_id, labels.get(k, ""), observations, objects.up, voxel)
        else:
            track = absorb(objects.get(object_id), observations, paths.get(object_id), objects.up)
        updated.append(track)
        instances[k] = object_id
    objects = objects.replaced(updated)
    observed = {}
    for k, object_id in instances.items():
        frames = np.array([o.frame for o in clip[k]], np.int64)
        track = objects.get(object_id)
        keep = np.isin(track.key_frame, frames)
        observed[object_id] = PosePath(track.key_frame[keep], track.key_position[keep], track.key_heading[keep], "observed")
    return Learned(objects, instances, observed)
