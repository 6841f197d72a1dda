"""Spatial-consistency evaluation against Blender ground truth (`spatia eval`).

scenes.py and trajectories.py build the scenes and closed-loop camera paths with bpy, moving.py
the scenes with moving objects; groundtruth.py renders and caches them (with instance maps and
object poses); runner.py runs the world loop and measures it with spatia.metrics;
object_runner.py runs the moving-object scenes with object memory on and off and measures them
with object_metrics.py; report.py writes report.json and report.md with pictures.

Importing this package imports neither bpy nor any model.
"""

from .groundtruth import (
    OBJECT_SCENES,
    SCENES,
    STATIC_SCENES,
    EvalScene,
    GroundTruth,
    TruthObject,
    get_scene,
    render_ground_truth,
)
from .runner import EvalOptions, evaluate_scene, round_plan, run_eval, true_overlap

__all__ = [
           "OBJECT_SCENES",
           "SCENES",
           "STATIC_SCENES",
           "TruthObject",
           "EvalOptions",
           "EvalScene",
           "GroundTruth",
           "evaluate_scene",
           "get_scene",
           "render_ground_truth",
           "round_plan",
           "run_eval",
           "true_overlap",
]
