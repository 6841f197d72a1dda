"""Request and response bodies of the API (pydantic). Requests reject unknown fields, so a
typo fails with a message naming it rather than being ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from spatia.cameras import Cameras
from spatia.cameras.core import MAX_IMAGE_SIZE
from spatia.formats.shot import ShotSpec, increasing_keys, unique_ids

ID_PATTERN = r"^[a-z0-9-]{1,64}$"
MAX_INT64 = 2**63 - 1
MAX_QUERY_FRAMES = 512
MAX_QUERY_PIXELS = 64_000_000  # frames x height x width of one render query
MAX_RAYS = 4096
MAX_IDS = 20_000_000

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Vec3 = Annotated[list[FiniteFloat], Field(min_length=3, max_length=3)]
Vec4 = Annotated[list[FiniteFloat], Field(min_length=4, max_length=4)]
Matrix4 = Annotated[list[Vec4], Field(min_length=4, max_length=4)]
# Whole numbers are whole numbers: JSON `1.0`, `true` or `"1"` where a count, an id or a version
# is asked for is refused (strict), rather than read as 1.
Rgb = Annotated[list[Annotated[int, Field(ge=0, le=255, strict=True)]], Field(min_length=3, max_length=3)]
PointId = Annotated[int, Field(ge=0, le=MAX_INT64, strict=True)]
Version = Annotated[int, Field(ge=1, le=MAX_INT64, strict=True)]
StrictBool = Annotated[bool, Field(strict=True)]
ObjectId = Annotated[str, Field(pattern=ID_PATTERN)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- cameras -------------------------------------------------------------------------------------
class CameraIn(_Request):
    """One camera of a world's size: pixel intrinsics and an OpenCV world-to-camera matrix."""

    intrinsics: Vec4 = Field(description="fx, fy, cx, cy in pixels")
    w2c: Matrix4 = Field(default_factory=lambda: np.eye(4).tolist(), description="OpenCV world-to-camera 4x4")


class CamerasIn(_Request):
    width: int = Field(ge=1, le=MAX_IMAGE_SIZE, strict=True)
    height: int = Field(ge=1, le=MAX_IMAGE_SIZE, strict=True)
    intrinsics: Annotated[list[Vec4], Field(min_length=1, max_length=MAX_QUERY_FRAMES)]
    w2c: Annotated[list[Matrix4], Field(min_length=1, max_length=MAX_QUERY_FRAMES)]

    def to_cameras(self) -> Cameras:
        from .errors import invalid

        if len(self.intrinsics) != len(self.w2c):
            raise invalid(f"cameras: {len(self.intrinsics)} intrinsics for {len(self.w2c)} poses", "cameras")
        if len(self.w2c) * self.width * self.height > MAX_QUERY_PIXELS:
            raise invalid(f"cameras: {len(self.w2c)} frames of {self.width}x{self.height} exceed the "
                          f"{MAX_QUERY_PIXELS} pixels one query may render", "cameras")
        try:
            return Cameras(self.intrinsics, self.w2c, self.width, self.height)
        except ValueError as err:
            raise invalid(f"cameras: {err}", "cameras") from None


# --- worlds --------------------------------------------------------------------------------------
class RoundOut(BaseModel):
    round: int
    prompt: str
    start: int
    end: int
    memory_version_in: int | None
    memory_version_out: int | None


class WorldOut(BaseModel):
    id: str
    name: str
    width: int
    height: int
    fps: float
    voxel_size: float
    frames: int
    memory_version: int | None
    rounds: list[RoundOut]
    created: float


# --- memory --------------------------------------------------------------------------------------
class MemoryVersionOut(BaseModel):
    version: int
    parent: int | None
    points: int | None
    message: str
    created: str | None
    sha256: str | None


class VersionOut(BaseModel):
    version: int


