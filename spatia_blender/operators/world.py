"""Worlds: create one from the camera's render or from an image; refresh the list."""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from .. import payloads, runtime, scene_data
from ..camera_export import CameraExportError, camera_at_current_frame, check_camera
from ..client import SpatiaError
from ..compat import poll_message
from .common import WORLD_TASK, apply_memory, client_or_report, describe, fetch_memory, run_async


def _world_name(context) -> str:
    return context.scene.spatia.world_name.strip() or context.scene.name


def _create_world(operator, context, client, *, kind, size, camera, files, start, started):
    """Create a world on the backend off the main thread, then import its first memory."""
    scene, settings = context.scene, context.scene.spatia
    fps = scene.render.fps / scene.render.fps_base
    name, voxel = _world_name(context), settings.voxel_size
    root = runtime.shot_dir(scene)

    def work(task, report):
        client.health()  # a backend of another API version is refused before anything is sent
        world = client.create_world(name=name, kind=kind, width=size[0], height=size[1], fps=fps, voxel_size=voxel,
                                    camera=camera, files=files)
        return fetch_memory(client, world["id"], data_root=root)

    def done(scene, fetched):
        scene.spatia.world_frame_start = start
        scene.spatia.clips.clear()
        return "new " + apply_memory(scene, fetched)

    return run_async(operator, context, WORLD_TASK, work, done, started=started)


def start_render_job(scene) -> bool:
    """Start Blender's own render job (the interface stays live, the render window shows its
    progress, Esc there cancels it); False when no job could start. Swapped out in tests."""
    return "RUNNING_MODAL" in bpy.ops.render.render("INVOKE_DEFAULT", write_still=True, scene=scene.name)


def render_blocking(scene) -> bool:
    bpy.ops.render.render(write_still=True, scene=scene.name)
    return True


class RenderToWorld:
    """New World from Camera Render as steps: the backend is checked first (off the main thread
    when interactive), then the colour and the depth pass are rendered, each as one render (as
    Blender's render job when interactive), then the world is created. step() advances and says
    "running", "done", "failed" or "cancelled"; cancel() stops and restores the scene."""

    def __init__(self, context, client, samples: int, start_render, check=None):
        scene = context.scene
        self.scene_name, self.client, self.samples, self.start_render = scene.name, client, samples, start_render
        self.start, _ = scene.spatia.frame_range(scene)
        self.frame = scene.frame_current
        self.check = check  # a runner Task doing client.health(); None: checked already
        self.passes = None
        self.index, self.stack = 0, None
        self.ended: list[bool] = []  # filled by the render handlers (render thread): True = complete
        self.error = ""
        self.state = "running"

    @property
    def stage(self) -> str:
        if self.passes is None:
            return "checking the backend..."
        return f"rendering the {self.passes.NAMES[min(self.index, 1)]} pass ({min(self.index + 1, 2)}/2)..."

    @property
    def fraction(self) -> float:
        return 0.0 if self.passes is None else min(self.index, 2) / 2.0

    def _complete(self, *args):
        self.ended.append(True)

    def _cancelled(self, *args):
        self.ended.append(False)

    def _handlers(self, add: bool) -> None:
        for handlers, callback in ((bpy.app.handlers.render_complete, self._complete),
                                   (bpy.app.handlers.render_cancel, self._cancelled)):
            if add and callback not in handlers:
                handlers.append(callback)
            elif not add and callback in handlers:
                handlers.remove(callback)

    def _fail(self, message: str) -> str:
        self.error = message
        self._restore()
        self.state = "failed"
        return self.state

    def _restore(self) -> None:
        self._handlers(False)
        if self.stack is not None:
            self.stack.close()
            self.stack = None
        if self.passes is not None:
            self.passes.close()
        scene = runtime.scene_by_name(self.scene_name)
        if scene is not None and scene.frame_current != self.frame:
            scene.frame_set(self.frame)

    def cancel(self) -> str:
        if self.state == "running":
            self._restore()
            self.state = "cancelled"
        return self.state

    def step(self):
        """Advance; returns the state, and the shot once both passes are rendered ("done")."""
        from ..render_rgbd import RGBDPasses

        if self.state != "running":
            return self.state
        scene = runtime.scene_by_name(self.scene_name)
        if scene is None:
            return self._fail("the scene is gone")
        if self.passes is None:
            if self.check is not None:
                if not self.check.done.is_set():
                    return self.state
                if self.check.error is not None:
                    return self._fail(describe(self.check.error))
            try:
                scene.frame_set(self.start)
                self.passes = RGBDPasses(scene, scene.camera, samples=self.samples,
                                         hide=scene_data.memory_objects(scene))
            except (CameraExportError, ValueError, RuntimeError) as exc:
                return self._fail(describe(exc))
        if self.stack is None:  # start the next pass
            self.ended.clear()
            self.stack = self.passes.setup(self.index)
            self._handlers(True)
            try:
                started = self.start_render(scene)
            except RuntimeError as exc:
                return self._fail(f"the {self.passes.NAMES[self.index]} render could not start: {exc}")
            if not started:
                return self._fail(f"the {self.passes.NAMES[self.index]} render could not start (is another render running?)")
        if not self.ended:
            return self.state
        complete = self.ended[-1]
        self._handlers(False)
        self.stack.close()
        self.stack = None
        if not complete:
            return self.cancel()
        self.index += 1
        if self.index < len(self.passes):
            return self.step()
        try:
            self.shot = self.passes.finish()
        except RuntimeError as exc:
            return self._fail(str(exc))
        finally:
            self._restore()
        self.state = "done"
        return self.state


