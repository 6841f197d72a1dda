"""Models the service loads once and keeps: one instance per generator preset (and one depth
estimator and segmenter), each used by one job at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable

from spatia.engine.models.base import DepthEstimator, Segmenter, VideoGenerator

from .errors import invalid

GeneratorFactory = Callable[[], VideoGenerator]
DEFAULT_DEPTH_MODEL = "depth-pro"
DEFAULT_SEGMENTER = "sam3"


PRELOADED_MODULES = ("cv2",)


def preload_modules() -> None:
    """Import, once and before any request, the optional modules whose availability models test
    with `importlib.util.find_spec`: a find_spec that races another thread's first import of the
    module sees it half-initialised (`cv2.__spec__ is None` -> ValueError, a 500)."""
    import importlib

    for name in PRELOADED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # absent: find_spec says so cleanly, and the model reports it


class ModelCache:
    """`extra_generators` adds generator names beyond the registry's presets (plug-ins, tests)."""

    def __init__(self, extra_generators: dict[str, GeneratorFactory] | None = None):
        preload_modules()
        self.extra_generators = dict(extra_generators or {})
        self._models: dict[tuple[str, str], object] = {}
        self._build_locks: dict[tuple[str, str], threading.Lock] = {}
        self._use_locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def _get(self, role: str, name: str, build: Callable[[], object]) -> tuple[object, threading.Lock]:
        key = (role, name)
        with self._guard:
            build_lock = self._build_locks.setdefault(key, threading.Lock())
            use_lock = self._use_locks.setdefault(key, threading.Lock())
        with build_lock:  # a slow first build happens once, not once per waiting caller
            if key not in self._models:
                self._models[key] = build()
        return self._models[key], use_lock

    def generator(self, name: str) -> tuple[VideoGenerator, threading.Lock]:
        """The cached generator and the lock to hold while it runs."""
        from spatia.engine.models import get_generator

        factory = self.extra_generators.get(name)
        return self._get("generator", name, factory or (lambda: get_generator(name)))  # type: ignore[return-value]

    def depth_estimator(self, name: str = DEFAULT_DEPTH_MODEL) -> tuple[DepthEstimator, threading.Lock]:
        from spatia.engine.models import get_depth_estimator

        return self._get("depth", name, lambda: get_depth_estimator(name))  # type: ignore[return-value]

    def segmenter(self, name: str = DEFAULT_SEGMENTER) -> tuple[Segmenter, threading.Lock]:
        from spatia.engine.models import get_segmenter

        return self._get("segmenter", name, lambda: get_segmenter(name))  # type: ignore[return-value]

    def check_generator(self, name: str, field: str = "shot.generator") -> None:
        """Unknown name -> 422 naming `field`; known but unusable here -> ModelUnavailable (503)."""
        if name in self.extra_generators:
            return
        from spatia.engine.models.registry import PRESETS

        preset = PRESETS.get(name)
        if preset is None or preset.role != "generator":
            known = sorted([p.name for p in PRESETS.values() if p.role == "generator"] + list(self.extra_generators))
            raise invalid(f"unknown generator {name!r}; known: {', '.join(known)}", field)
        generator, _ = self.generator(name)
        generator.check_available()

    def check_depth_model(self, name: str, field: str = "depth_model") -> None:
        from spatia.engine.models.registry import PRESETS

        preset = PRESETS.get(name)
        if preset is None or preset.role != "depth":
            known = sorted(p.name for p in PRESETS.values() if p.role == "depth")
            raise invalid(f"unknown depth model {name!r}; known: {', '.join(known)}", field)

    def loaded(self) -> list[str]:
        """Models whose weights are in memory: pretrained adapters load theirs on first use
        (`_model` stays None until then); models without weights count once built."""
        with self._guard:
            return sorted(name for (_, name), model in self._models.items()
                          if getattr(model, "_model", True) is not None)
