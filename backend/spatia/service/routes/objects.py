"""A world's remembered moving objects (docs/objects.md): the table, each object's points and
best crop, the versioned file, forgetting one, and where objects come into view.

Reads verify the stored file's hashes: a corrupt or altered objects file is a 409 `conflict`
whose message names the file (`objects/v000001.safetensors: ...`): the request is fine, the
world's stored state is not, and no retry helps until the file is restored or a new version is
written. Forgetting (DELETE) follows the memory writes' rules (routes/memory.py): it names the
objects version it is based on (`If-Match` or `parent`; 428 without, 409 with `current_version`
when stale) and is refused while a job runs on the world.
"""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
from fastapi import Depends, Path, Query, Response

from spatia.engine.objects import Direction, ObjectSet, ObjectStoreError, in_view, predict_all
from spatia.engine.objects.store import snapshot_bytes
from spatia.engine.objects.summary import describe

from ..errors import ApiError, conflict, invalid, not_found, precondition_required, stale
from ..schemas import (
    MAX_INT64,
    ObjectEntriesIn,
    ObjectEntriesOut,
    ObjectPointsOut,
    ObjectsOut,
    VersionOut,
)
from .common import WholeNumber, service, v1_router
from .memory import IfMatch, base_version

router = v1_router("objects")
OBJECTS_TYPE = "application/vnd.spatia.objects+safetensors"
VersionQuery = Annotated[int | None, WholeNumber, Query(ge=1, le=MAX_INT64,
                                           description="an objects version (default: the current one)")]
ObjectIdPath = Annotated[int, WholeNumber, Path(ge=1, le=2**53, description="the object's id")]


def corrupt(world_id: str, err: ObjectStoreError) -> ApiError:
    return ApiError(409, "conflict", f"world {world_id}: the stored object memory cannot be read: objects/{err}",
                    "version")


def load_objects(world, world_id: str, version: int | None, *, meta: bool = False):
    """(version, objects[, metadata]) of a world, the file's hashes verified. Version None: the
    current one, or (None, an empty set) before any object. 404 for a version that does not
    exist, 409 naming the file for one that does not check out."""
    if version is None:
        version = world.objects_version
        if version is None:
            objects = world.objects()
            return (None, objects, {}) if meta else (None, objects)
    elif not world.object_store.path(version).is_file():
        raise not_found("objects version", version)
    try:
        objects, metadata = world.object_store.load_with_meta(version)
    except ObjectStoreError as err:
        raise corrupt(world_id, err) from None
    return (version, objects, metadata) if meta else (version, objects)


def _track(objects: ObjectSet, version: int | None, object_id: int):
    try:
        return objects.get(object_id)
    except KeyError:
        where = f"objects version {version}" if version is not None else "the world (it remembers no objects yet)"
        raise ApiError(404, "not_found", f"object {object_id} does not exist in {where}; "
                       f"it remembers {objects.ids() or 'none'}") from None


@router.get("/worlds/{world_id}/objects", response_model=ObjectsOut)
def list_objects(world_id: str, version: VersionQuery = None, svc=Depends(service)) -> dict:
    world = svc.storage.open(world_id)
    number, objects, meta = load_objects(world, world_id, version, meta=True)
    memory_version = meta.get("memory_version") or None
    return {"version": number, "memory_version": None if memory_version is None else int(memory_version),
            "up": [float(v) for v in objects.up], "objects": [describe(t, world.fps) for t in objects.objects]}


@router.get("/worlds/{world_id}/objects/file", response_class=Response,
            responses={200: {"content": {OBJECTS_TYPE: {}}}})
def objects_file(world_id: str, version: VersionQuery = None, svc=Depends(service)):
    world = svc.storage.open(world_id)
    number, objects, meta = load_objects(world, world_id, version, meta=True)  # every hash verified
    if number is None:
        raise not_found("objects version", "current (the world remembers no objects yet)")
    # a standalone file: the store keeps points and crops in blobs shared between versions
    kept = {k: meta[k] for k in ("version", "parent", "memory_version", "message", "created") if k in meta}
    return Response(snapshot_bytes(objects, kept), media_type=OBJECTS_TYPE, headers={
        "Content-Disposition": f'attachment; filename="{world_id}-objects-v{number:06d}.safetensors"'})


