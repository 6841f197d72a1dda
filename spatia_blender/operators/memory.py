"""The memory object: import a version, revert to one, push the artist's edits.

All three work with the memory object in Edit Mode: its edits are written to the mesh before
it is read, and an import replaces the mesh outside Edit Mode, then returns to it."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from .. import payloads, runtime, scene_data
from ..compat import poll_message
from ..memory_object import EditModeError
from .common import MEMORY_TASK, apply_memory, client_or_report, fetch_memory, run_async


def _memory_busy(cls) -> bool:
    if runtime.runner.busy(MEMORY_TASK):
        poll_message(cls, "Another memory download, push or revert is running; wait for it to finish")
        return True
    return False


class SPATIA_OT_memory_import(bpy.types.Operator):
    """Import a memory version of the world as the point object "Spatia Memory" (replacing it)"""

    bl_idname = "spatia.memory_import"
    bl_label = "Import Memory Version"
    bl_options = {"REGISTER"}

    version: IntProperty(name="Version", default=-1, min=-1, description="-1: the latest version")

    @classmethod
    def poll(cls, context):
        if context.scene is None or not context.scene.spatia.world_id:
            return poll_message(cls, "Choose a world first (Spatia > World)")
        return not _memory_busy(cls)

    def execute(self, context):
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        world_id = context.scene.spatia.world_id
        version = None if self.version < 0 else self.version
        root = runtime.shot_dir(context.scene)
        return run_async(self, context, MEMORY_TASK,
                         lambda task, report: fetch_memory(client, world_id, version, data_root=root),
                         apply_memory, started="downloading the memory...")


class SPATIA_OT_memory_revert(bpy.types.Operator):
    """Make the selected memory version the newest one again (a new version equal to it) and import it"""

    bl_idname = "spatia.memory_revert"
    bl_label = "Revert to Version"
    bl_options = {"REGISTER"}  # changes the backend: no Adjust Last Operation (a redo would revert again)

    version: IntProperty(name="Version", default=-1, min=-1, description="-1: the version selected in the list")

    @classmethod
    def poll(cls, context):
        settings = context.scene.spatia if context.scene else None
        if settings is None or not settings.world_id:
            return poll_message(cls, "Choose a world first (Spatia > World)")
        if len(settings.versions) == 0 or settings.memory_version < 0:
            return poll_message(cls, "Import the memory first: a revert is made on top of the version you have")
        return not _memory_busy(cls)

    def execute(self, context):
        settings = context.scene.spatia
        version = self.version
        if version < 0:
            if not 0 <= settings.version_index < len(settings.versions):
                self.report({"ERROR"}, "select a memory version in the list")
                return {"CANCELLED"}
            version = settings.versions[settings.version_index].version
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        world_id, parent = settings.world_id, settings.memory_version
        root = runtime.shot_dir(context.scene)

        def work(task, report):
            new = client.revert(world_id, version, parent)
            return fetch_memory(client, world_id, int(new["version"]), data_root=root)

        def done(scene, fetched):
            return f"reverted to version {version}: " + apply_memory(scene, fetched)

        return run_async(self, context, MEMORY_TASK, work, done, started=f"reverting to version {version}...")


class SPATIA_OT_memory_push(bpy.types.Operator):
    """Send your edits of the memory object (deleted, moved and duplicated points, and, when asked, points sampled
    from the selected mesh objects) to the backend as a new memory version"""

    bl_idname = "spatia.memory_push"
    bl_label = "Push Memory Edits"
    bl_options = {"REGISTER"}  # changes the backend: no Adjust Last Operation (a redo would push again)

    message: StringProperty(name="Message", default="edited in Blender")
    include_selected: BoolProperty(name="Add Selected Meshes", default=False,
                                   description="Also sample points (with colours) from the surfaces of the selected mesh "
                                               "objects into the memory")
    hide_added: BoolProperty(name="Hide Added Meshes", default=True,
                             description="Hide the sampled mesh objects once their points are in the memory")
    allow_empty: BoolProperty(name="Allow Deleting Everything", default=False, options={"SKIP_SAVE"},
                              description="Push even when the edit deletes every point of the memory")

    @classmethod
    def poll(cls, context):
        if scene_data.find_memory_object(context) is None:
            return poll_message(cls, "No memory object: import a memory version first")
        return not _memory_busy(cls)

    def invoke(self, context, event):
        """A dialog first: the message, and whether to sample the selected meshes (there is no
        Adjust Last Operation afterwards, since that would push again)."""
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "message")
        layout.prop(self, "include_selected")
        row = layout.row()
        row.enabled = self.include_selected
        row.prop(self, "hide_added")

    def execute(self, context):
        obj = scene_data.find_memory_object(context)
        if obj is None:
            self.report({"ERROR"}, "no memory object: import a memory version first")
            return {"CANCELLED"}
        world_id = str(obj.get(scene_data.MEMORY_PROP_WORLD, "")) or context.scene.spatia.world_id
        parent = int(obj.get(scene_data.MEMORY_PROP_VERSION, -1))
        if not world_id or parent < 0:
            self.report({"ERROR"}, f"'{obj.name}' does not say which world and version it came from; import the memory again")
            return {"CANCELLED"}
        try:
            current = scene_data.memory_object.read_memory(obj)  # in Edit Mode: the geometry being edited
        except EditModeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        sources = [o for o in context.selected_objects if o.type == "MESH" and o != obj] if self.include_selected else []
        spacing = float(obj.get(scene_data.MEMORY_PROP_VOXEL, context.scene.spatia.voxel_size))
        extra_xyz, extra_rgb = scene_data.sample_objects(sources, context.evaluated_depsgraph_get(), spacing)
        source_names = [o.name for o in sources]
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        message, allow_empty = self.message, self.allow_empty
        root = runtime.shot_dir(context.scene)

        def work(task, report):
            base = fetch_memory(client, world_id, parent, data_root=root)["memory"]
            edits = payloads.memory_edits(base["point_id"], base["xyz"], current["point_id"], current["xyz"], current["rgb"],
                                          parent=parent, message=message, extra_xyz=extra_xyz, extra_rgb=extra_rgb)
            summary = payloads.edits_summary(edits)
            if not (edits["delete_ids"] or edits["move_ids"] or edits["add_xyz"]):
                return {"summary": "no changes to push", "fetched": None}
            if payloads.deletes_everything(edits, len(base["point_id"])) and not allow_empty:
                raise ValueError(f"nothing pushed: the edit would delete all {len(base['point_id']):,} points of version "
                                 f"{parent} and leave an empty memory; import the memory again, or push with "
                                 "'Allow Deleting Everything' if that is what you want")
            new = client.memory_edits(world_id, edits)
            return {"summary": summary, "fetched": fetch_memory(client, world_id, int(new["version"]), data_root=root)}

        def done(scene, result):
            if result["fetched"] is None:
                return result["summary"]
            text = apply_memory(scene, result["fetched"])
            if hide:
                for name in source_names:
                    source = bpy.data.objects.get(name)
                    if source is not None:
                        source.hide_set(True)
                        source.hide_render = True
            return f"pushed ({result['summary']}): {text}"

        hide = self.hide_added
        return run_async(self, context, MEMORY_TASK, work, done, started="pushing memory edits...")


CLASSES = (SPATIA_OT_memory_import, SPATIA_OT_memory_revert, SPATIA_OT_memory_push)
