"""Operators (all searchable with F3 under "Spatia"), one module per concern:

  backend     test the connection; start, stop and read the log of a local backend
  dashboard   open the backend's dashboard in the web browser, signed in
  world       new world from the camera's render or from an image; refresh
  memory      import a memory version, revert to one, push the artist's edits
  objects     the world's remembered objects as Empties: fetch them, forget one now
  shot        prompts, camera path presets, coverage along the path
  generation  generate, follow, resume and cancel a job
  clips       bring a finished job's clip and memory into the scene (no operators)

Network work runs on a worker thread (runtime.runner) and only plain data crosses back; the
Blender changes happen in the completion callbacks, on the main thread, followed by an undo
step. In background mode the same code runs blocking, and the operator reports the outcome.
Operators that change the backend's state do not offer Adjust Last Operation (a redo would
run them again); their Blender changes get an undo step of their own when they land.
"""

from __future__ import annotations

import bpy

from .. import object_empties
from . import backend, dashboard, generation, memory, objects, shot, world
from .clips import apply_clip, follow_and_fetch
from .common import (GENERATE_TASK, MEMORY_TASK, WORLD_TASK, check_connection_async, describe, fetch_memory,
                     watch_connection)
from .shot import export_shot_cameras, shot_for_scene

MODULES = (backend, dashboard, world, memory, objects, shot, generation)
CLASSES = tuple(cls for module in MODULES for cls in module.CLASSES)

__all__ = ["GENERATE_TASK", "MEMORY_TASK", "WORLD_TASK", "CLASSES", "apply_clip", "check_connection_async", "describe",
           "export_shot_cameras", "fetch_memory", "follow_and_fetch", "shot_for_scene"]


def _first_connection_check():
    """Blender just started shows whether the backend is up without a press of Test Connection."""
    check_connection_async(bpy.context)
    return None


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    object_empties.register_handlers()  # deletions and duplicates of object Empties, at once
    if not bpy.app.background and not bpy.app.timers.is_registered(_first_connection_check):
        bpy.app.timers.register(_first_connection_check, first_interval=1.0)
    if not bpy.app.background and not bpy.app.timers.is_registered(watch_connection):
        bpy.app.timers.register(watch_connection, first_interval=5.0, persistent=True)


def unregister():
    object_empties.unregister_handlers()
    for timer in (_first_connection_check, watch_connection):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
