"""The shot: prompts, camera path presets, the cameras it exports, coverage along the path."""

from __future__ import annotations

import bpy
from bpy.props import StringProperty

from .. import directing, object_empties, payloads, plan, presets, runtime, scene_data
from ..camera_export import CameraExportError, export_camera
from ..client import ApiError, SpatiaError
from ..compat import poll_message
from .common import NO_OBJECT_MEMORY, client_or_report, describe, prompts_of, run_async


class SPATIA_OT_prompt_add(bpy.types.Operator):
    """Add a prompt (one per round, or a single one for all rounds)"""

    bl_idname = "spatia.prompt_add"
    bl_label = "Add Prompt"
    bl_options = {"REGISTER", "UNDO"}

    text: StringProperty(name="Prompt", default="")

    def execute(self, context):
        settings = context.scene.spatia
        item = settings.prompts.add()
        item.text = self.text
        settings.prompt_index = len(settings.prompts) - 1
        return {"FINISHED"}


class SPATIA_OT_prompt_remove(bpy.types.Operator):
    """Remove the selected prompt"""

    bl_idname = "spatia.prompt_remove"
    bl_label = "Remove Prompt"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        if context.scene is None or len(context.scene.spatia.prompts) == 0:
            return poll_message(cls, "There is no prompt to remove")
        return True

    def execute(self, context):
        settings = context.scene.spatia
        settings.prompts.remove(min(settings.prompt_index, len(settings.prompts) - 1))
        settings.prompt_index = max(min(settings.prompt_index, len(settings.prompts) - 1), 0)
        return {"FINISHED"}


