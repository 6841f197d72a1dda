"""Model presets as data, and where their weights live on this machine.

Weights are looked up, never fetched, except by `download()`, which only the CLI calls
(`spatia models download NAME`). A preset is present when every file it lists is either in
the Hugging Face cache (at its revision) or in a user folder under $SPATIA_MODELS_DIR:
`$SPATIA_MODELS_DIR/<preset name>/` or `$SPATIA_MODELS_DIR/<owner>/<repo>/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .base import ModelUnavailable
from .tiny import tiny_depth_anything, tiny_depth_pro, tiny_sam2_video  # noqa: F401  (re-exported builders)

Role = Literal["generator", "depth", "segmenter"]
MODELS_DIR_ENV = "SPATIA_MODELS_DIR"


@dataclass(frozen=True)
class WeightSource:
    """One Hugging Face repository at a revision, and the files that prove it is complete."""

    repo_id: str
    revision: str = "main"
    files: tuple[str, ...] = ("config.json",)
    gated: bool = False


@dataclass(frozen=True)
class ModelPreset:
    name: str
    role: Role
    sources: tuple[WeightSource, ...]
    vram_gb: float
    description: str

    @property
    def repo_ids(self) -> tuple[str, ...]:
        return tuple(s.repo_id for s in self.sources)


_TRANSFORMERS_FILES = ("config.json", "model.safetensors")

PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            "depth-pro", "depth",
            (WeightSource("apple/DepthPro-hf", files=_TRANSFORMERS_FILES + ("preprocessor_config.json",)),),
            vram_gb=4.0, description="Apple DepthPro: metric depth and focal length from one image",
        ),
        ModelPreset(
            "depth-anything-v2-metric-indoor", "depth",
            (WeightSource("depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf",
                          files=_TRANSFORMERS_FILES + ("preprocessor_config.json",)),),
            vram_gb=1.0, description="Depth Anything V2 metric (Hypersim, indoor, max 20 m); needs a focal length",
        ),
        ModelPreset(
            "depth-anything-v2-metric-outdoor", "depth",
            (WeightSource("depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf",
                          files=_TRANSFORMERS_FILES + ("preprocessor_config.json",)),),
            vram_gb=1.0, description="Depth Anything V2 metric (Virtual KITTI, outdoor, max 80 m); needs a focal length",
        ),
        ModelPreset(
            "map-anything", "depth",
            (WeightSource("facebook/map-anything", files=("config.json",)),),
            vram_gb=12.0, description="MapAnything multi-view metric reconstruction (needs the mapanything package)",
        ),
        ModelPreset(
            "sam3", "segmenter",
            (WeightSource("facebook/sam3", files=_TRANSFORMERS_FILES, gated=True),),
            vram_gb=8.0, description="SAM3 video: dynamic entities from text prompts (\"person\", \"car\")",
        ),
        ModelPreset(
            "sam2", "segmenter",
            (WeightSource("facebook/sam2.1-hiera-tiny", files=_TRANSFORMERS_FILES),),
            vram_gb=2.0, description="SAM2.1 video (hiera tiny): dynamic entities from clicks or boxes",
        ),
        ModelPreset(
            "spatia-5b", "generator",
            (WeightSource("Wan-AI/Wan2.2-TI2V-5B-Diffusers", files=("model_index.json",)),
             WeightSource("Jinjing713/Spatia", files=())),
            vram_gb=24.0, description="Spatia: Wan2.2-TI2V-5B with the Spatia control branch and LoRA",
        ),
        ModelPreset(
            "wan-vace-1.3b", "generator",
            (WeightSource("Wan-AI/Wan2.1-VACE-1.3B-diffusers", files=("model_index.json",)),),
            vram_gb=12.0, description="Wan2.1 VACE 1.3B (diffusers WanVACEPipeline)",
        ),
        ModelPreset(
            "wan-vace-14b", "generator",
            (WeightSource("Wan-AI/Wan2.1-VACE-14B-diffusers", files=("model_index.json",)),),
            vram_gb=40.0, description="Wan2.1 VACE 14B (diffusers WanVACEPipeline)",
        ),
        ModelPreset(
            "preview", "generator", (), vram_gb=0.0,
            description="Preview: the memory projection with classically filled holes; CPU, no weights, not generative",
        ),
    )
}


def get_preset(name: str) -> ModelPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def presets_for(role: Role) -> list[ModelPreset]:
    return [p for p in PRESETS.values() if p.role == role]


def download_command(name: str) -> str:
    return f"spatia models download {name}"


# --- finding weights -------------------------------------------------------------------------
def _user_dirs(preset: ModelPreset, source: WeightSource) -> list[Path]:
    root = os.environ.get(MODELS_DIR_ENV)
    if not root:
        return []
    base = Path(root).expanduser()
    candidates = [base / source.repo_id]
    if len(preset.sources) == 1:
        candidates.insert(0, base / preset.name)
    return candidates


def _hf_snapshot_dir(source: WeightSource) -> Path | None:
    """The cached snapshot folder holding every listed file of `source`, or None."""
    from huggingface_hub import try_to_load_from_cache

    if not source.files:
        return _any_cached_snapshot(source)
    snapshot = None
    for filename in source.files:
        path = try_to_load_from_cache(source.repo_id, filename, revision=source.revision)
        if not isinstance(path, str):  # None or the "known missing" sentinel
            return None
        snapshot = Path(path).parents[len(Path(filename).parts) - 1]
    return snapshot


def _any_cached_snapshot(source: WeightSource) -> Path | None:
    """For repos without a fixed file list: the snapshot the revision ref points at."""
    from huggingface_hub.constants import HF_HUB_CACHE

    repo_dir = Path(HF_HUB_CACHE) / f"models--{source.repo_id.replace('/', '--')}"
    ref = repo_dir / "refs" / source.revision
    commit = ref.read_text().strip() if ref.is_file() else source.revision
    snapshot = repo_dir / "snapshots" / commit
    return snapshot if snapshot.is_dir() and any(snapshot.iterdir()) else None


def find_source(preset: ModelPreset, source: WeightSource) -> Path | None:
    """Local folder with `source`'s files: a user folder first, then the Hugging Face cache."""
    for folder in _user_dirs(preset, source):
        if folder.is_dir() and all((folder / f).is_file() for f in source.files) and any(folder.iterdir()):
            return folder
    return _hf_snapshot_dir(source)


