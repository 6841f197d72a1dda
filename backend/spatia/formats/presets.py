"""Presets as validated data: camera paths, quality levels, generator models and VRAM modes.

The files live in the repository's `presets/` folder (or the folder named by
$SPATIA_PRESETS_DIR) as plain JSON, so the Blender extension reads the same files with its
own reader (spatia_blender.presets) without importing this package:

    presets/cameras/<id>.json   camera paths, in the extension's format (see below)
    presets/quality/<name>.json steps, guidance, size, frames per round, first-frame samples
    presets/models/<name>.json  generator presets: weight repositories and expected VRAM
    presets/vram.json           offload settings per GPU memory size and generator

Camera paths move the camera relative to its pose at the first frame. Either a built-in type
with its parameters ({"type": "orbit", "degrees", "distance"}, {"type": "dolly", "distance"},
{"type": "pan", "degrees"}, {"type": "look_away", "degrees"}) or "keys": [{"t": 0..1,
"offset": [x, y, z] metres in the camera's own frame (x right, y up, z backwards), "yaw",
"pitch", "roll" degrees}] interpolated linearly in t. Keyed paths carry the "parameters"
they were made from by `camera_keys` (motion, amounts, easing), so they can be regenerated
with other values. "duration_s" is the intended length in seconds (frames = duration x fps).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PRESETS_DIR_ENV = "SPATIA_PRESETS_DIR"
CAMERA_TYPES = ("orbit", "dolly", "pan", "look_away")
EASINGS = ("linear", "ease_in", "ease_out", "ease_in_out")
MOTIONS = ("dolly", "truck", "pedestal", "tilt", "pan", "walk")
VRAM_MODES = ("gpu", "model", "group", "sequential")  # spatia.engine.models.gpu.VRAM_MODES, without importing torch

Finite = Annotated[float, Field(allow_inf_nan=False)]


class PresetError(ValueError):
    """A preset file is missing or malformed, or a preset name is unknown; the message says which."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- camera paths ----------------------------------------------------------------------------
class CameraKey(_Strict):
    t: Finite = Field(ge=0.0, le=1.0)
    offset: Annotated[list[Finite], Field(min_length=3, max_length=3)] = [0.0, 0.0, 0.0]
    yaw: Finite = 0.0
    pitch: Finite = 0.0
    roll: Finite = 0.0


class CameraPathPreset(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    type: Literal["orbit", "dolly", "pan", "look_away"] | None = None
    degrees: Finite | None = None
    distance: Finite | None = None
    keys: list[CameraKey] | None = None
    parameters: dict[str, Finite | str] = Field(default_factory=dict)
    duration_s: Finite = Field(5.0, gt=0, le=600)
    closed_loop: bool = False

    @model_validator(mode="after")
    def _one_form(self) -> "CameraPathPreset":
        if (self.type is None) == (self.keys is None):
            raise ValueError("give either a built-in `type` or `keys`, not both or neither")
        if self.keys is not None:
            ts = [k.t for k in self.keys]
            if len(ts) < 2 or ts[0] != 0.0 or ts[-1] != 1.0 or any(b <= a for a, b in zip(ts, ts[1:])):
                raise ValueError(f"keys must start at t=0, end at t=1 and strictly increase, got t={ts}")
            if self.degrees is not None or self.distance is not None:
                raise ValueError("keyed paths take their amounts from `keys`; put degrees/distance in `parameters`")
            if self.parameters:
                try:
                    made = camera_keys(**self.parameters)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"parameters do not describe a motion: {exc}") from None
                if [CameraKey(**k) for k in made] != self.keys:
                    raise ValueError("keys differ from what `parameters` make (regenerate them with spatia.formats.presets.camera_keys)")
        else:
            needs = {"orbit": ("degrees", "distance"), "dolly": ("distance",), "pan": ("degrees",),
                     "look_away": ("degrees",)}[self.type]
            missing = [name for name in needs if getattr(self, name) is None]
            if missing:
                raise ValueError(f"type {self.type!r} needs {', '.join(missing)}")
            if self.type == "orbit" and self.distance <= 0:
                raise ValueError(f"orbit distance must be positive, got {self.distance}")
        return self

    def frames(self, fps: float) -> int:
        """Frame count for the intended duration at `fps`."""
        return max(2, int(round(self.duration_s * fps)))

    def as_dict(self) -> dict:
        """The dict spatia_blender.presets.camera_path takes."""
        return self.model_dump(exclude_none=True)