class MemoryEditIn(_Request):
    parent: Version | None = Field(None, description="the current memory version; the edit's ids refer to it. "
                                   "Required, here or as an `If-Match` header (428 without either)")
    message: Annotated[str, Field(max_length=1000)] = "edited"
    delete_ids: Annotated[list[PointId], Field(max_length=MAX_IDS)] = []
    move_ids: Annotated[list[PointId], Field(max_length=MAX_IDS)] = []
    move_xyz: Annotated[list[Vec3], Field(max_length=MAX_IDS)] = []
    add_xyz: Annotated[list[Vec3], Field(max_length=MAX_IDS)] = []
    add_rgb: Annotated[list[Rgb], Field(max_length=MAX_IDS)] | None = Field(
        None, description="one colour per added point; mid grey when omitted")


class MemoryEditOut(BaseModel):
    version: int
    deleted: int
    moved: int
    added: int
    added_ids: list[int] = Field(description="point ids given to the added points, in order")


class MemoryDiffOut(BaseModel):
    deleted: list[int]
    moved: list[int]
    added: list[int]


class RevertIn(_Request):
    version: Version = Field(description="the version whose points become the new version")
    parent: Version | None = Field(None, description="the current memory version, which the revert replaces. "
                                   "Required, here or as an `If-Match` header (428 without either)")


# --- queries -------------------------------------------------------------------------------------
class RenderQueryIn(_Request):
    cameras: CamerasIn
    version: Version | None = None


class RenderQueryOut(BaseModel):
    frames: int
    coverage: list[float]
    token: str = Field(description="GET .../query/render/{token}/{i}.png for frame i")
    urls: list[str]


class CoverageQueryIn(_Request):
    cameras: CamerasIn
    version: Version | None = None


class CoverageOut(BaseModel):
    coverage: list[float]


class BoxQueryIn(_Request):
    min: Vec3
    max: Vec3
    limit: Annotated[int, Field(ge=0, le=MAX_IDS, strict=True)] = 100_000
    version: Version | None = None


class BoxQueryOut(BaseModel):
    count: int = Field(description="points inside the box; the lists hold at most `limit` of them")
    point_id: list[int]
    xyz: list[list[float]]


class RaycastIn(_Request):
    origins: Annotated[list[Vec3], Field(min_length=1, max_length=MAX_RAYS)]
    directions: Annotated[list[Vec3], Field(min_length=1, max_length=MAX_RAYS)]
    radius: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] | None = Field(
        None, description="a ray hits points within this distance of it, metres (default: the memory's voxel size)")
    version: Version | None = None


class RaycastOut(BaseModel):
    hit: list[bool]
    distance: list[float | None]
    point_id: list[int | None]


# --- objects -------------------------------------------------------------------------------------
MAX_QUERY_OBJECTS = 1000
MAX_PATH_KEYS = 10_000
VideoFrame = Annotated[int, Field(ge=0, le=2**53, strict=True)]
ObjectNumber = Annotated[int, Field(ge=1, le=2**53, strict=True)]


class ObjectKeyOut(BaseModel):
    frame: int
    position: list[float]
    heading: float


class ObjectCropOut(BaseModel):
    frame: int
    score: float


class ObjectOut(BaseModel):
    id: int
    label: str
    state: Literal["moving", "parked"] = Field(description="parked: slower than PARKED_SPEED (0.1 m/s) over its "
                                               "last second seen, at the world's fps")
    status: Literal["tentative", "confirmed", "lost", "retired"] = Field(
        "confirmed", description="lifecycle: lost and retired objects are not drawn into the conditioning")
    motion: str | None = Field(None, description="its most likely motion hypothesis")
    uncertainty: float | None = Field(None, description="position uncertainty (m, 1 sigma) where its state is")
    condition: bool
    reference: bool
    points: int
    extent: list[float] = Field(description="the size of its points' box in its own frame, metres")
    keys: list[ObjectKeyOut] = Field(description="observed poses (video frame indices), frames ascending")
    seen: list[list[int]] = Field(description="runs of frames it was seen in: [first frame, count]")
    last_seen: int | None = Field(description="the last frame it was seen in (null for a copy never seen)")
    crops: list[ObjectCropOut] = Field(description="its appearance crops, best first")


