"""Generation: submit the shot, follow the job (again), resume or cancel it."""

from __future__ import annotations

import json
import os
import time

import bpy

from .. import plan, runtime
from ..camera_export import CameraExportError
from ..client import Cancelled
from ..compat import poll_message
from .clips import _job_progress, apply_clip, follow_and_fetch
from .common import GENERATE_TASK, client_or_report, describe, run_async
from .shot import shot_for_scene


RESUMABLE = ("interrupted", "failed")


def _generation_busy(cls) -> bool:
    if runtime.runner.busy(GENERATE_TASK):
        poll_message(cls, "A generation is being followed; wait for it or cancel it")
        return True
    return False


def _start_follow(op, context, client, submit_job, shot_first_frame: int, prompt: str) -> set:
    root = runtime.shot_dir(context.scene)

    def work(task, report):
        client.health()  # a backend of another API version is refused before anything is sent
        return follow_and_fetch(client, submit_job(), task, report, root)

    def done(scene, result):
        return apply_clip(scene, result, shot_first_frame, prompt)

    def progress(scene, job):
        _job_progress(scene, job)

    def failed(scene, exc):
        settings = scene.spatia
        if isinstance(exc, Cancelled):
            settings.job_error = ""
            settings.job_status = "cancelled"
            return
        settings.job_error = describe(exc)
        if settings.job_status not in ("failed", "cancelled", "interrupted"):
            settings.job_status = "failed"

    settings = context.scene.spatia
    settings.job_error, settings.job_status, settings.job_fraction, settings.job_stage = "", "queued", 0.0, "submitting"
    return run_async(op, context, GENERATE_TASK, work, done, on_progress=progress, on_error=failed, started="generating...")


class SPATIA_OT_generate(bpy.types.Operator):
    """Generate a clip along the active camera's path over the frame range, then import the clip and the new memory"""

    bl_idname = "spatia.generate"
    bl_label = "Generate Clip"
    bl_options = {"REGISTER"}  # starts a job on the backend: no Adjust Last Operation (a redo would start another)

    @classmethod
    def poll(cls, context):
        scene = context.scene
        if scene is None or scene.camera is None:
            return poll_message(cls, "The scene needs an active camera: its path over the frame range is the shot")
        if not scene.spatia.world_id:
            return poll_message(cls, "Create or choose a world first (Spatia > World)")
        return not _generation_busy(cls)

    def execute(self, context):
        scene, settings = context.scene, context.scene.spatia
        try:
            shot, _ = shot_for_scene(scene)
        except (plan.PlanError, CameraExportError, ValueError) as exc:
            self.report({"ERROR"}, describe(exc))
            return {"CANCELLED"}
        start, prompts = shot["frames"][0]["frame"], shot["prompts"]
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        shots_dir = runtime.shot_dir(scene, "worlds", settings.world_id, "shots")
        stamp, n = time.strftime('%Y%m%d-%H%M%S'), 1
        while True:  # two Generates within a second each keep their shot file
            try:
                with open(os.path.join(shots_dir, f"shot-{stamp}{'' if n == 1 else f'-{n}'}.json"), "x",
                          encoding="utf-8") as handle:
                    json.dump(shot, handle)
                break
            except FileExistsError:
                n += 1
        world_id = settings.world_id
        settings.job_id = ""  # a new job is asked for: Resume and Follow Job never fall back on the previous one
        return _start_follow(self, context, client, lambda: client.submit(world_id, shot), start, prompts[0])


def _follow_scene_job(op, context, request) -> set:
    """Follow the scene's job after `request(client, job_id)` (look it up, or resume it)."""
    settings = context.scene.spatia
    client = client_or_report(op)
    if client is None:
        return {"CANCELLED"}
    job_id = settings.job_id
    return _start_follow(op, context, client, lambda: request(client, job_id), settings.world_frame_start, "")


class SPATIA_OT_follow(bpy.types.Operator):
    """Follow the scene's last job again (after a restart of Blender or of the backend) and import its result"""

    bl_idname = "spatia.follow"
    bl_label = "Follow Job"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        scene = context.scene
        if scene is None or not scene.spatia.job_id:
            return poll_message(cls, "No job to follow: generate a clip first")
        return not _generation_busy(cls)

    def execute(self, context):
        return _follow_scene_job(self, context, lambda client, job_id: client.job(job_id))


class SPATIA_OT_resume(bpy.types.Operator):
    """Resume the scene's interrupted or failed job: it continues from the world's last finished round"""

    bl_idname = "spatia.resume"
    bl_label = "Resume Job"
    bl_options = {"REGISTER"}  # queues the job again on the backend: no Adjust Last Operation

    @classmethod
    def poll(cls, context):
        scene = context.scene
        if scene is None or not scene.spatia.job_id:
            return poll_message(cls, "No job to resume: generate a clip first")
        if scene.spatia.job_status not in RESUMABLE:
            return poll_message(cls, "Only an interrupted or failed job can be resumed")
        return not _generation_busy(cls)

    def execute(self, context):
        return _follow_scene_job(self, context, lambda client, job_id: client.resume(job_id))


class SPATIA_OT_cancel(bpy.types.Operator):
    """Cancel the running generation (the backend stops between denoising steps)"""

    bl_idname = "spatia.cancel"
    bl_label = "Cancel Generation"

    @classmethod
    def poll(cls, context):
        scene = context.scene
        if scene is None or not scene.spatia.job_id or scene.spatia.job_status not in ("queued", "running"):
            return poll_message(cls, "No generation is running")
        return True

    def execute(self, context):
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        job_id = context.scene.spatia.job_id

        def done(scene, job):
            _job_progress(scene, job)
            return f"cancelling job {job_id}"

        return run_async(self, context, "cancel", lambda task, report: client.cancel(job_id), done, started="cancelling...",
                         undo=False)


CLASSES = (SPATIA_OT_generate, SPATIA_OT_follow, SPATIA_OT_resume, SPATIA_OT_cancel)
