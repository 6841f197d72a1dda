"""The "Spatia" tab of the 3D View sidebar. Draw code only reads data; drawing functions are
module-level so they can be exercised with any layout object."""

from __future__ import annotations

import bpy

from . import directing, object_empties, plan, runtime
from .operators import GENERATE_TASK

RUNNING = ("queued", "running")
FAILED = ("failed", "interrupted")


def panel_state(settings) -> str:
    """disconnected | idle | running | failed | cancelled, for the panel (and its tests)."""
    if runtime.runner.busy(GENERATE_TASK) or settings.job_status in RUNNING:
        return "running"
    if settings.job_status in FAILED or settings.job_error:
        return "failed"
    if settings.job_status == "cancelled":
        return "cancelled"
    if not runtime.connection.connected:
        return "disconnected"
    return "idle"


def plan_text(scene, settings) -> tuple[str, bool]:
    start, end = settings.frame_range(scene)
    count = end - start + 1
    try:
        rounds = plan.round_count(count, first_round_frames=settings.first_round_frames, round_frames=settings.round_frames,
                                  overlap=settings.overlap, start_frame=min(settings.world_frames, max(count - 1, 0)))
    except plan.PlanError as exc:
        return str(exc), False
    prompts = [p.text for p in settings.prompts if p.text.strip()]
    need = plan.prompts_needed(rounds, len(prompts))
    ok = not need
    need = f" - {need}" if need else ""
    return f"{count} frames ({start}-{end}): {rounds} round{'s' if rounds != 1 else ''}{need}", ok


