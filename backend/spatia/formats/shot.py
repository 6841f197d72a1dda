"""The shot spec: one camera path, its prompts and generation settings, as versioned JSON.

Defined once here with pydantic; the service validates requests with it and the Blender
extension's payloads are tested against `shot_json_schema()`. Unknown fields are rejected
so typos fail loudly. Cameras are OpenCV: `intrinsics` are pixels (fx, fy, cx, cy) for
`width` x `height`, `w2c` is a row-major 4x4 world-to-camera matrix. `frame` is the
Blender frame number; frames may skip numbers (keyframes), and `trajectory()` fills the
gaps by interpolation.

Example (a new world from a picture and its depth, seen by the first camera; examples/ holds
complete shots that run as they are):
    {"schema": "spatia.shot", "version": 1, "name": "orbit", "width": 832, "height": 480,
     "fps": 24, "frames": [{"frame": 1, "intrinsics": [700, 700, 416, 240],
     "w2c": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}],
     "prompts": ["a quiet street at dusk"],
     "init": {"kind": "render", "image": "first.png", "depth": "depth.npy"}}

`init.kind`: "render" (an image and its metric depth, .npy or .exr: no weights needed),
"image" (an image alone: its depth is estimated by DepthPro, whose weights must be
downloaded: `spatia models download depth-pro`), "points" (a .ply or memory snapshot).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from spatia.cameras.core import MAX_IMAGE_SIZE, MAX_INTRINSIC, MAX_TRANSLATION, ORTHONORMAL_TOLERANCE, Cameras, Trajectory, interpolate_poses
from spatia.formats.atomic import write_atomic

SHOT_SCHEMA = "spatia.shot"
SHOT_VERSION = 1
MIN_IMAGE_SIZE = 16
MAX_SEED = 2**32 - 1
MAX_FRAME_NUMBER = 1_048_574  # Blender's own frame limit (MAXFRAME)
MAX_SHOT_FRAMES = 100_000  # first to last listed frame: over an hour at 24 fps

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class ShotError(ValueError):
    """A shot spec is malformed; the message names the source and each bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShotFrame(_Strict):
    """The camera at one Blender frame."""

    frame: int = Field(ge=-MAX_FRAME_NUMBER, le=MAX_FRAME_NUMBER, description="Blender frame number")
    intrinsics: Annotated[list[FiniteFloat], Field(min_length=4, max_length=4)] = Field(
        description="fx, fy, cx, cy in pixels for the shot's width and height"
    )
    w2c: list[list[FiniteFloat]] = Field(description="OpenCV world-to-camera 4x4, row-major")

    @field_validator("intrinsics")
    @classmethod
    def _positive_focal(cls, k: list[float]) -> list[float]:
        if k[0] <= 0 or k[1] <= 0:
            raise ValueError(f"focal lengths fx, fy must be positive, got {k[0]}, {k[1]}")
        if max(abs(v) for v in k) > MAX_INTRINSIC:
            raise ValueError(f"intrinsics {k} exceed {MAX_INTRINSIC:g} pixels")
        return k

    @field_validator("w2c")
    @classmethod
    def _rigid_4x4(cls, m: list[list[float]]) -> list[list[float]]:
        if len(m) != 4 or any(len(row) != 4 for row in m):
            raise ValueError(f"must be a 4x4 matrix, got row lengths {[len(row) for row in m]}")
        a = np.array(m)
        if np.abs(a[3] - [0.0, 0.0, 0.0, 1.0]).max() > 1e-9:
            raise ValueError(f"bottom row must be [0, 0, 0, 1], got {m[3]}")
        if np.abs(a[:3, 3]).max() > MAX_TRANSLATION:
            raise ValueError(f"translation {a[:3, 3].tolist()} exceeds {MAX_TRANSLATION:g} m")
        rot = a[:3, :3]
        err = np.abs(rot @ rot.T - np.eye(3)).max()
        if err > ORTHONORMAL_TOLERANCE or np.linalg.det(rot) <= 0:
            raise ValueError(f"rotation is not a proper orthonormal matrix (max |R R^T - I| = {err:.2e}, det = {np.linalg.det(rot):.4f})")
        return m