@router.get("/worlds/{world_id}/objects/{object_id}/points", response_model=ObjectPointsOut)
def object_points(world_id: str, object_id: ObjectIdPath, version: VersionQuery = None, svc=Depends(service)) -> dict:
    world = svc.storage.open(world_id)
    number, objects = load_objects(world, world_id, version)
    track = _track(objects, number, object_id)
    return {"id": track.id, "version": number, "xyz": track.xyz.astype(np.float64).tolist(),
            "rgb": track.rgb.astype(np.int64).tolist()}


@router.get("/worlds/{world_id}/objects/{object_id}/crop.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "the best crop, its mask as alpha"}})
def object_crop(world_id: str, object_id: ObjectIdPath, version: VersionQuery = None, svc=Depends(service)):
    from PIL import Image

    world = svc.storage.open(world_id)
    number, objects = load_objects(world, world_id, version)
    crop = _track(objects, number, object_id).best_crop()
    if crop is None:
        raise ApiError(404, "not_found", f"object {object_id} has no crop in objects version {number}")
    rgba = np.concatenate([crop.rgb, np.where(crop.mask, 255, 0).astype(np.uint8)[..., None]], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png")


@router.delete("/worlds/{world_id}/objects/{object_id}", status_code=201, response_model=VersionOut)
def forget_object(world_id: str, object_id: ObjectIdPath,
                  parent: Annotated[int | None, WholeNumber, Query(ge=1, le=MAX_INT64, description="the current objects version "
                                                      "(instead of If-Match)")] = None,
                  if_match: IfMatch = None, svc=Depends(service)) -> dict:
    base = base_version(parent, if_match, "objects")
    with svc.storage.lock(world_id):
        world = svc.storage.open(world_id)
        if svc.jobs.count_on_world(world_id, ("running",)):
            raise conflict(f"a job is running on world {world_id}; wait for it or cancel it before forgetting objects")
        current = world.objects_version
        if base is None:
            raise precondition_required(current, "objects")
        if current is None:
            raise ApiError(404, "not_found", f"object {object_id} does not exist: world {world_id} remembers no "
                           "objects yet")
        if base != current:
            raise stale(base, current, what="objects")
        _, objects = load_objects(world, world_id, current)
        _track(objects, current, object_id)
        version = world.save_objects(objects.without([object_id]), parent=current,
                                     message=f"forgot object {object_id}")
    return {"version": version}


@router.post("/worlds/{world_id}/query/object-entries", response_model=ObjectEntriesOut)
def object_entries(world_id: str, query: ObjectEntriesIn, svc=Depends(service)) -> dict:
    """Per object: whether its predicted place is in view of each camera, and the video frames
    where it comes into view (see docs/http-api.md for the rule)."""
    cameras = query.cameras.to_cameras()
    world = svc.storage.open(world_id)
    number, objects = load_objects(world, world_id, query.version)
    known = set(objects.ids())
    for i, direction in enumerate(query.objects):
        if direction.id not in known:
            raise invalid(f"object {direction.id} does not exist in objects version {number}; it remembers "
                          f"{sorted(known) or 'none'}", f"objects[{i}].id")
    if not len(objects):
        return {"version": number, "objects": []}
    directions = [Direction.keyed(d.id, d.path, condition=d.condition, reference=d.reference) for d in query.objects]
    obstacles = None
    if world.memory_version is not None:
        _, memory = svc.memory(world, None)
        obstacles = memory.xyz.numpy()
    frames = query.start_frame + np.arange(len(cameras), dtype=np.int64)
    out = []
    with svc.heavy("the object-entries query"):
        paths = predict_all(objects, frames, world.fps, directions=directions, obstacles=obstacles)
        for track in objects.objects:
            visible = in_view(track, paths[track.id], cameras, objects.up)
            out.append({"id": track.id, "label": track.label, "source": paths[track.id].source,
                        "visible": visible.tolist(), "entries": entries(visible, query.start_frame, track)})
    return {"version": number, "objects": out}


def entries(visible: np.ndarray, start_frame: int, track) -> list[int]:
    """The video frames where the object's predicted place comes into view: every camera that sees
    it after one that did not, and the first camera if it sees it and the object was not seen in
    the frame before (start_frame - 1); an object the video saw up to the frame before it is
    already in view, not entering it."""
    visible = np.asarray(visible, bool)
    index = np.flatnonzero(visible[1:] & ~visible[:-1]) + 1
    found = [int(start_frame + i) for i in index]
    before = start_frame - 1
    seen_before = any(first <= before < first + count for first, count in track.seen.tolist())
    if len(visible) and visible[0] and not seen_before:
        found.insert(0, int(start_frame))
    return found
