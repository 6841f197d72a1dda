"""Spatial-consistency evaluation against Blender ground truth (`spatia eval`).

scenes.py and trajectories.py build the scenes and closed-loop camera paths with bpy, moving.py
the scenes with moving objects; groundtruth.py renders and caches them (with instance maps and
object poses); runner.py runs the world loop and measures it with spatia.engine.metrics;
object_runner.py runs the moving-object scenes with object memory on and off and measures them
with object_metrics.py; report.py writes report.json and report.md with pictures.

Importing this package imports neither bpy nor any model.
"""

import importlib

# Names re-exported lazily, so that `spatia --help` (which imports this package's commands)
# does not import the engine.
_EXPORTS = {
    "OBJECT_SCENES": ".groundtruth",
    "SCENES": ".groundtruth",
    "STATIC_SCENES": ".groundtruth",
    "EvalScene": ".groundtruth",
    "GroundTruth": ".groundtruth",
    "TruthObject": ".groundtruth",
    "get_scene": ".groundtruth",
    "render_ground_truth": ".groundtruth",
    "EvalOptions": ".runner",
    "evaluate_scene": ".runner",
    "run_eval": ".runner",
    "true_overlap": ".runner",
    "round_plan": ".trajectories",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
