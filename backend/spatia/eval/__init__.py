"""Spatial-consistency evaluation against Blender ground truth (`spatia eval`).

scenes.py and trajectories.py build the scenes and closed-loop camera paths with bpy;
groundtruth.py renders and caches them; runner.py runs the world loop and measures it with
spatia.metrics; report.py writes report.json and report.md with pictures.

Importing this package imports neither bpy nor any model.
"""

from .groundtruth import SCENES, EvalScene, GroundTruth, get_scene, render_ground_truth
from .runner import EvalOptions, evaluate_scene, round_plan, run_eval, true_overlap

__all__ = [
           "SCENES",
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
