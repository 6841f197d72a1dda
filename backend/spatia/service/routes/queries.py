"""Spatial-memory queries: render, coverage, points in a box, ray casts."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.responses import FileResponse

from ..queries import coverage_of, npz_bytes, points_in_box, raycast, render_arrays
from ..schemas import (
    BoxQueryIn,
    BoxQueryOut,
    CoverageOut,
    CoverageQueryIn,
    RaycastIn,
    RaycastOut,
    RenderQueryIn,
    RenderQueryOut,
)
from .common import WholeNumber, service, v1_router

router = v1_router("queries")
NPZ_TYPE = "application/octet-stream"


@router.post("/worlds/{world_id}/query/render", response_model=RenderQueryOut,
             responses={200: {"content": {NPZ_TYPE: {}},
                              "description": "JSON, or with `Accept: application/octet-stream` an .npz of "
                                             "rgb u8 [F,H,W,3], depth f32 [F,H,W] (0 = empty), mask bool [F,H,W]"}})
def render(world_id: str, query: RenderQueryIn, request: Request, svc=Depends(service)):
    cameras = query.cameras.to_cameras()
    world = svc.storage.open(world_id)
    _, memory = svc.memory(world, query.version)
    with svc.heavy("the render"):
        arrays = render_arrays(memory, cameras)
    if NPZ_TYPE in request.headers.get("accept", ""):
        return Response(npz_bytes(arrays), media_type=NPZ_TYPE)
    token = svc.renders.put(arrays["rgb"])
    prefix = f"/v1/worlds/{world_id}/query/render/{token}"
    return {"frames": len(cameras), "coverage": coverage_of(arrays["mask"]), "token": token,
            "urls": [f"{prefix}/{i}.png" for i in range(len(cameras))]}


@router.get("/worlds/{world_id}/query/render/{token}/{index}.png", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}}}})
def rendered_frame(world_id: str, token: str, index: Annotated[int, WholeNumber], svc=Depends(service)):
    svc.storage.path(world_id)
    return FileResponse(svc.renders.path(token, index), media_type="image/png")


@router.post("/worlds/{world_id}/query/coverage", response_model=CoverageOut)
def coverage(world_id: str, query: CoverageQueryIn, svc=Depends(service)) -> dict:
    from spatia.engine.update import coverage as memory_coverage

    cameras = query.cameras.to_cameras()
    world = svc.storage.open(world_id)
    _, memory = svc.memory(world, query.version)
    with svc.heavy("the coverage query"):
        return {"coverage": [round(float(v), 6) for v in memory_coverage(memory, cameras)]}


@router.post("/worlds/{world_id}/query/points-in-box", response_model=BoxQueryOut)
def box(world_id: str, query: BoxQueryIn, svc=Depends(service)) -> dict:
    world = svc.storage.open(world_id)
    _, memory = svc.memory(world, query.version)
    with svc.heavy("the box query"):
        return points_in_box(memory, query.min, query.max, query.limit)


@router.post("/worlds/{world_id}/query/raycast", response_model=RaycastOut)
def cast(world_id: str, query: RaycastIn, svc=Depends(service)) -> dict:
    world = svc.storage.open(world_id)
    _, memory = svc.memory(world, query.version)
    with svc.heavy("the ray cast"):
        return raycast(memory, query.origins, query.directions, query.radius)