def _world_from_shot(operator, context, client, shot, start) -> set:
    files = {"image": ("image.png", payloads.encode_png(shot["rgb"]), "image/png"),
             "depth": ("depth.npy", payloads.encode_npy(shot["depth"]), "application/octet-stream")}
    camera = payloads.single_camera(shot["intrinsics"], shot["w2c"])
    return _create_world(operator, context, client, kind="rgbd", size=(shot["width"], shot["height"]), camera=camera,
                         files=files, start=start, started="creating the world...")


class SPATIA_OT_world_from_render(bpy.types.Operator):
    """Create a new world from the active camera's render at the first frame (colour + exact depth + camera).
    Checks the backend first; renders as Blender's render job (Esc cancels)"""

    bl_idname = "spatia.world_from_render"
    bl_label = "New World from Camera Render"
    bl_options = {"REGISTER"}  # creates a world on the backend: no Adjust Last Operation

    samples: IntProperty(name="Samples", default=16, min=1, max=4096, description="Cycles samples of the colour render")

    @classmethod
    def poll(cls, context):
        if context.scene is None or context.scene.camera is None:
            return poll_message(cls, "The scene needs an active camera")
        if runtime.runner.busy(WORLD_TASK) or _running:
            return poll_message(cls, "A world is being created; wait for it to finish")
        return True

    def execute(self, context):
        """Scripts and background mode: the same steps, blocking."""
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        try:  # before two renders: a backend that is not there (or speaks another API) is found now
            client.health()
        except SpatiaError as exc:
            self.report({"ERROR"}, describe(exc))
            return {"CANCELLED"}
        job = RenderToWorld(context, client, self.samples, render_blocking)
        while job.step() == "running":
            pass
        if job.state != "done":
            self.report({"ERROR"} if job.state == "failed" else {"INFO"}, job.error or "cancelled")
            return {"CANCELLED"}
        return _world_from_shot(self, context, client, job.shot, job.start)

    def invoke(self, context, event):
        """Interactive: check the backend off the main thread, then render as Blender's render jobs
        with progress in the panel and the status bar; Esc cancels."""
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        try:
            check = runtime.runner.submit("world-check", lambda task, report: client.health())
        except RuntimeError:
            self.report({"WARNING"}, "already checking the backend")
            return {"CANCELLED"}
        self._job = RenderToWorld(context, client, self.samples, start_render_job, check=check)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        _running.append(self)
        context.scene.spatia.status = self._job.stage
        return {"RUNNING_MODAL"}

    def _end(self, context):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        if self in _running:
            _running.remove(self)
        runtime.redraw()

    def modal(self, context, event):
        job = self._job
        if event.type == "ESC" and event.value == "PRESS" and job.passes is None:
            job.cancel()  # during a render, Esc goes to Blender's render job, which reports back
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        state = job.step()
        scene = runtime.scene_by_name(job.scene_name)
        if state == "running":
            context.window_manager.progress_update(int(job.fraction * 100))
            if scene is not None and scene.spatia.status != job.stage:
                scene.spatia.status = job.stage
                runtime.redraw()
            return {"PASS_THROUGH"}
        self._end(context)
        if state == "done":
            return _world_from_shot(self, context, self._job.client, job.shot, job.start)
        if scene is not None:
            scene.spatia.status = ("Error: " + job.error) if state == "failed" else "New World from Camera Render cancelled"
        self.report({"ERROR"} if state == "failed" else {"INFO"}, job.error or "cancelled")
        return {"CANCELLED"}


