"""The three model roles (depth, dynamic-mask segmentation, video generation) as small typed
interfaces, with numpy arrays at the boundary so callers never depend on a model's framework.

Image arrays are uint8 [..., H, W, 3] RGB; depth is float32 metres with 0 meaning "unknown";
intrinsics are float64 [F, 4] (fx, fy, cx, cy) in pixels of the array they describe.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spatia.cameras import Cameras
from spatia.engine.errors import Cancelled, ModelInputError, ModelUnavailable  # noqa: F401  (re-exported)

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]
# Live previews while a clip denoises: (step, steps, frames uint8 [L, h, w, 3]), one small RGB frame
# per latent frame (see latent_preview). A preview function may carry `every`: how many steps apart.
PreviewFn = Callable[[int, int, np.ndarray], None]
DEFAULT_PREVIEW_EVERY = 2


@dataclass(frozen=True)
class ModelRequirements:
    """What a model needs before it can run: a GPU, weights (HF repo ids or local paths), VRAM."""

    needs_gpu: bool = False
    weights: tuple[str, ...] = ()
    min_vram_gb: float = 0.0


# --- array validation ------------------------------------------------------------------------
def check_images(images: np.ndarray, name: str, *, single: bool = False) -> np.ndarray:
    """uint8 [F,H,W,3] (or [H,W,3] when `single`) -> the same array, or ModelInputError."""
    arr = np.asarray(images)
    ndim = 3 if single else 4
    shape = "[H, W, 3]" if single else "[F, H, W, 3]"
    if arr.ndim != ndim or arr.shape[-1] != 3:
        raise ModelInputError(f"{name} must be an RGB array {shape}, got shape {list(arr.shape)}")
    if arr.dtype != np.uint8:
        raise ModelInputError(f"{name} must be uint8, got {arr.dtype}")
    if not single and arr.shape[0] == 0:
        raise ModelInputError(f"{name} has no frames")
    return arr


def check_intrinsics(intrinsics, frames: int, name: str = "intrinsics") -> np.ndarray:
    """[4] or [F,4] pixel intrinsics -> float64 [F,4] with positive finite focal lengths."""
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape == (4,):
        k = np.repeat(k[None], frames, axis=0)
    if k.shape != (frames, 4):
        raise ModelInputError(f"{name} must be [4] or [{frames}, 4] (fx, fy, cx, cy in pixels), got {list(k.shape)}")
    if not np.isfinite(k).all() or (k[:, :2] <= 0).any():
        raise ModelInputError(f"{name} must be finite with positive focal lengths, got {k[0].tolist()} ...")
    return k


# --- depth ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DepthResult:
    """depth float32 [F,H,W] metres (0 = invalid); intrinsics float64 [F,4] pixels;
    confidence float32 [F,H,W] in [0,1] (0 wherever depth is invalid)."""

    depth: np.ndarray
    intrinsics: np.ndarray
    confidence: np.ndarray

    def __post_init__(self):
        if self.depth.ndim != 3:
            raise ModelInputError(f"depth must be [F, H, W], got shape {list(self.depth.shape)}")
        f, h, w = self.depth.shape
        if self.depth.dtype != np.float32 or self.confidence.dtype != np.float32:
            raise ModelInputError("depth and confidence must be float32")
        if self.confidence.shape != (f, h, w) or self.intrinsics.shape != (f, 4):
            raise ModelInputError(
                f"inconsistent depth result: depth {list(self.depth.shape)}, confidence "
                f"{list(self.confidence.shape)}, intrinsics {list(self.intrinsics.shape)}"
            )


class DepthEstimator(abc.ABC):
    """Metric depth (and intrinsics when not given) for a batch of frames."""

    name: str = "depth"

    @property
    @abc.abstractmethod
    def requirements(self) -> ModelRequirements: ...

    @abc.abstractmethod
    def check_available(self) -> None:
        """Raise ModelUnavailable with the reason and the fixing command if this cannot run."""

    @abc.abstractmethod
    def estimate(self, images: np.ndarray, intrinsics: np.ndarray | None = None) -> DepthResult:
        """images uint8 [F,H,W,3]; intrinsics [F,4] pixels, or None to estimate them.
        Given intrinsics override estimated ones (and fix the metric scale where the model can use them)."""


# --- segmentation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PointPrompt:
    """A click on `frame` at continuous pixel (x, y); negative clicks mark background."""

    x: float
    y: float
    frame: int = 0
    positive: bool = True
    object_id: int = 1


@dataclass(frozen=True)
class BoxPrompt:
    """A box (x0, y0, x1, y1) in continuous pixels around one object on `frame`."""

    x0: float
    y0: float
    x1: float
    y1: float
    frame: int = 0
    object_id: int = 1

    def __post_init__(self):
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise ModelInputError(f"box must have x1 > x0 and y1 > y0, got {(self.x0, self.y0, self.x1, self.y1)}")


Prompt = str | PointPrompt | BoxPrompt

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_VISUAL_PROMPT = re.compile(rf"^\s*(point|neg|box)\s*:\s*((?:{_NUMBER}\s*,\s*)*{_NUMBER})\s*(?:@\s*(\d+))?\s*(?:#\s*(\d+))?\s*$")


def parse_prompt(text: str) -> Prompt:
    """Plain-text prompt -> a typed prompt, so clients can send visual prompts as strings.

    "point:x,y@frame#object", "neg:x,y@frame#object" (a negative click) and
    "box:x0,y0,x1,y1@frame#object" become PointPrompt / BoxPrompt (frame and object optional);
    anything else is a text prompt such as "person".
    """
    match = _VISUAL_PROMPT.match(text)
    if not match:
        if not text.strip():
            raise ModelInputError("empty prompt")
        return text.strip()
    kind, numbers, frame, obj = match.groups()
    values = [float(v) for v in numbers.split(",")]
    frame_idx, object_id = int(frame or 0), int(obj or 1)
    if kind == "box":
        if len(values) != 4:
            raise ModelInputError(f"box prompt needs 4 numbers x0,y0,x1,y1, got {text!r}")
        return BoxPrompt(*values, frame=frame_idx, object_id=object_id)
    if len(values) != 2:
        raise ModelInputError(f"point prompt needs 2 numbers x,y, got {text!r}")
    return PointPrompt(values[0], values[1], frame=frame_idx, positive=kind == "point", object_id=object_id)


class Segmenter(abc.ABC):
    """Masks of dynamic entities (people, cars, ...) that must never enter the spatial memory."""

    name: str = "segmenter"

    @property
    @abc.abstractmethod
    def requirements(self) -> ModelRequirements: ...

    @abc.abstractmethod
    def check_available(self) -> None: ...

    @abc.abstractmethod
    def segment(self, frames: np.ndarray, prompts: Sequence[Prompt]) -> np.ndarray:
        """frames uint8 [F,H,W,3] -> bool [F,H,W], True where the pixel shows a dynamic entity."""

    def segment_instances(self, frames: np.ndarray, prompts: Sequence[Prompt]) -> tuple[np.ndarray, dict[int, str]]:
        """frames -> (int32 [F,H,W] instance ids, 0 = static, one id per entity through the clip;
        {id: label}). This default splits `segment`'s mask into connected components linked from
        frame to frame by overlap; segmenters that track instances override it."""
        from spatia.engine.objects.observe import split_components

        return split_components(self.segment(frames, prompts)), {}


# --- generation -----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """Everything a video generator is conditioned on for one clip of F frames at H x W.

    projection: the memory rendered along the target cameras; projection_depth its depth (0 in
    holes); hole_mask True where the memory knows nothing and content must be generated.
    history: the last frames of the previous clip, which are also the first frames of this one.
    references: retrieved past frames that see the same space. first_frame: round 0's image.
    """

    prompt: str
    projection: np.ndarray
    projection_depth: np.ndarray
    hole_mask: np.ndarray
    cameras: Cameras
    negative_prompt: str = ""
    history: np.ndarray | None = None
    references: np.ndarray | None = None
    first_frame: np.ndarray | None = None
    fps: float = 24.0
    seed: int = 0
    steps: int | None = None  # None: the generator's own default
    guidance: float | None = None
    # The memory's points the projection was rendered from (float32 [N,3], uint8 [N,3]) and the
    # round's index: spatia-5b renders its own control video from them; other generators ignore them.
    points_xyz: np.ndarray | None = None
    points_rgb: np.ndarray | None = None
    round_index: int = 0
    # Remembered moving objects at their predicted poses (docs/objects.md): per frame, their points
    # (float32 [n,3], uint8 [n,3]; empty where none is in view), which spatia-5b draws into its
    # control video with the memory's; and their best crops on white (uint8 [K,S,S,3]), offered as
    # reference images to generators that take references. The projection already shows them.
    start_frame: int = 0  # the video frame index of the clip's first frame (moving things depend on time)
    frame_points_xyz: list | None = None
    frame_points_rgb: list | None = None
    object_references: np.ndarray | None = None

    def __post_init__(self):
        self.validate()

    @property
    def num_frames(self) -> int:
        return self.projection.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.projection.shape[1], self.projection.shape[2]

    def validate(self) -> None:
        proj = check_images(self.projection, "projection")
        f, h, w = proj.shape[:3]
        depth = np.asarray(self.projection_depth)
        if depth.shape != (f, h, w) or depth.dtype != np.float32:
            raise ModelInputError(f"projection_depth must be float32 [{f}, {h}, {w}], got {depth.dtype} {list(depth.shape)}")
        if not np.isfinite(depth).all() or (depth < 0).any():
            raise ModelInputError("projection_depth must be finite and non-negative (0 marks holes)")
        hole = np.asarray(self.hole_mask)
        if hole.shape != (f, h, w) or hole.dtype != np.bool_:
            raise ModelInputError(f"hole_mask must be bool [{f}, {h}, {w}], got {hole.dtype} {list(hole.shape)}")
        if len(self.cameras) != f or (self.cameras.width, self.cameras.height) != (w, h):
            raise ModelInputError(
                f"cameras ({len(self.cameras)} frames at {self.cameras.width}x{self.cameras.height}) "
                f"do not match the projection ({f} frames at {w}x{h})"
            )
        for name in ("history", "references"):
            arr = getattr(self, name)
            if arr is None:
                continue
            check_images(arr, name)
            if arr.shape[1:3] != (h, w):
                raise ModelInputError(f"{name} frames are {arr.shape[2]}x{arr.shape[1]}, the clip is {w}x{h}")
        if self.history is not None and len(self.history) > f:
            raise ModelInputError(f"history has {len(self.history)} frames, more than the clip's {f}")
        if self.first_frame is not None:
            check_images(self.first_frame, "first_frame", single=True)
            if self.first_frame.shape[:2] != (h, w):
                raise ModelInputError(f"first_frame is {self.first_frame.shape[1]}x{self.first_frame.shape[0]}, the clip is {w}x{h}")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ModelInputError(f"fps must be positive, got {self.fps}")
        if self.steps is not None and self.steps < 1:
            raise ModelInputError(f"steps must be >= 1, got {self.steps}")
        if isinstance(self.round_index, bool) or not isinstance(self.round_index, (int, np.integer)) or self.round_index < 0:
            raise ModelInputError(f"round_index must be an integer >= 0, got {self.round_index!r}")
        if (self.points_xyz is None) != (self.points_rgb is None):
            raise ModelInputError("points_xyz and points_rgb come together: give both or neither")
        if self.points_xyz is not None:
            xyz, rgb = np.asarray(self.points_xyz), np.asarray(self.points_rgb)
            if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.dtype != np.float32:
                raise ModelInputError(f"points_xyz must be float32 [N, 3], got {xyz.dtype} {list(xyz.shape)}")
            if not np.isfinite(xyz).all():
                raise ModelInputError("points_xyz contains NaN or infinite coordinates")
            if rgb.shape != xyz.shape or rgb.dtype != np.uint8:
                raise ModelInputError(f"points_rgb must be uint8 [{len(xyz)}, 3] to match points_xyz, got {rgb.dtype} {list(rgb.shape)}")
        if isinstance(self.start_frame, bool) or not isinstance(self.start_frame, (int, np.integer)) or self.start_frame < 0:
            raise ModelInputError(f"start_frame must be an integer >= 0, got {self.start_frame!r}")
        if (self.frame_points_xyz is None) != (self.frame_points_rgb is None):
            raise ModelInputError("frame_points_xyz and frame_points_rgb come together: give both or neither")
        if self.frame_points_xyz is not None:
            if len(self.frame_points_xyz) != f or len(self.frame_points_rgb) != f:
                raise ModelInputError(f"frame_points need one entry per frame ({f}), got {len(self.frame_points_xyz)}")
            for i, (xyz, rgb) in enumerate(zip(self.frame_points_xyz, self.frame_points_rgb)):
                xyz, rgb = np.asarray(xyz), np.asarray(rgb)
                if xyz.ndim != 2 or xyz.shape[1:] != (3,) or xyz.dtype != np.float32 or not np.isfinite(xyz).all():
                    raise ModelInputError(f"frame_points_xyz[{i}] must be finite float32 [n, 3], got {xyz.dtype} {list(xyz.shape)}")
                if rgb.shape != xyz.shape or rgb.dtype != np.uint8:
                    raise ModelInputError(f"frame_points_rgb[{i}] must be uint8 {list(xyz.shape)}, got {rgb.dtype} {list(rgb.shape)}")
        if self.object_references is not None:
            check_images(self.object_references, "object_references")


@dataclass(frozen=True, eq=False)
class GenerationResult:
    """frames uint8 [F,H,W,3]; depth float32 [F,H,W] metres when the generator knows it."""

    frames: np.ndarray
    depth: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


class VideoGenerator(abc.ABC):
    """Generates one clip conditioned on the spatial memory's projection and past frames."""

    name: str = "generator"
    # True for a generator whose `generate` takes `preview=` (live previews while it denoises)
    supports_preview: bool = False
    # True for a model trained on full rounds only: the world pads a short last round to the full
    # round length by repeating its last camera, and crops the frames that come back.
    pads_short_rounds: bool = False

    @property
    @abc.abstractmethod
    def requirements(self) -> ModelRequirements: ...

    @abc.abstractmethod
    def check_available(self) -> None: ...

    @abc.abstractmethod
    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressFn | None = None,
        should_cancel: CancelFn | None = None,
    ) -> GenerationResult:
        """Progress gets (fraction in [0,1], stage); raise Cancelled between steps when asked."""