class SPATIA_UL_prompts(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        layout.prop(item, "text", text=f"{index + 1}", emboss=False)


class SPATIA_UL_versions(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        current = item.version == data.memory_version
        row = layout.row(align=True)
        row.label(text=f"v{item.version}", icon="CHECKMARK" if current else "BLANK1")
        row.label(text=f"{item.points:,} pts")
        row.label(text=item.message)


class SPATIA_UL_clips(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.label(text=item.name, icon="FILE_MOVIE")
        row.label(text=f"{item.frame_start}-{item.frame_start + item.frame_count - 1}")
        row.label(text=f"mem v{item.memory_version}")


def draw_connection(layout, context) -> None:
    status = runtime.connection
    row = layout.row(align=True)
    row.alert = not status.connected and bool(status.error)
    icon = "CHECKMARK" if status.connected else ("ERROR" if status.error else "UNLINKED")
    row.label(text=status.summary() if (status.connected or status.error) else "not connected", icon=icon)
    row.operator("spatia.test_connection", text="", icon="FILE_REFRESH")
    row.operator("spatia.open_dashboard", text="", icon="URL")


def draw_world(layout, context) -> None:
    scene = context.scene
    settings = scene.spatia
    row = layout.row(align=True)
    row.prop_search(settings, "world_id", settings, "known_worlds", text="World")
    row.operator("spatia.world_refresh", text="", icon="FILE_REFRESH")
    row = layout.row(align=True)
    row.operator("spatia.world_from_render", text="From Render", icon="RENDER_STILL")
    row.operator("spatia.world_from_image", text="From Image", icon="IMAGE_DATA")
    layout.prop(settings, "voxel_size")
    if not settings.world_id:
        layout.label(text="Create a world, or pick one and refresh", icon="INFO")
        return
    layout.label(text=f"{settings.world_frames} frames from frame {settings.world_frame_start}, memory v{settings.memory_version}")
    layout.template_list("SPATIA_UL_versions", "", settings, "versions", settings, "version_index", rows=3)
    row = layout.row(align=True)
    op = row.operator("spatia.memory_import", text="Import", icon="IMPORT")
    if 0 <= settings.version_index < len(settings.versions):
        op.version = settings.versions[settings.version_index].version
    row.operator("spatia.memory_revert", text="Revert", icon="LOOP_BACK")
    row.operator("spatia.memory_push", text="Push Edits", icon="EXPORT")
    layout.prop(settings, "point_radius")


def draw_shot(layout, context) -> None:
    scene = context.scene
    settings = scene.spatia
    layout.label(text="Prompts (one per round, or one for all)")
    row = layout.row()
    row.template_list("SPATIA_UL_prompts", "", settings, "prompts", settings, "prompt_index", rows=2)
    col = row.column(align=True)
    col.operator("spatia.prompt_add", text="", icon="ADD")
    col.operator("spatia.prompt_remove", text="", icon="REMOVE")
    layout.prop(settings, "negative_prompt")
    layout.prop(settings, "dynamic_prompts")
    col = layout.column(align=True)
    col.prop(settings, "generator")
    col.prop(settings, "quality")
    col.prop(settings, "vram")
    row = layout.row(align=True)
    row.prop(settings, "use_seed", text="")
    sub = row.row(align=True)
    sub.active = settings.use_seed
    sub.prop(settings, "seed")
    row.prop(settings, "steps")
    layout.prop(settings, "use_scene_range")
    if not settings.use_scene_range:
        row = layout.row(align=True)
        row.prop(settings, "frame_start")
        row.prop(settings, "frame_end")
    text, ok = plan_text(scene, settings)
    row = layout.row()
    row.alert = not ok
    row.label(text=text, icon="SEQUENCE" if ok else "ERROR")
    row = layout.row(align=True)
    row.prop(settings, "first_round_frames")
    row.prop(settings, "round_frames")
    row.prop(settings, "overlap")
    row = layout.row(align=True)
    row.prop(settings, "camera_path", text="")
    row.operator("spatia.camera_path", text="Apply", icon="CAMERA_DATA")
    layout.prop(settings, "data_dir")


def draw_generate(layout, context) -> None:
    scene = context.scene
    settings = scene.spatia
    state = panel_state(settings)
    if state == "running":
        layout.progress(factor=settings.job_fraction, type="BAR",
                        text=f"{settings.job_status}: {settings.job_stage or '...'} ({settings.job_fraction:.0%})")
        if settings.preview_note:
            layout.label(text=f"{settings.preview_note} (behind the camera)", icon="IMAGE_DATA")
        layout.operator("spatia.cancel", icon="CANCEL")
        if not runtime.runner.busy(GENERATE_TASK):
            layout.label(text="not following this job", icon="INFO")
            layout.operator("spatia.follow", icon="PLAY")
    else:
        row = layout.row()
        row.scale_y = 1.4
        row.operator("spatia.generate", icon="RENDER_ANIMATION")
        if state == "failed":
            box = layout.box()
            box.alert = True
            box.label(text=f"Job {settings.job_status or 'failed'}", icon="ERROR")
            for line in _wrap(settings.job_error or settings.status, 60):
                box.label(text=line)
            if settings.job_id:
                row = box.row(align=True)
                if settings.job_status in ("interrupted", "failed"):
                    row.operator("spatia.resume", icon="PLAY")
                row.operator("spatia.follow", text="Follow Again", icon="FILE_REFRESH")
        elif state == "cancelled":
            layout.label(text=f"Job {settings.job_id} cancelled", icon="INFO")
        elif state == "disconnected":
            row = layout.row()
            row.alert = True
            row.label(text="Backend not connected: start it in Preferences or run `spatia serve`", icon="UNLINKED")
    if settings.status and not (state == "failed" and settings.status.removeprefix("Error: ") == settings.job_error):
        row = layout.row()  # the last message, unless the failure box above says it already
        row.alert = settings.status.startswith("Error")
        row.label(text=settings.status[:120])
    row = layout.row(align=True)
    row.operator("spatia.coverage", icon="GRAPH")
    row.prop(settings, "show_coverage", text="", icon="SEQ_HISTOGRAM")
    if settings.coverage_mean >= 0:
        layout.label(text=f"coverage: mean {settings.coverage_mean:.0%}, lowest {settings.coverage_min:.0%} "
                          f"at frame {settings.coverage_min_frame}")


def draw_objects(layout, context) -> None:
    """The world's objects; the active object Empty's switches (on the Empty, or on its points)."""
    scene = context.scene
    settings = scene.spatia
    row = layout.row(align=True)
    row.operator("spatia.objects_fetch", icon="FILE_REFRESH")
    row.prop(settings, "object_memory", text="", icon="OUTLINER_OB_EMPTY")
    empties = [{"name": obj.name, "id": obj.spatia_object.object_id, "label": obj.spatia_object.label}
               for obj in object_empties.object_empties(scene)]
    if settings.objects_world and settings.objects_world == settings.world_id:
        deleted = directing.pending_forgets(object_empties.known_ids(settings), empties)
        text = f"{len(settings.known_objects)} objects, version {settings.objects_version}"
        layout.label(text=text + (f"; {len(deleted)} deleted: forgotten with the next shot" if deleted else ""))
    empty = object_empties.owner_of(getattr(context, "active_object", None))
    if empty is None:
        layout.label(text="Select an object's Empty to direct it", icon="INFO")
        return
    item = empty.spatia_object
    box = layout.box()
    box.label(text=empty.name, icon="OUTLINER_OB_EMPTY")
    if item.copy_of:
        box.label(text=f"copy of object {item.copy_of}: made by the next generation", icon="DUPLICATE")
    elif directing.group_by_id(empties)[item.object_id][0]["name"] != empty.name:
        box.label(text=f"a duplicate: becomes a copy of object {item.object_id} with the next shot", icon="DUPLICATE")
    else:
        box.label(text=f"{item.state or 'seen'}, {item.points:,} points, last seen at frame {item.last_seen}")
    row = box.row(align=True)
    row.prop(item, "condition", toggle=True)
    row.prop(item, "reference", toggle=True)
    keyed = object_empties.is_animated(empty)
    box.label(text="keyed: follows its keys" if keyed else "unkeyed: the motion model predicts it (key it to direct it)",
              icon="KEYFRAME_HLT" if keyed else "KEYFRAME")
    box.operator("spatia.object_forget", icon="TRASH")


def draw_clips(layout, context) -> None:
    settings = context.scene.spatia
    layout.template_list("SPATIA_UL_clips", "", settings, "clips", settings, "clip_index", rows=3)
    if 0 <= settings.clip_index < len(settings.clips):
        clip = settings.clips[settings.clip_index]
        layout.label(text=clip.prompt or clip.job_id)
        layout.prop(clip, "frames_dir", text="Frames")


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


class _SpatiaPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Spatia"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "spatia")


class SPATIA_PT_main(_SpatiaPanel, bpy.types.Panel):
    bl_label = "Spatia"
    bl_idname = "SPATIA_PT_main"

    def draw(self, context):
        draw_connection(self.layout, context)
        draw_world(self.layout, context)


class SPATIA_PT_shot(_SpatiaPanel, bpy.types.Panel):
    bl_label = "Shot"
    bl_idname = "SPATIA_PT_shot"
    bl_parent_id = "SPATIA_PT_main"

    def draw(self, context):
        draw_shot(self.layout, context)


class SPATIA_PT_generate(_SpatiaPanel, bpy.types.Panel):
    bl_label = "Generate"
    bl_idname = "SPATIA_PT_generate"
    bl_parent_id = "SPATIA_PT_main"

    def draw(self, context):
        draw_generate(self.layout, context)


class SPATIA_PT_objects(_SpatiaPanel, bpy.types.Panel):
    bl_label = "Objects"
    bl_idname = "SPATIA_PT_objects"
    bl_parent_id = "SPATIA_PT_main"

    def draw(self, context):
        draw_objects(self.layout, context)


class SPATIA_PT_clips(_SpatiaPanel, bpy.types.Panel):
    bl_label = "Clips"
    bl_idname = "SPATIA_PT_clips"
    bl_parent_id = "SPATIA_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        draw_clips(self.layout, context)


class SPATIA_MT_menu(bpy.types.Menu):
    """Every Spatia command, so menu search (F3) finds them; in Render > Spatia."""

    bl_idname = "SPATIA_MT_menu"
    bl_label = "Spatia"

    def draw(self, context):
        layout = self.layout
        for idname in ("spatia.generate", "spatia.cancel", "spatia.follow", "spatia.resume", "spatia.coverage",
                       "spatia.camera_path"):
            layout.operator(idname)
        layout.separator()
        for idname in ("spatia.world_from_render", "spatia.world_from_image", "spatia.world_refresh"):
            layout.operator(idname)
        layout.separator()
        for idname in ("spatia.memory_import", "spatia.memory_push", "spatia.memory_revert"):
            layout.operator(idname)
        layout.separator()
        for idname in ("spatia.objects_fetch", "spatia.object_forget"):
            layout.operator(idname)
        layout.separator()
        for idname in ("spatia.test_connection", "spatia.open_dashboard", "spatia.backend_start", "spatia.backend_stop",
                       "spatia.backend_log"):
            layout.operator(idname)


def _menu_entry(self, context):
    self.layout.separator()
    self.layout.menu(SPATIA_MT_menu.bl_idname)


CLASSES = (SPATIA_MT_menu, SPATIA_UL_prompts, SPATIA_UL_versions, SPATIA_UL_clips, SPATIA_PT_main, SPATIA_PT_shot, SPATIA_PT_generate,
           SPATIA_PT_objects, SPATIA_PT_clips)
PANELS = (SPATIA_PT_main, SPATIA_PT_shot, SPATIA_PT_generate, SPATIA_PT_objects, SPATIA_PT_clips)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_render.append(_menu_entry)


def unregister():
    bpy.types.TOPBAR_MT_render.remove(_menu_entry)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
