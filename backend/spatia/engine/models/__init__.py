"""Models behind small interfaces: depth (+ intrinsics), dynamic masks, video generation.

Importing this package loads no model and imports neither transformers nor diffusers; the
factories build cheap adapters whose weights load from local files on first use.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import (
    BoxPrompt,
    Cancelled,
    DepthEstimator,
    DepthResult,
    GenerationRequest,
    GenerationResult,
    ModelInputError,
    ModelRequirements,
    ModelUnavailable,
    PointPrompt,
    Prompt,
    Segmenter,
    VideoGenerator,
    parse_prompt,
)
from .depth_anything import DepthAnythingMetricEstimator
from .depth_exact import ExactDepth
from .depth_mapanything import MapAnythingEstimator
from .depth_pro import DepthProEstimator
from .preview import PreviewGenerator
from .registry import PRESETS, ModelPreset, get_preset, is_present, require_weights
from .segment import Sam2VideoSegmenter, Sam3VideoSegmenter, UserMasks

_DEPTH: dict[str, Callable[..., DepthEstimator]] = {
    "depth-pro": DepthProEstimator,
    "depth-anything-v2-metric-indoor": DepthAnythingMetricEstimator,
    "depth-anything-v2-metric-outdoor": DepthAnythingMetricEstimator,
    "map-anything": MapAnythingEstimator,
}
_SEGMENTERS: dict[str, Callable[..., Segmenter]] = {
    "sam3": Sam3VideoSegmenter,
    "sam2": Sam2VideoSegmenter,
}
_GENERATORS: dict[str, Callable[..., VideoGenerator]] = {
    "preview": lambda **kwargs: PreviewGenerator(**kwargs),
}


def register_generator(name: str, factory: Callable[..., VideoGenerator]) -> None:
    """Plug in a generator implementation for a preset name (e.g. "spatia-5b", "wan-vace-1.3b")."""
    if get_preset(name).role != "generator":
        raise ValueError(f"{name} is not a generator preset")
    _GENERATORS[name] = factory


def _spatia_generator(**kwargs) -> VideoGenerator:
    from .spatia import SpatiaGenerator  # imports no diffusers until weights load

    return SpatiaGenerator("spatia-5b", **kwargs)


def _wan_vace_generator(preset: str) -> Callable[..., VideoGenerator]:
    def factory(**kwargs) -> VideoGenerator:
        from .wan_vace import WanVaceGenerator

        return WanVaceGenerator(preset, **kwargs)

    return factory


register_generator("spatia-5b", _spatia_generator)
register_generator("wan-vace-1.3b", _wan_vace_generator("wan-vace-1.3b"))
register_generator("wan-vace-14b", _wan_vace_generator("wan-vace-14b"))


def _lookup(table: dict, role: str, name: str):
    if name in table:
        return table[name]
    known = sorted(p.name for p in PRESETS.values() if p.role == role)
    if name in known:
        raise ModelUnavailable(
            f"the {role} {name!r} has no implementation installed in this build; available: {', '.join(sorted(table))}"
        )
    raise KeyError(f"unknown {role} {name!r}; known: {', '.join(known)}")


def get_depth_estimator(name: str = "depth-pro", **kwargs) -> DepthEstimator:
    factory = _lookup(_DEPTH, "depth", name)
    return factory(name, **kwargs)


def get_segmenter(name: str = "sam3", **kwargs) -> Segmenter:
    factory = _lookup(_SEGMENTERS, "segmenter", name)
    return factory(name, **kwargs)


def get_generator(name: str = "preview", **kwargs) -> VideoGenerator:
    return _lookup(_GENERATORS, "generator", name)(**kwargs)


__all__ = [
    "PRESETS",
    "BoxPrompt",
    "Cancelled",
    "DepthAnythingMetricEstimator",
    "DepthEstimator",
    "DepthProEstimator",
    "DepthResult",
    "ExactDepth",
    "GenerationRequest",
    "GenerationResult",
    "MapAnythingEstimator",
    "ModelInputError",
    "ModelPreset",
    "ModelRequirements",
    "ModelUnavailable",
    "PointPrompt",
    "PreviewGenerator",
    "Prompt",
    "Sam2VideoSegmenter",
    "Sam3VideoSegmenter",
    "Segmenter",
    "UserMasks",
    "VideoGenerator",
    "get_depth_estimator",
    "get_generator",
    "get_preset",
    "get_segmenter",
    "is_present",
    "parse_prompt",
    "register_generator",
    "require_weights",
]
