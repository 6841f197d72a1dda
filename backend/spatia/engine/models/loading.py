"""Lazy, load-once access to a pretrained model behind an adapter.

An adapter is built cheaply (nothing imported or read); the weights load on first use from the
preset's local folder, never from the network. Tests pass a ready model instead.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import torch

from . import registry
from .base import ModelRequirements, ModelUnavailable
from .imaging import resolve_device

MODELS_EXTRA_INSTALL = "pip install 'spatia-blender[models]'"


def require_modules(model_name: str, modules: tuple[str, ...], install: str = MODELS_EXTRA_INSTALL) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelUnavailable(f"{model_name} needs the Python package(s) {', '.join(missing)}; run: {install}")


class PretrainedAdapter:
    """Holds one model: given, or loaded once from `model_dir` or the preset's cached weights."""

    default_preset: str = ""
    required_modules: tuple[str, ...] = ("transformers",)
    install_hint: str = MODELS_EXTRA_INSTALL

    def __init__(
        self,
        preset: str | None = None,
        *,
        model: Any = None,
        model_dir: str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        self.preset = registry.get_preset(preset or self.default_preset)
        self.model_dir = Path(model_dir).expanduser() if model_dir is not None else None
        self.device = resolve_device(device)
        self.dtype = dtype
        self._model = model.to(self.device, dtype) if model is not None else None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.preset.name

    @property
    def requirements(self) -> ModelRequirements:
        weights = (str(self.model_dir),) if self.model_dir is not None else self.preset.repo_ids
        return ModelRequirements(needs_gpu=False, weights=weights, min_vram_gb=self.preset.vram_gb)

    def check_available(self) -> None:
        if self._model is not None:
            return
        require_modules(self.name, self.required_modules, self.install_hint)
        self._weights_dir()

    def _weights_dir(self) -> Path:
        if self.model_dir is not None:
            if not (self.model_dir / "config.json").is_file():
                raise ModelUnavailable(f"{self.model_dir} holds no config.json; point model_dir at a downloaded checkpoint folder")
            return self.model_dir
        return registry.require_weights(self.preset)[0]

    def _load(self, folder: Path) -> Any:
        """Build the model from a local checkpoint folder."""
        raise NotImplementedError

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self.check_available()
                    self._model = self._load(self._weights_dir()).to(self.device, self.dtype).eval()
        return self._model
