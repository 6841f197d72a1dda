"""Jobs: submit (idempotent with Idempotency-Key), list, get, follow (SSE), cancel, resume, files."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

from fastapi import Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse

from spatia.engine.plan import plan_rounds
from spatia.formats.shot import dump_shot
from spatia.engine.settings import shot_settings
from spatia.engine.world import WorldError

from ..errors import conflict, invalid
from ..files import media_type, resolve_job_file
from ..jobstore import FINAL
from ..schemas import ID_PATTERN, JobOut, JobSubmitIn
from .common import service, v1_router

router = v1_router("jobs")
EVENT_POLL_S = 0.2
KEEPALIVE_S = 15.0
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"


def _validate_shot(svc, body: JobSubmitIn) -> None:
    """Everything about the shot that can be checked before it is queued."""
    shot, world_id = body.shot, body.world_id
    if shot.world is not None and shot.world != world_id:
        raise invalid(f"shot.world ({shot.world!r}) must be empty or equal world_id", "shot.world")
    if shot.init is not None:
        raise invalid("shot.init is for local runs; on the service a world is initialised by POST /v1/worlds",
                      "shot.init")
    world = svc.storage.open(world_id)
    if (shot.width, shot.height) != (world.width, world.height):
        raise invalid(f"the shot is {shot.width}x{shot.height} but world {world_id} is {world.width}x{world.height}",
                      "shot.width")
    trajectory = shot.trajectory()
    done = world.frame_count
    if done >= len(trajectory):
        raise conflict(f"world {world_id} already has {done} frames; the shot's {len(trajectory)} frames add none",
                       "shot.frames")
    existing = world.cameras()
    if existing is not None and not existing.equals(trajectory.cameras[:done], atol=1e-6):
        raise conflict(f"the shot's first {done} cameras differ from the frames world {world_id} already generated; "
                       "a shot continues its world's video from frame 0", "shot.frames")
    plan = shot.rounds
    try:
        plan_rounds(len(trajectory), list(shot.prompts), first_round_frames=plan.first_round_frames,
                    round_frames=plan.round_frames, overlap=plan.overlap, start_frame=done)
    except ValueError as err:
        raise invalid(f"shot: {err}", "shot.prompts") from None
    try:
        shot.generation()  # the quality preset exists and gives this generator its steps
    except ValueError as err:
        raise invalid(f"shot: {err}", "shot.quality") from None
    if shot.objects or shot.forget_objects:  # checked again when the job runs (the objects may change)
        try:
            world.directed_objects(shot_settings(shot))
        except WorldError as err:
            raise invalid(f"shot: {err}", "shot.objects") from None
    svc.models.check_generator(shot.generator)


@router.post("/jobs", status_code=201, response_model=JobOut,
             responses={200: {"model": JobOut, "description": "the job an earlier request with this Idempotency-Key made"}})
def submit(body: JobSubmitIn, response: Response,
           idempotency_key: Annotated[str | None, Header(pattern=IDEMPOTENCY_KEY_PATTERN)] = None,
           svc=Depends(service)) -> dict:
    shot = dump_shot(body.shot)
    if idempotency_key is not None:
        previous = svc.jobs.by_key(idempotency_key, body.world_id, shot)
        if previous is not None:
            response.status_code = 200
            return previous
    _validate_shot(svc, body)
    with svc.storage.lock(body.world_id):  # serialised with the world's deletion (lock order: world, then store)
        if not svc.storage.exists(body.world_id):
            raise conflict(f"world {body.world_id} was deleted while the job was being submitted", "world_id")
        job, created = svc.jobs.submit(body.world_id, shot, idempotency_key)
    if created:
        svc.pool.wake()
    else:
        response.status_code = 200
    return job


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(world_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None, svc=Depends(service)) -> list[dict]:
    return svc.jobs.list(world_id)


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, svc=Depends(service)) -> dict:
    return svc.jobs.get(job_id)


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "one `data: <Job JSON>` event per change; ends after a final state"}})
async def events(job_id: str, request: Request, svc=Depends(service)):
    first = await run_in_threadpool(svc.jobs.get, job_id)  # 404 before the stream starts

    async def stream():
        job, last, last_sent = first, None, 0.0
        while True:
            text = json.dumps(job)
            if text != last:
                yield f"data: {text}\n\n"
                last, last_sent = text, time.monotonic()
                if job["status"] in FINAL:
                    return
            elif time.monotonic() - last_sent > KEEPALIVE_S:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
            if await request.is_disconnected():
                return
            await asyncio.sleep(EVENT_POLL_S)
            job = await run_in_threadpool(svc.jobs.get, job_id)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
def cancel(job_id: str, svc=Depends(service)) -> dict:
    job, running = svc.jobs.request_cancel(job_id)
    if running:
        svc.pool.cancel(job_id)
    return job


@router.post("/jobs/{job_id}/resume", response_model=JobOut)
def resume(job_id: str, svc=Depends(service)) -> dict:
    job = svc.jobs.get(job_id)
    if not svc.storage.exists(job["world_id"]):
        raise conflict(f"world {job['world_id']} of job {job_id} no longer exists")
    job = svc.jobs.resume(job_id)
    svc.pool.wake()
    return job


@router.get("/jobs/{job_id}/files/{path:path}", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}, "image/png": {}, "application/json": {}}}})
def job_file(job_id: str, path: str, svc=Depends(service)):
    job = svc.jobs.get(job_id)
    file = resolve_job_file(path, job, svc.config.jobs_dir / job_id, svc.config.worlds_dir / job["world_id"])
    return FileResponse(file, media_type=media_type(file))