class ObjectsOut(BaseModel):
    version: int | None = Field(description="the objects version (null: the world remembers no objects yet)")
    memory_version: int | None = Field(description="the memory version this objects version goes with")
    up: list[float]
    objects: list[ObjectOut]


class ObjectPointsOut(BaseModel):
    id: int
    version: int
    xyz: list[list[float]] = Field(description="its points in its own frame, metres")
    rgb: list[list[int]]


class ObjectPathKeyIn(_Request):
    frame: VideoFrame = Field(description="a video frame index (0 = the world's first frame)")
    position: Vec3
    heading: FiniteFloat = Field(0.0, description="radians, a right-handed turn about the world's up axis")


class ObjectDirectionIn(_Request):
    id: ObjectNumber
    path: Annotated[list[ObjectPathKeyIn], Field(max_length=MAX_PATH_KEYS)] = Field(
        default_factory=list, description="the artist's keys, frames ascending; empty: the motion model")
    condition: StrictBool = True
    reference: StrictBool = True

    @field_validator("path")
    @classmethod
    def _increasing(cls, path: list[ObjectPathKeyIn]) -> list[ObjectPathKeyIn]:
        return increasing_keys(path)


class ObjectEntriesIn(_Request):
    cameras: CamerasIn
    start_frame: VideoFrame = Field(description="the video frame index of cameras[0]")
    objects: Annotated[list[ObjectDirectionIn], Field(max_length=MAX_QUERY_OBJECTS)] = Field(
        default_factory=list, description="optional directions: paths that replace the motion model")
    version: Version | None = Field(None, description="the objects version (default: the current one)")

    @field_validator("objects")
    @classmethod
    def _unique(cls, objects: list[ObjectDirectionIn]) -> list[ObjectDirectionIn]:
        return unique_ids(objects)


class ObjectEntryOut(BaseModel):
    id: int
    label: str
    source: Literal["path", "motion", "parked"]
    visible: list[bool] = Field(description="per camera: whether its predicted place is in view")
    entries: list[int] = Field(description="video frame indices where its predicted place comes into view")


class ObjectEntriesOut(BaseModel):
    version: int | None
    objects: list[ObjectEntryOut]


# --- jobs ----------------------------------------------------------------------------------------
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]


class JobSubmitIn(_Request):
    world_id: ObjectId
    shot: ShotSpec


class JobError(BaseModel):
    type: str
    message: str


class JobFiles(BaseModel):
    video: str
    cameras: str
    frames: list[str]


class JobResultOut(BaseModel):
    frames: list[int] = Field(description="[first, end): the world frames this job generated")
    rounds: list[RoundOut]
    memory_version: int | None
    files: JobFiles


class JobOut(BaseModel):
    id: str
    world_id: str
    status: JobStatus
    stage: str
    fraction: float
    eta_s: float | None
    messages: list[str]
    error: JobError | None
    created: float
    started: float | None
    finished: float | None
    result: JobResultOut | None


# --- system --------------------------------------------------------------------------------------
class HealthOut(BaseModel):
    version: str
    api_version: int
    device: Literal["cpu", "cuda"]
    gpu_name: str | None
    vram_free_gb: float | None
    loaded_models: list[str]
    queue_depth: int


class ModelOut(BaseModel):
    name: str
    role: str
    present: bool
    vram_gb: float
    weights: list[str]
    description: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    field: str | None = None
    current_version: int | None = Field(None, description="on a 409 or 428 of a memory or objects write: the "
                                        "world's current memory (objects) version")


class ErrorOut(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 415, 422, 428, 429, 503)
}