class SPATIA_OT_camera_path(bpy.types.Operator):
    """Key the active camera along a camera path preset over the frame range, starting from its pose at the first frame"""

    bl_idname = "spatia.camera_path"
    bl_label = "Apply Camera Path"
    bl_options = {"REGISTER", "UNDO"}

    preset: StringProperty(name="Preset", default="", description="Preset id (default: the one chosen in the panel)")

    @classmethod
    def poll(cls, context):
        if context.scene is None or context.scene.camera is None:
            return poll_message(cls, "The scene needs an active camera to key")
        return True

    def execute(self, context):
        scene, settings = context.scene, context.scene.spatia
        key = self.preset or settings.camera_path
        found = presets.camera_presets(runtime.presets_dir())
        if key not in found:
            self.report({"ERROR"}, f"unknown camera path {key!r}; known: {', '.join(found)}")
            return {"CANCELLED"}
        start, end = settings.frame_range(scene)
        try:
            count = scene_data.apply_camera_path(scene, scene.camera, found[key], start, end)
        except (ValueError, KeyError) as exc:
            self.report({"ERROR"}, describe(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"'{found[key].get('name', key)}': {count} frames keyed on {scene.camera.name}")
        return {"FINISHED"}


def export_shot_cameras(scene, settings, frames=None):
    start, end = settings.frame_range(scene)
    if end < start:
        raise CameraExportError(f"the frame range {start}-{end} is empty")
    return export_camera(scene, scene.camera, frames if frames is not None else range(start, end + 1))


class SPATIA_OT_coverage(bpy.types.Operator):
    """How much of each frame the memory already knows, along the camera path (F-curve 'spatia_coverage' on the scene),
    and where remembered objects are expected to come back into view (marks in the Timeline)"""

    bl_idname = "spatia.coverage"
    bl_label = "Preview Coverage"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        if context.scene is None or context.scene.camera is None:
            return poll_message(cls, "The scene needs an active camera: coverage is measured along its path")
        if not context.scene.spatia.world_id:
            return poll_message(cls, "Create or choose a world first (Spatia > World)")
        return True

    def execute(self, context):
        scene, settings = context.scene, context.scene.spatia
        try:
            exported = export_shot_cameras(scene, settings)
        except CameraExportError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        world_id, cameras, frames = settings.world_id, payloads.cameras_payload(exported), exported["frames"]
        # the objects' re-entries follow the Empties' keys (video frames: 0 = the world's first frame)
        world_start = settings.world_frame_start
        directed = object_empties.directions_for_scene(scene, frames[0], frames[-1])
        paths = directing.to_video_frames([d for d in directed["objects"] if "copy_of" not in d], world_start)
        deleted = directed["forget_objects"]

        def work(task, report):
            coverage = client.coverage(world_id, cameras)
            if len(coverage) != len(frames):
                raise SpatiaError(f"the backend returned {len(coverage)} coverage values for {len(frames)} frames")
            if frames[0] < world_start:
                return coverage, []  # the path starts before the world: no video frame to ask about
            try:
                return coverage, client.object_entries(world_id, cameras, frames[0] - world_start, paths)
            except ApiError as exc:
                if exc.status not in NO_OBJECT_MEMORY:
                    raise
                return coverage, []  # a backend without object memory

        def done(scene, result):
            coverage, entries = result
            scene_data.write_coverage_curve(scene, frames, coverage)
            summary = payloads.coverage_summary(frames, coverage)
            scene.spatia.coverage_mean, scene.spatia.coverage_min = summary["mean"], summary["min"]
            scene.spatia.coverage_min_frame = summary["min_frame"] or 0
            marks = directing.entry_frames(entries, world_start, leave_out=deleted)
            object_empties.write_entries(scene, marks)
            back = "".join(f"; {directing.object_name(label, oid)} comes back into view at frame {frame}"
                           for frame, oid, label in marks[:3]) + (f" (+{len(marks) - 3} more)" if len(marks) > 3 else "")
            return (f"coverage: mean {summary['mean']:.0%}, lowest {summary['min']:.0%} at frame {summary['min_frame']}; "
                    f"{len(summary['low_frames'])} frames under 50%{back}")

        return run_async(self, context, "coverage", work, done, started="computing coverage...")


def shot_for_scene(scene) -> tuple[dict, dict]:
    """The shot spec dict for the scene's camera, frame range, prompts and settings, and what its
    object Empties direct, plus the exported cameras; raises PlanError, CameraExportError or
    ValueError with a clear message. A duplicated object Empty gets its copy's new id here."""
    settings = scene.spatia
    prompts = prompts_of(settings)
    start, end = settings.frame_range(scene)
    if settings.world_id and start != settings.world_frame_start:
        raise ValueError(f"the world starts at frame {settings.world_frame_start}; set the frame range start to it "
                         f"(it is {start}): a world's camera path always begins where the world was created")
    if not prompts:
        raise ValueError("write a prompt first (Shot > Prompts)")
    count = plan.round_count(end - start + 1, first_round_frames=settings.first_round_frames,
                             round_frames=settings.round_frames, overlap=settings.overlap,
                             start_frame=settings.world_frames)
    plan.round_prompts(prompts, count)
    exported = export_shot_cameras(scene, settings)
    directed = object_empties.directions_for_scene(scene, start, end)
    object_empties.assign_copies(scene, directed["assign"])  # a retry sends the same copies
    shot = payloads.build_shot(
        exported, prompts, name=scene.name, world=settings.world_id or None, generator=settings.generator,
        quality=settings.quality, vram=settings.vram,
        seed=settings.seed if settings.use_seed else None, negative_prompt=settings.negative_prompt,
        dynamic_prompts=payloads.split_prompts(settings.dynamic_prompts), steps=settings.steps or None,
        guidance=settings.guidance or None, rounds=settings.rounds_dict(), objects=directed["objects"],
        forget_objects=directed["forget_objects"], object_memory=settings.object_memory)
    return shot, exported


CLASSES = (SPATIA_OT_prompt_add, SPATIA_OT_prompt_remove, SPATIA_OT_camera_path, SPATIA_OT_coverage)
