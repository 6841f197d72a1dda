"""Memory versions of a world: history, download, push, edits, diff, revert.

Writes hold the world's lock and are refused while a job runs on the world (the job would
otherwise replace the world's state without the edit). A write naming a parent that is not
the current version is a conflict: the client must look at the newer version first.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import numpy as np
import torch
from fastapi import Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from spatia.memory import (
    MemoryFormatError,
    SpatialMemory,
    delete_ids,
    diff,
    merge,
    parse_snapshot,
    ply_bytes,
)

from ..errors import conflict, invalid, not_found
from ..schemas import (
    MAX_INT64,
    MemoryDiffOut,
    MemoryEditIn,
    MemoryEditOut,
    MemoryVersionOut,
    RevertIn,
    VersionOut,
)
from .common import service, v1_router

router = v1_router("memory")
SNAPSHOT_TYPE = "application/vnd.spatia.memory+safetensors"


def _points(path) -> int | None:
    """Point count from a snapshot's header (xyz's first dimension), without reading the tensors."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        return int(header["xyz"]["shape"][0])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _write_guard(svc, world_id: str, parent: int | None):
    """Open the world for a memory write (caller holds its lock); 409 if a job runs or `parent` is stale."""
    world = svc.storage.open(world_id)
    if svc.jobs.count_on_world(world_id, ("running",)):
        raise conflict(f"a job is running on world {world_id}; wait for it or cancel it before editing the memory")
    if parent is not None and parent != world.memory_version:
        raise conflict(f"parent {parent} is not the current memory version ({world.memory_version}); "
                       "fetch the current version and apply the edit to it", "parent")
    return world


@router.get("/worlds/{world_id}/memory", response_model=list[MemoryVersionOut])
def history(world_id: str, svc=Depends(service)) -> list[dict]:
    world = svc.storage.open(world_id)
    entries = []
    for entry in world.store.history():
        entries.append({
            "version": entry["version"], "parent": entry.get("parent"), "points": _points(world.store.path(entry["version"])),
            "message": entry.get("message", entry.get("error", "")), "created": entry.get("created"),
            "sha256": entry.get("sha256"),
        })
    return entries


@router.get("/worlds/{world_id}/memory/diff", response_model=MemoryDiffOut)
def memory_diff(world_id: str, from_version: Annotated[int, Query(alias="from", ge=1, le=MAX_INT64)],
                to_version: Annotated[int, Query(alias="to", ge=1, le=MAX_INT64)], svc=Depends(service)) -> dict:
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
    elif version.isdigit() and len(version) <= 18:
        number = int(version)
    else:
        raise invalid(f"version must be a number or 'latest', got {version!r}", "version")
    number, memory = svc.memory(world, number)  # verifies the file's hashes before it is served
    filename = f"{world_id}-v{number:06d}"
    if format == "ply":
        return Response(ply_bytes(memory), media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{filename}.ply"'})
    return FileResponse(world.store.path(number), media_type=SNAPSHOT_TYPE, filename=f"{filename}.safetensors")


@router.post("/worlds/{world_id}/memory", status_code=201, response_model=VersionOut,
             openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                 "schema": {"type": "string", "format": "binary"}}}}})
async def push_memory(world_id: str, request: Request,
                      parent: Annotated[int | None, Query(ge=1, le=MAX_INT64)] = None,
                      message: Annotated[str, Query(max_length=1000)] = "pushed",
                      svc=Depends(service)) -> dict:
    data = await request.body()
    if not data:
        raise invalid("the body must be a memory snapshot (.safetensors bytes)", "body")

    def push() -> int:
        try:
            memory, _ = parse_snapshot(data, "uploaded snapshot")
        except MemoryFormatError as err:
            raise invalid(str(err), "body") from None
        with svc.storage.lock(world_id):
            world = _write_guard(svc, world_id, parent)
            _, current = svc.memory(world, None)
            if memory.next_id < current.next_id:
                raise invalid(f"the snapshot's next_id ({memory.next_id}) is below the current version's "
                              f"({current.next_id}): point ids are never reused; give new points ids from "
                              f"{current.next_id} on", "body")
            return world.push_memory(memory, parent=world.memory_version, message=message)

    return {"version": await run_in_threadpool(push)}


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
def edit_memory(world_id: str, edit: MemoryEditIn, svc=Depends(service)) -> dict:
    with svc.storage.lock(world_id):
        world = _write_guard(svc, world_id, edit.parent)
        _, memory = svc.memory(world, edit.parent)
        edited, added = _apply_edit(memory, edit, max(world.frame_count - 1, 0))
        version = world.push_memory(edited, parent=edit.parent, message=edit.message)
    return {"version": version, "deleted": len(edit.delete_ids), "moved": len(edit.move_ids), "added": len(added),
            "added_ids": added}


@router.post("/worlds/{world_id}/memory/revert", status_code=201, response_model=VersionOut)
def revert_memory(world_id: str, body: RevertIn, svc=Depends(service)) -> dict:
    with svc.storage.lock(world_id):
        world = _write_guard(svc, world_id, None)
        _, memory = svc.memory(world, body.version)
        version = world.push_memory(memory, parent=world.memory_version, message=f"revert to version {body.version}")
    return {"version": version}
