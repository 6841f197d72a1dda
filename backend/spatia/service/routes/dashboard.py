"""What the dashboard reads beyond the core API: compact job rows and their live stream, a job's
live stream with its denoising previews, points as binary arrays, round records, frames and
cameras of a world, and the machine's load. Every route here takes the same token (or the
dashboard's cookie) as the rest of /v1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from ..errors import invalid, not_found
from ..jobstore import FINAL
from ..pointcloud import encode_chunk
from ..schemas import ID_PATTERN
from .common import service, v1_router

router = v1_router("dashboard")
LIST_POLL_S = 0.5
JOB_POLL_S = 0.25
PREVIEW_POLL_S = 0.05
KEEPALIVE_S = 15.0
MAX_POINT_CHUNK = 2_000_000
THUMB_SIZE = 160
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _sse(event: str, data) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


# --- jobs --------------------------------------------------------------------------------------
MAX_RUN_RECORDS = 300  # the newest records of runs outside the service that are listed


class RunsFolder:
    """The records of runs outside the service on this machine (spatia.formats.runs)."""

    def rows(self) -> list[dict]:
        from spatia.formats.runs import read_runs, runs_dir

        folder = runs_dir()
        if folder is None or not folder.is_dir():
            return []
        rows = []
        for record in read_runs(folder, MAX_RUN_RECORDS):
            world = record.get("world") or ""
            rows.append({"id": record["id"], "world_id": os.path.basename(world.rstrip("/")) or world,
                         "status": record["status"], "stage": record["stage"], "fraction": record["fraction"],
                         "eta_s": record["eta_s"], "created": record["created"], "started": record["started"],
                         "finished": record["finished"], "attempts": 1, "shot": record["name"], "generator": None,
                         "error": record["error"], "origin": record["origin"], "host": record.get("host"),
                         "path": world})
        return rows


_runs = RunsFolder()


def _all_rows(svc) -> list[dict]:
    return [{**row, "origin": "service"} for row in svc.jobs.rows()] + _runs.rows()


@router.get("/dashboard/jobs", summary="Every job as a compact row (no messages, no frame lists): the service's "
                                        "(origin `service`) and the runs outside it on this machine (origin `cli`, "
                                        "`batch`, `ray`, ...; read-only)")
def job_rows(svc=Depends(service)) -> list[dict]:
    return _all_rows(svc)


@router.get("/dashboard/jobs/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}},
            summary="`event: rows` with every job first, then the rows that changed")
async def job_rows_events(request: Request, svc=Depends(service)):
    async def stream():
        known: dict[str, dict] = {}
        last_sent = 0.0
        while True:
            rows = await run_in_threadpool(_all_rows, svc)
            changed = [row for row in rows if known.get(row["id"]) != row]
            if changed or not known:
                known = {row["id"]: row for row in rows}
                yield _sse("rows", changed)
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent > KEEPALIVE_S:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
            if await request.is_disconnected():
                return
            await asyncio.sleep(LIST_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/jobs/{job_id}/live", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}},
            summary="`event: job` (the Job) on every change and `event: preview` (preview info) as soon "
                    "as a denoising preview is computed; ends after a final state")
async def job_live(job_id: str, request: Request, svc=Depends(service)):
    first = await run_in_threadpool(svc.jobs.get, job_id)  # 404 before the stream starts

    async def stream():
        job, last_job, last_seq, last_sent, next_poll = first, None, None, 0.0, 0.0
        while True:
            now = time.monotonic()
            info = svc.previews.info(job_id)
            if info is not None and info["seq"] != last_seq:
                last_seq = info["seq"]
                yield _sse("preview", info)
                last_sent = now
            if now >= next_poll:
                if last_job is not None:
                    job = await run_in_threadpool(svc.jobs.get, job_id)
                text = json.dumps(job)
                if text != last_job:
                    last_job = text
                    yield f"event: job\ndata: {text}\n\n"
                    last_sent = now
                    if job["status"] in FINAL:
                        return
                next_poll = now + JOB_POLL_S
            if now - last_sent > KEEPALIVE_S:
                yield ": keepalive\n\n"
                last_sent = now
            if await request.is_disconnected():
                return
            await asyncio.sleep(PREVIEW_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/jobs/{job_id}/preview", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "the latest denoising preview: the "
                             "latent's frames as one contact sheet (headers X-Preview-Step, -Steps, -Frames, "
                             "-Columns, -Seq)"}})
def job_preview(job_id: str, svc=Depends(service)):
    svc.jobs.get(job_id)  # 404 for an unknown job
    entry = svc.previews.png(job_id)
    if entry is None:
        raise not_found("preview of job", job_id)
    info, data = entry
    headers = {f"X-Preview-{key.title()}": str(info[key]) for key in ("step", "steps", "frames", "columns", "seq")}
    headers["Cache-Control"] = "no-store"
    return Response(data, media_type="image/png", headers=headers)


@router.get("/jobs/{job_id}/shot", summary="The job's world and shot, as POST /v1/jobs takes them (to run it again)")
def job_shot(job_id: str, svc=Depends(service)) -> dict:
    job = svc.jobs.internal(job_id)
    return {"world_id": job["world_id"], "shot": json.loads(job["shot"])}


@router.get("/jobs/{job_id}/log", summary="The service log's lines about this job")
def job_log(job_id: str, svc=Depends(service), limit: Annotated[int, Query(ge=1, le=2000)] = 300) -> dict:
    svc.jobs.get(job_id)
    lines = []
    for path in sorted(svc.config.logs_dir.glob("service.log*"), key=lambda p: p.stat().st_mtime):
        with open(path, errors="replace") as handle:
            lines.extend(line.rstrip("\n") for line in handle if job_id in line)
    return {"lines": lines[-limit:]}


# --- worlds ------------------------------------------------------------------------------------
@router.get("/worlds/{world_id}/points", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}, "description":
                             "little-endian: magic `SPC1`, uint32 total, uint32 offset, uint32 count, then float32 "
                             "xyz [count*3], then uint8 rgb [count*3]; points in a fixed level-of-detail order, so "
                             "any prefix is an even sample (fetch the first chunk, draw, fetch the rest)"}})
def points(world_id: str, svc=Depends(service), version: Annotated[int | None, Query(ge=1)] = None,
           offset: Annotated[int, Query(ge=0)] = 0,
           limit: Annotated[int, Query(ge=1, le=MAX_POINT_CHUNK)] = 250_000):
    world = svc.storage.open(world_id)
    number, memory = svc.memory(world, version)  # verified when read from disk, then kept for a few reuses
    xyz, rgb = memory.xyz.detach().cpu().numpy(), memory.rgb.detach().cpu().numpy()
    return Response(encode_chunk(xyz, rgb, offset, limit), media_type="application/octet-stream",
                    headers={"Cache-Control": "private, max-age=3600", "X-Memory-Version": str(number)})


def _rounds_dir(svc, world_id: str):
    return svc.storage.open(world_id).root / "rounds"


@router.get("/worlds/{world_id}/rounds", summary="Every finished round's record (timings, coverage, "
                                                  "retrieval, loop closure, objects)")
def rounds(world_id: str, svc=Depends(service)) -> list[dict]:
    folder = _rounds_dir(svc, world_id)
    records = []
    for path in sorted(folder.glob("[0-9][0-9][0-9][0-9]/round.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return records


FRAME_NAME = re.compile(r"^\d{1,9}$")


@router.get("/worlds/{world_id}/frames/{index}", response_class=Response,
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
            summary="A generated frame; `thumb=true`: a small JPEG of it")
def frame(world_id: str, index: str, svc=Depends(service), thumb: bool = False):
    if not FRAME_NAME.fullmatch(index):
        raise invalid(f"frame index must be a number, got {index!r}", "index")
    world = svc.storage.open(world_id)
    path = world.root / "frames" / f"{int(index):06d}.png"
    if not path.is_file():
        raise not_found("frame", int(index))
    if not thumb:
        return Response(path.read_bytes(), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
    import io

    from PIL import Image

    with Image.open(path) as image:
        image.thumbnail((THUMB_SIZE, THUMB_SIZE))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=80)
    return Response(buffer.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/worlds/{world_id}/cameras", summary="The cameras of the world's generated frames")
def cameras(world_id: str, svc=Depends(service)) -> dict:
    world = svc.storage.open(world_id)
    cams = world.cameras()
    if cams is None:
        return {"width": world.width, "height": world.height, "intrinsics": [], "w2c": []}
    return {"width": cams.width, "height": cams.height, "intrinsics": cams.intrinsics.tolist(),
            "w2c": cams.w2c.tolist()}


# --- the machine -------------------------------------------------------------------------------
@router.get("/machine", summary="CPU, memory, the data folder's disk, and the GPU when there is one")
def machine(svc=Depends(service)) -> dict:
    import psutil

    memory = psutil.virtual_memory()
    disk = shutil.disk_usage(svc.config.data_dir)
    out = {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "ram_total_gb": round(memory.total / 2**30, 2),
        "ram_used_gb": round((memory.total - memory.available) / 2**30, 2),
        "disk_total_gb": round(disk.total / 2**30, 2),
        "disk_free_gb": round(disk.free / 2**30, 2),
        "data_dir": str(svc.config.data_dir),
        "gpu": _gpu_state(),
        "queue_depth": svc.jobs.queue_depth(),
        "loaded_models": svc.models.loaded(),
        "time": time.time(),
    }
    return out


def _gpu_state() -> dict | None:
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    try:
        utilisation = torch.cuda.utilization()
    except Exception:  # needs NVML (pynvml); the rest is still worth showing
        utilisation = None
    return {"name": torch.cuda.get_device_name(0), "vram_total_gb": round(total / 2**30, 2),
            "vram_used_gb": round((total - free) / 2**30, 2), "utilisation_percent": utilisation}


__all__ = ["router", "ID_PATTERN"]
