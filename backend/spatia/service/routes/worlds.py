"""Worlds: create (initialise from an image, RGB + depth, or points), list, get, delete."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, File, Form, Response, UploadFile
from pydantic import ValidationError

from spatia.cameras import Cameras
from spatia.cameras.core import MAX_IMAGE_SIZE
from spatia.formats.shot import MIN_IMAGE_SIZE
from spatia.engine.memory import MemoryFormatError, parse_snapshot
from spatia.engine.memory.checks import MAX_VOXEL_SIZE, MIN_VOXEL_SIZE, check_memory
from spatia.engine.world import World

from ..errors import ApiError, conflict, invalid, location, log
from ..schemas import CameraIn, WorldOut
from ..uploads import decode_depth, decode_image, decode_mask, point_cloud_suffix
from .common import WholeNumber, service, v1_router

router = v1_router("worlds")
NEEDS = {"image": ("image",), "rgbd": ("image", "depth", "camera"), "points": ("points",)}
DEFAULT_VOXEL_SIZE = 0.02
USES = {"image": ("image", "mask", "camera"), "rgbd": ("image", "depth", "mask", "camera"), "points": ("points",)}


def _read(upload: UploadFile | None) -> bytes | None:
    return None if upload is None else upload.file.read()


def _parse_camera(text: str | None) -> CameraIn | None:
    if text is None:
        return None
    try:
        return CameraIn.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = location(first["loc"])
        raise invalid(f"camera{'.' + where if where else ''}: {first['msg']}", "camera") from None


@router.post("/worlds", status_code=201, response_model=WorldOut)
def create_world(
    name: Annotated[str, Form(min_length=1, max_length=200)],
    kind: Annotated[Literal["image", "rgbd", "points"], Form()],
    width: Annotated[int, WholeNumber, Form(ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)],
    height: Annotated[int, WholeNumber, Form(ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)],
    fps: Annotated[float, Form(gt=0, le=1000, allow_inf_nan=False)] = 24.0,
    voxel_size: Annotated[float | None, Form(ge=MIN_VOXEL_SIZE, le=MAX_VOXEL_SIZE, allow_inf_nan=False,
                                             description="metres; default 0.02, or a snapshot's own")] = None,
    camera: Annotated[str | None, Form(description='JSON {"intrinsics": [fx,fy,cx,cy], "w2c": 4x4}')] = None,
    depth_model: Annotated[str, Form()] = "depth-pro",
    image: Annotated[UploadFile | None, File(description="PNG/JPEG, width x height")] = None,
    depth: Annotated[UploadFile | None, File(description=".npy float [H,W] metres, z-depth, 0 = none")] = None,
    mask: Annotated[UploadFile | None, File(description="PNG: bright pixels are dynamic")] = None,
    points: Annotated[UploadFile | None, File(description=".ply or memory .safetensors")] = None,
    svc=Depends(service),
) -> dict:
    given = {"image": image, "depth": depth, "mask": mask, "points": points, "camera": camera}
    for field in NEEDS[kind]:
        if given[field] is None:
            raise invalid(f"kind {kind!r} needs {field}", field)
    for field, value in given.items():
        if value is not None and field not in USES[kind]:
            raise invalid(f"kind {kind!r} does not use {field}", field)
    cam = _parse_camera(camera)
    rgb = decode_image(_read(image), "image", width, height) if image is not None else None
    dynamic = decode_mask(_read(mask), "mask", width, height) if mask is not None else None
    depth_map = decode_depth(_read(depth), "depth", width, height) if depth is not None else None
    cloud = _read(points)
    suffix = point_cloud_suffix(cloud, "points") if cloud is not None else None
    if suffix == ".safetensors":  # the points a world starts from are checked like a pushed snapshot
        try:
            seed, _ = parse_snapshot(cloud, "points")
        except MemoryFormatError as err:
            raise invalid(f"points: {err}", "points") from None
        check_memory(seed, voxel_size=voxel_size)  # a voxel size given must be the snapshot's
        voxel_size = seed.voxel_size
        del seed
    voxel_size = DEFAULT_VOXEL_SIZE if voxel_size is None else voxel_size
    estimator = None
    if kind == "image":
        svc.models.check_depth_model(depth_model)
        estimator, _ = svc.models.depth_estimator(depth_model)
        estimator.check_available()
    if cam is not None:
        try:
            first_camera = Cameras(cam.intrinsics, cam.w2c, width, height)
        except ValueError as err:
            raise invalid(f"camera: {err}", "camera") from None

    with svc.storage.creating(name) as (world_id, folder):
        world = World.create(folder, width=width, height=height, fps=fps, voxel_size=voxel_size)
        if kind == "rgbd":
            world.init_from_rgbd(rgb, depth_map, first_camera, dynamic=dynamic)
        elif kind == "image":
            world.init_from_image(rgb, estimator, intrinsics=None if cam is None else cam.intrinsics,
                                  w2c=None if cam is None else first_camera.w2c[0], dynamic=dynamic)
        else:
            upload = folder / f"points{suffix}"
            upload.write_bytes(cloud)
            try:
                world.init_from_points(upload)
            finally:
                upload.unlink(missing_ok=True)
    return svc.storage.record(world_id)


@router.get("/worlds", response_model=list[WorldOut])
def list_worlds(svc=Depends(service)) -> list[dict]:
    records = []
    for world_id in svc.storage.ids():
        try:
            records.append(svc.storage.record(world_id))
        except (ApiError, OSError, ValueError) as err:  # deleted meanwhile, or unreadable: list the rest
            log.warning("world %s left out of the listing: %s", world_id, err)
    return records


@router.get("/worlds/{world_id}", response_model=WorldOut)
def get_world(world_id: str, svc=Depends(service)) -> dict:
    return svc.storage.record(world_id)


@router.delete("/worlds/{world_id}", status_code=204, response_class=Response)
def delete_world(world_id: str, svc=Depends(service)) -> Response:
    with svc.storage.lock(world_id):
        svc.storage.path(world_id)
        active = svc.jobs.count_on_world(world_id, ("queued", "running"))
        if active:
            raise conflict(f"world {world_id} has {active} queued or running job(s); cancel them first")
        svc.storage.delete(world_id)
    return Response(status_code=204)
