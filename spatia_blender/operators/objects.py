"""The world's remembered objects: fetch them as Empties, forget one on the backend now.

Directing needs no operator: the shot reads the Empties when it is generated (keys, switches,
deleted Empties, duplicates), see object_empties.directions_for_scene."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty

from .. import object_empties, runtime
from ..compat import poll_message
from .common import OBJECTS_TASK, client_or_report, fetch_objects, run_async


def _objects_busy(cls) -> bool:
    if runtime.runner.busy(OBJECTS_TASK):
        poll_message(cls, "The objects are being fetched or changed; wait for it to finish")
        return True
    return False


class SPATIA_OT_objects_fetch(bpy.types.Operator):
    """Fetch the world's remembered objects (people, cars...) as Empties in the collection "Spatia Objects", with
    their points. Key an Empty to direct its object, delete it to forget it, duplicate it to copy it"""

    bl_idname = "spatia.objects_fetch"
    bl_label = "Fetch Objects"
    bl_options = {"REGISTER"}  # lands later, off the main thread: its own undo step then

    restore: BoolProperty(name="Restore Deleted", default=False, options={"SKIP_SAVE"},
                          description="Bring back the Empties deleted in Blender (otherwise they stay deleted and are "
                                      "forgotten with the next shot)")

    @classmethod
    def poll(cls, context):
        if context.scene is None or not context.scene.spatia.world_id:
            return poll_message(cls, "Choose a world first (Spatia > World)")
        return not _objects_busy(cls)

    def execute(self, context):
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        world_id, restore = context.scene.spatia.world_id, self.restore
        return run_async(self, context, OBJECTS_TASK, lambda task, report: fetch_objects(client, world_id),
                         lambda scene, fetched: object_empties.apply_objects(scene, fetched, restore=restore),
                         started="fetching the objects...")


class SPATIA_OT_object_forget(bpy.types.Operator):
    """Forget the active object on the backend now (a new objects version without it) and remove its Empty.
    Deleting the Empty instead forgets it with the next shot"""

    bl_idname = "spatia.object_forget"
    bl_label = "Forget Object Now"
    bl_options = {"REGISTER"}  # changes the backend: no Adjust Last Operation

    @classmethod
    def poll(cls, context):
        empty = object_empties.owner_of(getattr(context, "active_object", None))
        if empty is None:
            return poll_message(cls, "Select an object's Empty (Spatia > Objects > Fetch Objects makes them)")
        settings = context.scene.spatia
        if empty.spatia_object.object_id not in object_empties.known_ids(settings) or settings.objects_version < 0:
            return poll_message(cls, "The backend does not have this object yet (a copy is made by the next generation)")
        return not _objects_busy(cls)

    def execute(self, context):
        empty = object_empties.owner_of(context.active_object)
        settings = context.scene.spatia
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        world_id, object_id, base = settings.objects_world, empty.spatia_object.object_id, settings.objects_version
        name = empty.name

        def done(scene, answer):
            object_empties.forget_applied(scene, object_id, int(answer["version"]))
            return f"forgot {name} (objects version {answer['version']})"

        return run_async(self, context, OBJECTS_TASK,
                         lambda task, report: client.forget_object(world_id, object_id, base), done,
                         started=f"forgetting {name}...")


CLASSES = (SPATIA_OT_objects_fetch, SPATIA_OT_object_forget)