def preview_every(preview: PreviewFn | None) -> int:
    """How many steps apart `preview` wants frames: its `every` attribute, else the default."""
    every = getattr(preview, "every", None)
    return max(1, int(every)) if every else DEFAULT_PREVIEW_EVERY


class PreviewingGenerator:
    """A generator with live previews attached: `generate` passes `preview` on to the generator
    when it supports previews; every other attribute is the generator's own."""

    def __init__(self, generator: VideoGenerator, preview: PreviewFn):
        self._generator, self._preview = generator, preview

    def __getattr__(self, name):
        return getattr(self._generator, name)

    def generate(self, request: GenerationRequest, progress: ProgressFn | None = None,
                 should_cancel: CancelFn | None = None) -> GenerationResult:
        if getattr(self._generator, "supports_preview", False):
            return self._generator.generate(request, progress, should_cancel, preview=self._preview)
        return self._generator.generate(request, progress, should_cancel)


def with_preview(generator: VideoGenerator, preview: PreviewFn | None):
    """`generator`, sending live previews to `preview` (unchanged when `preview` is None)."""
    return generator if preview is None else PreviewingGenerator(generator, preview)


def report(progress: ProgressFn | None, fraction: float, stage: str) -> None:
    if progress is not None:
        progress(float(min(max(fraction, 0.0), 1.0)), stage)


def raise_if_cancelled(should_cancel: CancelFn | None) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled("generation cancelled")
