"""Condition: what the generator is shown of the world along the round's cameras.

The memory rendered along the cameras (the projection, its depth and the holes where the memory
knows nothing), with the remembered moving objects drawn in at their predicted poses."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.memory import SpatialMemory
from spatia.engine.objects import ObjectSet, PosePath, draw_objects, predict_all
from spatia.engine.render import control_voxel_size, render_control, render_memory, voxel_downsample


@dataclass(frozen=True, eq=False)
class Conditioning:
    """rgb uint8 [F,H,W,3], depth float32 [F,H,W] (0 in holes), hole bool [F,H,W] of a round's
    frames; the objects it drew (their predicted paths by id, the tracks drawn) and object_ids int32
    [F,H,W] (the object that won each pixel, 0 none) or None when none was drawn."""

    rgb: np.ndarray
    depth: np.ndarray
    hole: np.ndarray
    object_ids: np.ndarray | None = None
    objects: ObjectSet | None = None
    paths: dict[int, PosePath] = field(default_factory=dict)
    conditioned: list = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return float((~self.hole).mean())


def render_projection(memory: SpatialMemory, cameras: Cameras, device=None):
    """The memory's z-buffer render along `cameras`: rgb, depth (0 in holes), hole (numpy)."""
    projection = render_memory(memory, cameras, device=device)
    rgb = projection.rgb.cpu().numpy()
    depth = projection.depth.masked_fill_(~projection.mask, 0.0).cpu().numpy()  # empty pixels hold +inf
    return rgb, depth, ~projection.mask.cpu().numpy()


def condition(memory: SpatialMemory, cameras: Cameras, frames: np.ndarray, fps: float, *,
              objects: ObjectSet | None = None, directions=(), device=None, timings: dict | None = None):
    """The projection of `memory` along `cameras` (video frames `frames`), with `objects` (None:
    object memory off) predicted over those frames and the ones switched to condition drawn in."""
    rgb, depth, hole = render_projection(memory, cameras, device)
    started = time.perf_counter()
    paths, conditioned, object_ids = {}, [], None
    if objects is not None:
        paths = predict_all(objects, frames, fps, directions=directions, obstacles=memory.xyz.detach().cpu().numpy())
        conditioned = [o for o in objects.objects if o.condition]
        if conditioned:
            object_ids = draw_objects(rgb, depth, hole, conditioned, paths, cameras, objects.up, device=device)
    if timings is not None:
        timings["objects_s"] = timings.get("objects_s", 0.0) + time.perf_counter() - started
    return Conditioning(rgb, depth, hole, object_ids, objects, paths, conditioned)


def recondition(memory: SpatialMemory, cameras: Cameras, objects: ObjectSet | None, records: list[dict]):
    """A past round's Conditioning recomputed from its record: the objects it drew (`records`: its
    object records; those switched to condition with a prediction) at the poses it predicted."""
    rgb, depth, hole = render_projection(memory, cameras)
    shown = [r for r in records if r["condition"] and r["predicted"]]
    ids = np.zeros(hole.shape, np.int32)
    if shown and objects is not None:
        paths = {r["id"]: PosePath.from_dict(r["predicted"], r["source"]) for r in shown}
        ids = draw_objects(rgb, depth, hole, [objects.get(i) for i in paths], paths, cameras, objects.up)
    return Conditioning(rgb, depth, hole, ids)


def control_first_frame(memory: SpatialMemory, camera: Cameras) -> np.ndarray:
    """The memory rendered at `camera` as the control video's first frame (round 0's voxel size)."""
    xyz, rgb = memory.xyz, memory.rgb
    if len(xyz):
        xyz, rgb = voxel_downsample(xyz, rgb, control_voxel_size(0))
    return render_control(xyz, rgb, camera).to_uint8()[0][0]