class InitSpec(_Strict):
    """How to initialise the memory. Relative paths are relative to the shot file's folder."""

    kind: Literal["image", "render", "points"]
    image: str | None = Field(None, description="RGB image (kind image or render); taken by the shot's first camera")
    depth: str | None = Field(None, description="metric Z depth in metres, float .npy or .exr (kind render)")
    points: str | None = Field(None, description="point cloud, .ply or memory snapshot (kind points)")
    mask: str | None = Field(None, description="optional mask of dynamic pixels to keep out of memory")

    @model_validator(mode="after")
    def _paths_match_kind(self) -> "InitSpec":
        needs = {"image": ("image",), "render": ("image", "depth"), "points": ("points",)}[self.kind]
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"kind {self.kind!r} needs {', '.join(missing)}")
        unused = [name for name in ("image", "depth", "points") if name not in needs and getattr(self, name) is not None]
        if unused:
            raise ValueError(f"kind {self.kind!r} does not use {', '.join(unused)}")
        return self


class RoundPlan(_Strict):
    """Clip lengths, as spatia.engine.plan.plan_rounds takes them: the first round makes
    `first_round_frames` frames; each later round makes `round_frames`, of which the first
    `overlap` repeat the end of the previous clip."""

    first_round_frames: int = Field(121, ge=2, le=10_000)
    round_frames: int = Field(81, ge=2, le=10_000)
    overlap: int = Field(9, ge=0)

    @model_validator(mode="after")
    def _overlap_fits(self) -> "RoundPlan":
        if self.overlap >= self.round_frames:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than round_frames ({self.round_frames})")
        return self


MAX_OBJECT_ID = 2**53  # object ids travel through JSON: exact in a double
MAX_PATH_KEYS = 10_000


def increasing_keys(path: list) -> list:
    """A path whose key frames strictly increase, or ValueError naming them."""
    numbers = [k.frame for k in path]
    if any(b <= a for a, b in zip(numbers, numbers[1:])):
        raise ValueError(f"path frames must strictly increase, got {numbers}")
    return path


def unique_ids(objects: list) -> list:
    """Directions that name each object once, or ValueError naming the repeated ids."""
    ids = [o.id for o in objects]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"objects name ids {twice} more than once")
    return objects


class ObjectPathKey(_Strict):
    """Where the artist puts an object at one Blender frame (an Empty's keyframe)."""

    frame: int = Field(ge=-MAX_FRAME_NUMBER, le=MAX_FRAME_NUMBER, description="Blender frame number")
    position: Annotated[list[FiniteFloat], Field(min_length=3, max_length=3)] = Field(description="world metres")
    heading: FiniteFloat = Field(0.0, description="radians, a right-handed turn about the world's up axis")

    @field_validator("position")
    @classmethod
    def _in_range(cls, p: list[float]) -> list[float]:
        if max(abs(v) for v in p) > MAX_TRANSLATION:
            raise ValueError(f"position {p} exceeds {MAX_TRANSLATION:g} m")
        return p


class ObjectDirection(_Strict):
    """How the artist directs one remembered object in this shot (docs/objects.md)."""

    id: int = Field(ge=1, le=MAX_OBJECT_ID, description="the object's id; for a copy, a new unused id")
    path: list[ObjectPathKey] = Field(default_factory=list, max_length=MAX_PATH_KEYS,
                                      description="keyed poses; empty: the motion model predicts")
    condition: bool = Field(True, description="render the object's points into the conditioning")
    reference: bool = Field(True, description="offer its best crop as a reference image")
    copy_of: int | None = Field(None, ge=1, le=MAX_OBJECT_ID, description="make this a new object copied from that one")

    @field_validator("path")
    @classmethod
    def _increasing(cls, path: list[ObjectPathKey]) -> list[ObjectPathKey]:
        return increasing_keys(path)

    @model_validator(mode="after")
    def _copy_needs_path(self) -> "ObjectDirection":
        if self.copy_of is not None and not self.path:
            raise ValueError(f"object {self.id} copies object {self.copy_of}: give it a path to say where it is")
        if self.copy_of == self.id:
            raise ValueError(f"object {self.id} cannot be a copy of itself")
        return self


