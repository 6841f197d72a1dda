"""Object memory: the world's moving things, kept beside the static memory (docs/objects.md)."""

from .associate import associate, register
from .model import Crop, ObjectSet, ObjectTrack, rotation, snap_up
from .motion import MotionState, PosePath, predict
from .observe import Observation, observe, split_components
from .render import draw_objects, frame_points, in_view
from .store import ObjectStore, ObjectStoreError
from .tracking import Direction, KeyViews, ObjectDirectionError, apply_directions, learn, predict_all

__all__ = [
    "Crop", "Direction", "KeyViews", "MotionState", "ObjectDirectionError", "ObjectSet", "ObjectStore", "ObjectStoreError",
    "ObjectTrack", "Observation", "PosePath", "apply_directions", "associate", "draw_objects", "frame_points",
    "in_view", "learn", "observe", "predict", "predict_all", "register", "rotation",
    "snap_up", "split_components",
]