_running: list = []


class SPATIA_OT_world_from_image(bpy.types.Operator):
    """Create a new world from one image (the backend estimates depth), seen by the active camera if there is one"""

    bl_idname = "spatia.world_from_image"
    bl_label = "New World from Image"
    bl_options = {"REGISTER"}  # creates a world on the backend: no Adjust Last Operation

    filepath: StringProperty(subtype="FILE_PATH")
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    use_camera: BoolProperty(name="Use Active Camera", default=True,
                             description="Place the image at the active camera (its pose and focal length); "
                                         "off: the backend estimates the focal length and puts the camera at the origin")

    @classmethod
    def poll(cls, context):
        if context.scene is None:
            return False
        if runtime.runner.busy(WORLD_TASK):
            return poll_message(cls, "A world is being created; wait for it to finish")
        return True

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        scene, settings = context.scene, context.scene.spatia
        path = bpy.path.abspath(self.filepath)
        ext = os.path.splitext(path)[1].lower()
        if not os.path.isfile(path) or ext not in (".png", ".jpg", ".jpeg"):
            self.report({"ERROR"}, f"choose a PNG or JPEG image ({path or 'nothing chosen'})")
            return {"CANCELLED"}
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        start, _ = settings.frame_range(scene)
        camera = None
        from spatia_geometry.camera_math import render_size

        width, height = render_size(scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage)
        if self.use_camera and scene.camera is not None:
            current = scene.frame_current
            try:
                check_camera(scene.camera)
                scene.frame_set(start)
                k, w2c, width, height = camera_at_current_frame(scene, scene.camera)
                camera = payloads.single_camera(k, w2c)
            except CameraExportError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            finally:
                scene.frame_set(current)
        with open(path, "rb") as handle:
            data = handle.read()
        mime = "image/png" if ext == ".png" else "image/jpeg"
        files = {"image": (os.path.basename(path), data, mime)}
        return _create_world(self, context, client, kind="image", size=(width, height), camera=camera, files=files,
                             start=start, started="creating the world (estimating depth)...")


class SPATIA_OT_world_refresh(bpy.types.Operator):
    """Fetch the list of worlds and this world's memory versions from the backend"""

    bl_idname = "spatia.world_refresh"
    bl_label = "Refresh World"

    def execute(self, context):
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        world_id = context.scene.spatia.world_id

        def work(task, report):
            worlds = client.worlds()
            if not world_id:
                return {"worlds": worlds}
            return {"worlds": worlds, "world": client.world(world_id), "history": client.memory_history(world_id)}

        def done(scene, result):
            settings = scene.spatia
            settings.known_worlds.clear()
            for world in result["worlds"]:
                settings.known_worlds.add().name = world["id"]
            if "world" in result:
                scene_data.set_world(settings, result["world"])
                scene_data.set_versions(settings, result["history"])
                return f"world {world_id}: {len(result['history'])} memory versions, {settings.world_frames} frames"
            return f"{len(result['worlds'])} worlds on the backend"

        return run_async(self, context, WORLD_TASK, work, done, started="refreshing...", undo=False)


CLASSES = (SPATIA_OT_world_from_render, SPATIA_OT_world_from_image, SPATIA_OT_world_refresh)