def find_weights(preset: ModelPreset | str) -> list[Path] | None:
    """One local folder per weight source of the preset, or None if any is missing."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    folders = [find_source(preset, s) for s in preset.sources]
    return None if any(f is None for f in folders) else folders


def is_present(preset: ModelPreset | str) -> bool:
    return find_weights(preset) is not None


def require_weights(preset: ModelPreset | str) -> list[Path]:
    """Local weight folders of the preset, or ModelUnavailable naming the download command."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    folders = find_weights(preset)
    if folders is None:
        missing = [s for s in preset.sources if find_source(preset, s) is None]
        repos = ", ".join(s.repo_id for s in missing)
        hint = ""
        if any(s.gated for s in missing):
            hint = " (gated on Hugging Face: accept its licence on the model page and run `hf auth login` first)"
        raise ModelUnavailable(
            f"weights for {preset.name} ({repos}) are not in the Hugging Face cache or ${MODELS_DIR_ENV}; "
            f"run: {download_command(preset.name)}{hint}"
        )
    return folders


def download(preset: ModelPreset | str) -> list[Path]:
    """Fetch the preset's weights into the Hugging Face cache (network). Only the CLI calls this."""
    from huggingface_hub import snapshot_download

    preset = get_preset(preset) if isinstance(preset, str) else preset
    return [Path(snapshot_download(s.repo_id, revision=s.revision)) for s in preset.sources]
