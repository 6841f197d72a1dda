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


class SPATIA_OT_world_from_render(bpy.types.Operator):
    """Create a new world from the active camera's render at the first frame (colour + exact depth + camera)"""

    bl_idname = "spatia.world_from_render"
    bl_label = "New World from Camera Render"
    bl_options = {"REGISTER"}  # creates a world on the backend: no Adjust Last Operation

    samples: IntProperty(name="Samples", default=16, min=1, max=4096, description="Cycles samples of the colour render")

    @classmethod
    def poll(cls, context):
        if context.scene is None or context.scene.camera is None:
            return poll_message(cls, "The scene needs an active camera")
        if runtime.runner.busy(WORLD_TASK):
            return poll_message(cls, "A world is being created; wait for it to finish")
        return True

    def execute(self, context):
        from ..render_rgbd import render_rgbd

        scene, settings = context.scene, context.scene.spatia
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        try:  # before two renders: a backend that is not there (or speaks another API) is found now
            client.health()
        except SpatiaError as exc:
            self.report({"ERROR"}, describe(exc))
            return {"CANCELLED"}
        start, _ = settings.frame_range(scene)
        current = scene.frame_current
        try:
            scene.frame_set(start)
            shot = render_rgbd(scene, scene.camera, samples=self.samples, hide=scene_data.memory_objects(scene))
        except (CameraExportError, ValueError, RuntimeError) as exc:
            self.report({"ERROR"}, describe(exc))
            return {"CANCELLED"}
        finally:
            scene.frame_set(current)
        files = {"image": ("image.png", payloads.encode_png(shot["rgb"]), "image/png"),
                 "depth": ("depth.npy", payloads.encode_npy(shot["depth"]), "application/octet-stream")}
        camera = payloads.single_camera(shot["intrinsics"], shot["w2c"])
        return _create_world(self, context, client, kind="rgbd", size=(shot["width"], shot["height"]), camera=camera,
                             files=files, start=start, started="creating the world...")


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
        from ..camera_math import render_size

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
