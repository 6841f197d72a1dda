"""Memory versions of a world: history, download, push, edits, diff, revert.

Writes hold the world's lock and are refused while a job runs on the world (the job would
otherwise replace the world's state without the edit). Every write (push, edit, revert) names
the version it is based on, as `parent` or `If-Match: "<version>"`: without it the answer is 428,
and a base that is not the current version is a 409 whose body names `current_version`, so
two clients never silently overwrite each other's work.

A pushed snapshot is streamed to a temporary file (never held whole on the event loop),
checked as untrusted input (spatia.engine.memory.checks: exact dtypes and shapes, next_id, voxel
size, finite values) and parsed in a worker thread.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Literal

import numpy as np
import torch
from fastapi import Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from spatia.engine.memory import (
    MemoryFormatError,
    SpatialMemory,
    delete_ids,
    diff,
    merge,
    ply_bytes,
)

from spatia.engine.memory.checks import SnapshotRejected, check_memory, read_snapshot_file

from ..errors import ApiError, conflict, invalid, not_found, precondition_required, stale
from ..schemas import (
    MAX_INT64,
    MemoryDiffOut,
    MemoryEditIn,
    MemoryEditOut,
    MemoryVersionOut,
    RevertIn,
    VersionOut,
)
from .common import WholeNumber, service, v1_router

router = v1_router("memory")
SNAPSHOT_TYPE = "application/vnd.spatia.memory+safetensors"
PUSH_TYPES = ("application/octet-stream", SNAPSHOT_TYPE)
VERSION_TEXT = re.compile(r"[0-9]{1,18}")
IF_MATCH = re.compile(r'\s*(?:W/)?"?([0-9]{1,18})"?\s*')
IfMatch = Annotated[str | None, Header(alias="If-Match", description='the base version, `"3"` or `3` '
                                       "(instead of `parent`)", max_length=100)]


def base_version(parent: int | None, if_match: str | None, what: str = "memory") -> int | None:
    """The version a write is based on, from `parent` and/or `If-Match` (both: they must agree).
    `what`: the versioned thing written ("memory", "objects")."""
    header = None
    if if_match is not None:
        match = IF_MATCH.fullmatch(if_match)
        if match is None:
            raise invalid(f'If-Match must be a{"n" if what[0] in "aeiou" else ""} {what} version, "3" or 3; '
                          f"got {if_match!r}", "If-Match")
        header = int(match.group(1))
    if parent is not None and header is not None and parent != header:
        raise invalid(f"parent {parent} and If-Match {header} disagree", "parent")
    return parent if parent is not None else header


def _write_guard(svc, world_id: str, parent: int | None):
    """Open the world for a memory write (caller holds its lock): 428 without a base version,
    409 if a job runs or the base is stale (the body names the current version)."""
    world = svc.storage.open(world_id)
    if svc.jobs.count_on_world(world_id, ("running",)):
        raise conflict(f"a job is running on world {world_id}; wait for it or cancel it before editing the memory")
    current = world.memory_version
    if parent is None:
        raise precondition_required(current)
    if parent != current:
        raise stale(parent, current)
    return world


@router.get("/worlds/{world_id}/memory", response_model=list[MemoryVersionOut])
def history(world_id: str, svc=Depends(service)) -> list[dict]:
    world = svc.storage.open(world_id)
    entries = []
    for entry in world.store.history():
        entries.append({
            "version": entry["version"], "parent": entry.get("parent"), "points": entry.get("points"),
            "message": entry.get("message", entry.get("error", "")), "created": entry.get("created"),
            "sha256": entry.get("sha256"),
        })
    return entries


@router.get("/worlds/{world_id}/memory/diff", response_model=MemoryDiffOut)
def memory_diff(world_id: str, from_version: Annotated[int, WholeNumber, Query(alias="from", ge=1, le=MAX_INT64)],
                to_version: Annotated[int, WholeNumber, Query(alias="to", ge=1, le=MAX_INT64)],
                svc=Depends(service)) -> dict:
    world = svc.storage.open(world_id)
    _, old = svc.memory(world, from_version)
    _, new = svc.memory(world, to_version)
    changes = diff(old, new)
    return {"deleted": changes.deleted.tolist(), "moved": changes.moved.tolist(), "added": changes.added.tolist()}


@router.get("/worlds/{world_id}/memory/{version}",
            responses={200: {"content": {SNAPSHOT_TYPE: {}, "application/octet-stream": {}}}})
def get_memory(world_id: str, version: str, format: Literal["safetensors", "ply"] = "safetensors",
               svc=Depends(service)):
    world = svc.storage.open(world_id)
    if version == "latest":
        number = world.memory_version
        if number is None:
            raise not_found("memory version", version)
    elif VERSION_TEXT.fullmatch(version):  # ASCII digits only: str.isdigit() accepts "²", int() does not
        number = int(version)
    else:
        raise invalid(f"version must be a number or 'latest', got {version!r}", "version")
    number, memory = svc.memory(world, number)  # verifies the file's hashes before it is served
    filename = f"{world_id}-v{number:06d}"
    if format == "ply":
        if not len(memory):
            raise conflict(f"memory version {number} holds no points; there is nothing to export as PLY", "version")
        return Response(ply_bytes(memory), media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{filename}.ply"'})
    return FileResponse(world.store.snapshot_file(number), media_type=SNAPSHOT_TYPE, filename=f"{filename}.safetensors")


@router.post("/worlds/{world_id}/memory", status_code=201, response_model=VersionOut,
             openapi_extra={"requestBody": {"required": True, "content": {
                 t: {"schema": {"type": "string", "format": "binary"}} for t in PUSH_TYPES}}})
async def push_memory(world_id: str, request: Request,
                      parent: Annotated[int | None, WholeNumber, Query(ge=1, le=MAX_INT64)] = None,
                      message: Annotated[str, Query(max_length=1000)] = "pushed",
                      if_match: IfMatch = None,
                      svc=Depends(service)) -> dict:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in PUSH_TYPES:
        raise ApiError(415, "unsupported_media_type", f"the body must be a memory snapshot sent as {PUSH_TYPES[0]} "
                       f"or {PUSH_TYPES[1]}, got {media or 'no Content-Type'!r}", "Content-Type")
    base = base_version(parent, if_match)
    world = svc.storage.open(world_id)  # 404, or 428 without a base version, before reading the body
    if base is None:
        raise precondition_required(world.memory_version)
    temp = svc.config.tmp_dir / f".push-{secrets.token_hex(8)}.tmp"
    try:
        size = 0
        with open(temp, "wb") as handle:  # streamed to disk: the event loop never holds the whole body
            async for chunk in request.stream():
                handle.write(chunk)
                size += len(chunk)
        if not size:
            raise invalid("the body must be a memory snapshot (.safetensors bytes)", "body")
        return {"version": await run_in_threadpool(_push, svc, world_id, temp, base, message)}
    finally:
        temp.unlink(missing_ok=True)


def _push(svc, world_id: str, temp, base: int | None, message: str) -> int:
    try:  # tensor by tensor from the file: the body is never held whole in memory
        memory, _ = read_snapshot_file(temp, "uploaded snapshot")
    except SnapshotRejected:
        raise
    except MemoryFormatError as err:
        raise invalid(str(err), "body") from None
    with svc.storage.lock(world_id):
        world = _write_guard(svc, world_id, base)
        check_memory(memory, voxel_size=float(world.state["voxel_size"]))
        floor = _next_id_floor(svc, world)
        if memory.next_id < floor:
            raise invalid(f"the snapshot's next_id ({memory.next_id}) is below the current version's "
                          f"({floor}): point ids are never reused; give new points ids from {floor} on", "next_id")
        return world.push_memory(memory, parent=world.memory_version, message=message)


def _next_id_floor(svc, world) -> int:
    """The current version's next_id: from its verified memory, or, where that version is damaged
    (a push is how it is repaired), from the highest next_id any readable header records."""
    try:
        return svc.memory(world, None)[1].next_id
    except ApiError as err:
        if err.type != "stored_damage":
            raise
    floor = 0
    for version in world.store.versions():
        try:
            floor = max(floor, int(world.store.metadata(version).get("next_id") or 0))
        except (MemoryFormatError, OSError):
            continue
    return floor


def _apply_edit(memory: SpatialMemory, edit: MemoryEditIn, frame: int) -> tuple[SpatialMemory, list[int]]:
    if not (edit.delete_ids or edit.move_ids or edit.add_xyz):
        raise invalid("the edit changes nothing: give delete_ids, move_ids or add_xyz", "delete_ids")
    if edit.delete_ids:
        try:
            memory = delete_ids(memory, edit.delete_ids, missing_ok=False)
        except MemoryFormatError as err:
            raise invalid(f"delete_ids: {err}", "delete_ids") from None
    if edit.move_ids:
        if len(edit.move_ids) != len(edit.move_xyz):
            raise invalid(f"{len(edit.move_ids)} move_ids for {len(edit.move_xyz)} move_xyz", "move_xyz")
        if len(set(edit.move_ids)) != len(edit.move_ids):
            raise invalid("move_ids has duplicates", "move_ids")
        try:
            positions = memory.indices_of(edit.move_ids)
        except MemoryFormatError as err:
            raise invalid(f"move_ids: {err} (deleted, or not in the parent version)", "move_ids") from None
        xyz = memory.xyz.clone()
        xyz[positions] = torch.tensor(edit.move_xyz, dtype=torch.float32)
        if not torch.isfinite(xyz).all():
            raise invalid("move_xyz is out of float32 range", "move_xyz")
        memory = memory.replace(xyz=xyz)
    elif edit.move_xyz:
        raise invalid("move_xyz given without move_ids", "move_xyz")
    added: list[int] = []
    if edit.add_xyz:
        if edit.add_rgb is not None and len(edit.add_rgb) != len(edit.add_xyz):
            raise invalid(f"{len(edit.add_rgb)} add_rgb for {len(edit.add_xyz)} add_xyz", "add_rgb")
        xyz = np.asarray(edit.add_xyz, dtype=np.float64)
        if not np.isfinite(xyz.astype(np.float32)).all():
            raise invalid("add_xyz is out of float32 range", "add_xyz")
        rgb = None if edit.add_rgb is None else np.asarray(edit.add_rgb, dtype=np.uint8)
        new = SpatialMemory.from_points(xyz.astype(np.float32), rgb, voxel_size=memory.voxel_size, frame=frame)
        added = list(range(memory.next_id, memory.next_id + len(new)))
        memory = merge(memory, new)
    elif edit.add_rgb:
        raise invalid("add_rgb given without add_xyz", "add_rgb")
    return memory, added


@router.post("/worlds/{world_id}/memory/edits", status_code=201, response_model=MemoryEditOut)
def edit_memory(world_id: str, edit: MemoryEditIn, if_match: IfMatch = None, svc=Depends(service)) -> dict:
    base = base_version(edit.parent, if_match)
    with svc.storage.lock(world_id):
        world = _write_guard(svc, world_id, base)
        _, memory = svc.memory(world, base)
        edited, added = _apply_edit(memory, edit, max(world.frame_count - 1, 0))
        version = world.push_memory(edited, parent=base, message=edit.message)
    return {"version": version, "deleted": len(edit.delete_ids), "moved": len(edit.move_ids), "added": len(added),
            "added_ids": added}


@router.post("/worlds/{world_id}/memory/revert", status_code=201, response_model=VersionOut)
def revert_memory(world_id: str, body: RevertIn, if_match: IfMatch = None, svc=Depends(service)) -> dict:
    base = base_version(body.parent, if_match)
    with svc.storage.lock(world_id):
        world = _write_guard(svc, world_id, base)
        _, memory = svc.memory(world, body.version)
        version = world.push_memory(memory, parent=world.memory_version, message=f"revert to version {body.version}")
    return {"version": version}