def ease(t: float, easing: str) -> float:
    if easing == "linear":
        return t
    if easing == "ease_in":
        return t * t
    if easing == "ease_out":
        return 1.0 - (1.0 - t) ** 2
    if easing == "ease_in_out":
        return t * t * (3.0 - 2.0 * t)
    raise ValueError(f"unknown easing {easing!r}; choose one of {', '.join(EASINGS)}")


def _r(value: float) -> float:
    return round(float(value), 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def camera_keys(motion: str, *, distance: float = 0.0, degrees: float = 0.0, easing: str = "ease_in_out",
                samples: float = 9, turn_at: float = 0.5) -> list[dict]:
    """Keys of a camera move, sampled from `easing` so linear interpolation follows the curve.

    motion: dolly (forward by `distance`; negative moves back), truck (right by `distance`),
    pedestal (up by `distance`), tilt (up by `degrees`), pan (left by `degrees`), walk
    (forward `distance` along the ground, turning left by `degrees` around `turn_at` of the
    way, the view following the path).
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose one of {', '.join(MOTIONS)}")
    samples = int(samples)
    if samples < 2:
        raise ValueError(f"samples must be at least 2, got {samples}")
    ease(0.0, easing)  # validates the name
    keys = []
    if motion == "walk":
        return _walk_keys(float(distance), float(degrees), easing, samples, float(turn_at))
    for i in range(samples):
        t = i / (samples - 1)
        e = ease(t, easing)
        offset, yaw, pitch = [0.0, 0.0, 0.0], 0.0, 0.0
        if motion == "dolly":
            offset[2] = -distance * e
        elif motion == "truck":
            offset[0] = distance * e
        elif motion == "pedestal":
            offset[1] = distance * e
        elif motion == "tilt":
            pitch = degrees * e
        else:
            yaw = degrees * e
        keys.append({"t": _r(t), "offset": [_r(v) for v in offset], "yaw": _r(yaw), "pitch": _r(pitch), "roll": 0.0})
    return keys


def _walk_keys(distance: float, degrees: float, easing: str, samples: int, turn_at: float) -> list[dict]:
    """Walk along a path: straight, an arc turning by `degrees` centred at `turn_at`, straight.
    The arc takes a fifth of the length; progress along the path follows `easing`."""
    if not 0.1 <= turn_at <= 0.9:
        raise ValueError(f"turn_at must be in [0.1, 0.9], got {turn_at}")
    arc = 0.2
    a0 = turn_at - arc / 2
    turn = math.radians(degrees)

    def heading(s: float) -> float:  # radians, positive turns left
        return turn * min(max((s - a0) / arc, 0.0), 1.0)

    # Integrate the position finely so the keys lie exactly on the path.
    steps = 2000
    xs, zs, x, z = [0.0], [0.0], 0.0, 0.0
    for j in range(steps):
        h = heading((j + 0.5) / steps)
        x -= math.sin(h) * distance / steps  # left is -x
        z -= math.cos(h) * distance / steps  # forward is -z
        xs.append(x)
        zs.append(z)
    keys = []
    for i in range(samples):
        t = i / (samples - 1)
        s = ease(t, easing)
        j = min(int(round(s * steps)), steps)
        keys.append({"t": _r(t), "offset": [_r(xs[j]), 0.0, _r(zs[j])], "yaw": _r(math.degrees(heading(s))),
                     "pitch": 0.0, "roll": 0.0})
    return keys


# --- quality, models, VRAM -------------------------------------------------------------------
# What a generator was trained on and must keep under every quality preset (its presets vary only
# what is safe, the steps). spatia-5b: the reference's 1248x704, rounds of 121 then 81 frames with
# 9 overlapping, guidance 3.5 (spatia.engine.models.spatia.config). A shot leaves these only explicitly,
# and the round's record then marks the round out of distribution.
TRAINED = {
    "spatia-5b": {"width": 1248, "height": 704, "first_round_frames": 121, "round_frames": 81, "overlap": 9,
                  "guidance": 3.5},
}


class GeneratorQuality(_Strict):
    """A quality preset's values for one generator, over the preset's general ones."""

    steps: int | None = Field(None, ge=1, le=1000)
    guidance: Finite | None = Field(None, ge=0, le=100)
    width: int | None = Field(None, ge=16, le=8192)
    height: int | None = Field(None, ge=16, le=8192)
    first_round_frames: int | None = Field(None, ge=2, le=10_000)
    round_frames: int | None = Field(None, ge=2, le=10_000)
    overlap: int | None = Field(None, ge=0)


class QualityPreset(_Strict):
    name: str
    label: str = ""
    description: str = ""
    steps: int = Field(ge=1, le=1000)
    guidance: Finite = Field(ge=0, le=100)
    width: int = Field(ge=16, le=8192)
    height: int = Field(ge=16, le=8192)
    first_round_frames: int = Field(ge=2, le=10_000)
    round_frames: int = Field(ge=2, le=10_000)
    overlap: int = Field(ge=0)
    init_samples: int = Field(16, ge=1, le=100_000, description="Cycles samples of the first-frame render")
    generators: dict[str, GeneratorQuality] = Field(default_factory=dict, description="per-generator values")

    @model_validator(mode="after")
    def _consistent(self) -> "QualityPreset":
        if self.overlap >= self.round_frames:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than round_frames ({self.round_frames})")
        if self.width % 16 or self.height % 16:
            raise ValueError(f"width and height must be multiples of 16 (the video models' patch grid), got {self.width}x{self.height}")
        for generator, values in self.generators.items():
            merged = {**self.model_dump(exclude={"generators"}), **TRAINED.get(generator, {}),
                      **values.model_dump(exclude_none=True)}
            changed = {k: merged[k] for k, v in TRAINED.get(generator, {}).items() if merged[k] != v}
            if changed:
                raise ValueError(f"{generator} presets keep what it was trained on ({TRAINED[generator]}) and vary only "
                                 f"the steps; this one changes {changed} (set size or round lengths on a shot instead)")
            if merged["overlap"] >= merged["round_frames"]:
                raise ValueError(f"{generator}: overlap must be smaller than round_frames")
        return self

    def for_generator(self, generator: str | None) -> "QualityPreset":
        """This preset as `generator` runs it: its own values where it has them; a generator
        with trained settings (TRAINED) always gets those."""
        values = self.generators.get(generator) if generator else None
        trained = TRAINED.get(generator, {}) if generator else {}
        if values is None and not trained:
            return self
        update = {**trained, **({} if values is None else values.model_dump(exclude_none=True))}
        return self.model_copy(update=update)

    @property
    def rounds(self) -> dict:
        return {"first_round_frames": self.first_round_frames, "round_frames": self.round_frames, "overlap": self.overlap}


class ModelInfo(_Strict):
    name: str
    label: str = ""
    description: str = ""
    weights: list[str] = Field(default_factory=list, description="Hugging Face repository ids")
    vram_gb: Finite = Field(ge=0)
    needs_gpu: bool = True
    seed: int = Field(0, ge=0, le=2**32 - 1, description="the seed a shot uses unless it sets one (the model's authors')")


class RuntimeSettings(_Strict):
    vram_mode: Literal["gpu", "model", "group", "sequential"]
    vae_tiling: bool = False
    fp8_storage: bool = False


class VramPreset(_Strict):
    name: str
    label: str = ""
    description: str = ""
    gb: Finite | None = Field(None, gt=0, description="card size; None for `auto`")
    modes: dict[str, RuntimeSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _auto_or_sized(self) -> "VramPreset":
        if self.name == "auto":
            if self.gb is not None or self.modes:
                raise ValueError("`auto` chooses a sized preset at run time: give it no gb and no modes")
        elif self.gb is None or not self.modes:
            raise ValueError("a sized VRAM preset needs gb and modes")
        return self


class Presets(_Strict):
    root: Path
    cameras: dict[str, CameraPathPreset]
    quality: dict[str, QualityPreset]
    models: dict[str, ModelInfo]
    vram: dict[str, VramPreset]


# --- loading ---------------------------------------------------------------------------------
def find_presets_dir() -> Path:
    """$SPATIA_PRESETS_DIR, else the repository's presets/ beside backend/."""
    configured = os.environ.get(PRESETS_DIR_ENV, "")
    candidates = [Path(configured).expanduser()] if configured else []
    candidates.append(Path(__file__).resolve().parents[3] / "presets")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise PresetError(f"no presets folder found (looked in {', '.join(map(str, candidates))}); set ${PRESETS_DIR_ENV}")


def _read(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PresetError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON ({exc.msg})") from None


def _validate(model, data, path: Path, **extra):
    if not isinstance(data, dict):
        raise PresetError(f"{path}: expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate({**data, **extra})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors())
        raise PresetError(f"{path}: invalid {model.__name__} ({problems})") from None


def _folder(root: Path, name: str, model) -> dict:
    folder = root / name
    if not folder.is_dir():
        raise PresetError(f"{folder}: missing presets folder")
    found = {}
    for path in sorted(folder.glob("*.json")):
        data = _read(path)
        if model is not CameraPathPreset:
            data = {"name": path.stem, **data} if isinstance(data, dict) else data
            if isinstance(data, dict) and data["name"] != path.stem:
                raise PresetError(f"{path}: name {data['name']!r} differs from the file name {path.stem!r}")
        found[path.stem] = _validate(model, data, path)
    if not found:
        raise PresetError(f"{folder}: no presets")
    return found


@functools.lru_cache(maxsize=8)
def _load(root: Path) -> Presets:
    vram_path = root / "vram.json"
    data = _read(vram_path) if vram_path.is_file() else None
    if not isinstance(data, dict) or not isinstance(data.get("presets"), list):
        raise PresetError(f"{vram_path}: expected {{\"presets\": [...]}}")
    vram = {}
    for i, entry in enumerate(data["presets"]):
        preset = _validate(VramPreset, entry, Path(f"{vram_path}[presets][{i}]"))
        if preset.name in vram:
            raise PresetError(f"{vram_path}: VRAM preset {preset.name!r} is listed twice")
        vram[preset.name] = preset
    return Presets(root=root, cameras=_folder(root, "cameras", CameraPathPreset),
                   quality=_folder(root, "quality", QualityPreset), models=_folder(root, "models", ModelInfo), vram=vram)


def load_presets(root: str | os.PathLike | None = None) -> Presets:
    """Every preset, validated; a PresetError names the file and field of the first problem."""
    return _load(Path(root).resolve() if root is not None else find_presets_dir().resolve())


def _get(table: dict, kind: str, name: str):
    try:
        return table[name]
    except KeyError:
        raise PresetError(f"unknown {kind} preset {name!r}; known: {', '.join(table)}") from None


def quality(name: str, root=None, generator: str | None = None) -> QualityPreset:
    """A quality preset; with `generator`, as that generator runs it (`QualityPreset.for_generator`)."""
    return _get(load_presets(root).quality, "quality", name).for_generator(generator)


DEFAULT_QUALITY = "standard"


@dataclasses.dataclass(frozen=True)
class GeneratorSettings:
    """What a generator is asked to run: a quality preset as that generator runs it, with the
    user's own values over it."""

    generator: str
    quality: str
    steps: int
    guidance: float
    seed: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def generator_settings(generator: str, quality_name: str | None = None, *, steps: int | None = None,
                       guidance: float | None = None, seed: int | None = None, root=None) -> GeneratorSettings:
    """The one place a quality preset becomes generator settings, for every entry path (command
    line, service, shots, batch, Ray, Flamenco, Blender): the preset's steps and guidance for
    `generator` (`QualityPreset.for_generator`) unless `steps` / `guidance` are given, and the
    model's own seed (`ModelInfo.seed`, spatia-5b: the authors' 20917; 0 for a model without a
    preset) unless `seed` is given."""
    table = load_presets(root)
    preset = _get(table.quality, "quality", quality_name or DEFAULT_QUALITY).for_generator(generator)
    info = table.models.get(generator)
    return GeneratorSettings(
        generator=generator, quality=preset.name,
        steps=int(preset.steps if steps is None else steps),
        guidance=float(preset.guidance if guidance is None else guidance),
        seed=int((info.seed if info is not None else 0) if seed is None else seed),
    )


def model(name: str, root=None) -> ModelInfo:
    return _get(load_presets(root).models, "model", name)


def camera_path(name: str, root=None) -> CameraPathPreset:
    return _get(load_presets(root).cameras, "camera path", name)


def vram_preset(name: str, root=None) -> VramPreset:
    return _get(load_presets(root).vram, "VRAM", name)


def vram_preset_for(gb: float, root=None) -> VramPreset:
    """The largest sized preset a card of `gb` GiB holds (cards report a little under their
    nominal size, so 1 GiB of slack); the smallest preset for cards below every size."""
    sized = sorted((p for p in load_presets(root).vram.values() if p.gb is not None), key=lambda p: p.gb)
    if not sized:
        raise PresetError("no sized VRAM presets")
    fitting = [p for p in sized if p.gb <= gb + 1.0]
    return fitting[-1] if fitting else sized[0]


def vram_mode_for(gb: float, generator: str = "spatia-5b", root=None) -> RuntimeSettings:
    """Offload settings for `generator` on a card with `gb` GiB of memory."""
    preset = vram_preset_for(gb, root)
    try:
        return preset.modes[generator]
    except KeyError:
        raise PresetError(f"VRAM preset {preset.name!r} has no settings for generator {generator!r}; "
                          f"it has {', '.join(preset.modes)}") from None


def gpu_memory_gb() -> float | None:
    """Total memory of the first CUDA device in GiB, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / 2**30


def runtime_settings(vram: str, generator: str, *, gpu_gb: float | None = None, root=None) -> RuntimeSettings | None:
    """Offload settings for a shot's `vram` value: a preset name ("auto", "24gb"), or a
    RuntimeOptions mode ("gpu", "model", "group", "sequential"). None for generators that need
    no GPU, and for "auto" on a machine without one (the generator then says what it needs)."""
    info = load_presets(root).models.get(generator)
    if info is not None and not info.needs_gpu:
        return None
    if vram in VRAM_MODES:
        return RuntimeSettings(vram_mode=vram)
    if vram == "auto":
        gb = gpu_gb if gpu_gb is not None else gpu_memory_gb()
        return None if gb is None else vram_mode_for(gb, generator, root)
    preset = vram_preset(vram, root)
    if generator not in preset.modes:
        raise PresetError(f"VRAM preset {vram!r} has no settings for generator {generator!r}")
    return preset.modes[generator]


def fit_resolution(width: int, height: int, preset: QualityPreset) -> tuple[int, int]:
    """The scene's aspect at about the preset's pixel count, both sides multiples of 16."""
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {width}x{height}")
    scale = math.sqrt(preset.width * preset.height / (width * height))
    return max(16, int(round(width * scale / 16)) * 16), max(16, int(round(height * scale / 16)) * 16)


__all__ = [
    "CAMERA_TYPES", "DEFAULT_QUALITY", "EASINGS", "MOTIONS", "PRESETS_DIR_ENV", "TRAINED", "CameraKey", "CameraPathPreset",
    "GeneratorQuality", "GeneratorSettings", "generator_settings",
    "ModelInfo", "PresetError",
    "Presets", "QualityPreset", "RuntimeSettings", "VramPreset", "camera_keys", "camera_path", "ease",
    "find_presets_dir", "fit_resolution", "gpu_memory_gb", "load_presets", "model", "quality", "runtime_settings",
    "vram_mode_for", "vram_preset", "vram_preset_for",
]