class ShotSpec(_Strict):
    schema_id: Literal["spatia.shot"] = Field(SHOT_SCHEMA, alias="schema")
    version: int = SHOT_VERSION
    name: NonEmptyStr
    world: NonEmptyStr | None = Field(None, description="world id or path; None starts a new world")
    width: int = Field(ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)
    height: int = Field(ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)
    fps: FiniteFloat = Field(gt=0, le=1000)
    frames: list[ShotFrame] = Field(min_length=1)
    prompts: list[NonEmptyStr] = Field(min_length=1, description="one per round, or one for all")
    negative_prompt: str = ""
    generator: NonEmptyStr = "preview"
    quality: NonEmptyStr = "standard"
    vram: NonEmptyStr = "auto"
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="None: the generator's own (spatia-5b: the authors' 20917)")
    steps: int | None = Field(None, ge=1, le=1000, description="overrides the quality preset")
    guidance: FiniteFloat | None = Field(None, ge=0, le=100, description="overrides the quality preset")
    dynamic_prompts: list[NonEmptyStr] = Field(default_factory=list, description='entities to keep out of memory, e.g. "person"')
    init: InitSpec | None = None
    rounds: RoundPlan = Field(default_factory=RoundPlan)
    objects: list[ObjectDirection] = Field(default_factory=list, description="paths and switches for remembered objects")
    forget_objects: list[Annotated[int, Field(ge=1, le=MAX_OBJECT_ID)]] = Field(
        default_factory=list, description="ids of remembered objects to forget before this shot")
    object_memory: bool = Field(True, description="remember moving objects and render them where predicted")

    def generation(self, generator: str | None = None):
        """The steps, guidance and seed this shot runs `generator` (default: its own) with
        (`spatia.formats.presets.generator_settings`: its quality preset, its own values over it)."""
        from spatia.formats.presets import generator_settings

        return generator_settings(generator or self.generator, self.quality, steps=self.steps,
                                  guidance=self.guidance, seed=self.seed)

    @field_validator("objects")
    @classmethod
    def _unique_objects(cls, objects: list[ObjectDirection]) -> list[ObjectDirection]:
        return unique_ids(objects)

    @model_validator(mode="after")
    def _forget_is_not_directed(self) -> "ShotSpec":
        both = sorted({o.id for o in self.objects} & set(self.forget_objects))
        if both:
            raise ValueError(f"objects {both} are both directed and forgotten")
        return self

    @field_validator("version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version != SHOT_VERSION:
            raise ValueError(f"unsupported shot spec version {version}; this build reads version {SHOT_VERSION}")
        return version

    @field_validator("frames")
    @classmethod
    def _increasing_frames(cls, frames: list[ShotFrame]) -> list[ShotFrame]:
        numbers = np.array([f.frame for f in frames])
        bad = np.flatnonzero(np.diff(numbers) <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise ValueError(
                f"frame numbers must strictly increase: frames[{i}].frame = {numbers[i]} follows frames[{i - 1}].frame = {numbers[i - 1]}"
            )
        span = int(numbers[-1] - numbers[0]) + 1 if len(numbers) else 0
        if span > MAX_SHOT_FRAMES:  # the gaps are filled with one camera per frame
            raise ValueError(f"frames {numbers[0]}..{numbers[-1]} span {span} frames; a shot holds at most {MAX_SHOT_FRAMES}")
        return frames

    # --- cameras -------------------------------------------------------------------------------
    @property
    def frame_numbers(self) -> np.ndarray:
        return np.array([f.frame for f in self.frames], dtype=np.int64)

    def keyframe_cameras(self) -> Cameras:
        """The cameras exactly as listed, one per entry of `frames`."""
        return Cameras(
            np.array([f.intrinsics for f in self.frames]), np.array([f.w2c for f in self.frames]), self.width, self.height
        )

    def trajectory(self) -> Trajectory:
        """One camera per Blender frame from the first to the last listed frame.

        Listed frames are kept exactly; frames in gaps get slerped rotations and lerped
        centres and intrinsics. metadata holds `name` and `first_frame`.
        """
        keys = self.keyframe_cameras()
        numbers = self.frame_numbers
        metadata = {"name": self.name, "first_frame": int(numbers[0])}
        if numbers[-1] - numbers[0] == len(numbers) - 1:
            return Trajectory(keys, self.fps, metadata)
        every = np.arange(numbers[0], numbers[-1] + 1)
        c2w = interpolate_poses(keys.c2w, numbers, every)
        k = np.stack([np.interp(every, numbers, keys.intrinsics[:, i]) for i in range(4)], axis=-1)
        cams = Cameras.from_c2w(k, c2w, self.width, self.height)
        # Keep listed frames bit-exact rather than passing them through c2w and back.
        listed = numbers - numbers[0]
        w2c, k = cams.w2c.copy(), cams.intrinsics.copy()
        w2c[listed], k[listed] = keys.w2c, keys.intrinsics
        return Trajectory(Cameras(k, w2c, self.width, self.height), self.fps, metadata)

    @classmethod
    def from_trajectory(
        cls, trajectory: Trajectory, prompts: str | Sequence[str], *, first_frame: int | None = None, name: str | None = None, **fields: Any
    ) -> "ShotSpec":
        """A shot for `trajectory`, frames numbered from `first_frame` (else metadata's, else 1)."""
        cams = trajectory.cameras
        first = first_frame if first_frame is not None else int(trajectory.metadata.get("first_frame", 1))
        frames = [
            {"frame": first + i, "intrinsics": cams.intrinsics[i].tolist(), "w2c": cams.w2c[i].tolist()} for i in range(len(cams))
        ]
        return cls.model_validate(
            {
                "name": name if name is not None else trajectory.metadata.get("name", "shot"),
                "width": cams.width,
                "height": cams.height,
                "fps": trajectory.fps,
                "frames": frames,
                "prompts": [prompts] if isinstance(prompts, str) else list(prompts),
                **fields,
            }
        )


# --- files ---------------------------------------------------------------------------------
def _describe(errors: ValidationError) -> str:
    lines = []
    for err in errors.errors():
        loc = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in err["loc"]).lstrip(".")
        message = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        lines.append(f"  {loc or '(top level)'}: {message}")
    return "\n".join(lines)


def load_shot(source: str | os.PathLike | dict | ShotSpec) -> ShotSpec:
    """A validated ShotSpec from a JSON file path, a dict, or a ShotSpec (returned as is)."""
    if isinstance(source, ShotSpec):
        return source
    if isinstance(source, dict):
        data, origin = source, "shot spec"
    else:
        path = Path(source)
        origin = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ShotError(f"{path}: missing") from None
        except IsADirectoryError:
            raise ShotError(f"{path}: a folder; a shot is a JSON file") from None
        except UnicodeDecodeError as exc:
            raise ShotError(f"{path}: not UTF-8 text, so not a shot JSON file ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise ShotError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except json.JSONDecodeError as exc:
            raise ShotError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise ShotError(f"{path}: expected a JSON object, got {type(data).__name__}")
    try:
        return ShotSpec.model_validate(data)
    except ValidationError as exc:
        raise ShotError(f"{origin}: invalid shot spec ({exc.error_count()} problem(s)):\n{_describe(exc)}") from None


def dump_shot(spec: ShotSpec) -> dict:
    """The JSON-ready dict of a shot (field aliases applied: `schema`)."""
    return spec.model_dump(mode="json", by_alias=True)


def format_shot_json(spec: ShotSpec) -> str:
    """Indented JSON with one line per frame, so long camera paths stay readable and diffable."""
    fields = []
    for key, value in dump_shot(spec).items():
        if key == "frames":
            rows = ",\n".join("    " + json.dumps(frame, allow_nan=False) for frame in value)
            fields.append(f'  "frames": [\n{rows}\n  ]')
        else:
            fields.append(f"  {json.dumps(key)}: " + json.dumps(value, indent=2, allow_nan=False).replace("\n", "\n  "))
    return "{\n" + ",\n".join(fields) + "\n}\n"


def save_shot(path: str | os.PathLike, spec: ShotSpec) -> Path:
    """Write `spec` as JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, format_shot_json(spec))
    return path


def shot_json_schema() -> dict:
    """JSON Schema of the shot spec (cross-field rules such as increasing frames are not expressible there)."""
    return ShotSpec.model_json_schema(by_alias=True)
