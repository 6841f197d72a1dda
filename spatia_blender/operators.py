"""Operators (all searchable with F3 under "Spatia").

Network work runs on a worker thread (runtime.runner) and only plain data crosses back; the
Blender changes happen in the completion callbacks, on the main thread, followed by an undo
step. In background mode the same code runs blocking, and the operator reports the outcome.
"""

from __future__ import annotations

import json
import os
import time

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from . import payloads, plan, presets, runtime, scene_data
from .camera_export import CameraExportError, camera_at_current_frame, check_camera, export_camera
from .client import ApiError, SpatiaError, job_error_text

WORLD_TASK = "world"
MEMORY_TASK = "memory"
GENERATE_TASK = "generate"


# --- plumbing --------------------------------------------------------------------------------
def describe(exc: BaseException) -> str:
    if isinstance(exc, ApiError) and exc.status == 409:
        return (f"{exc}: the memory changed on the backend since this version was imported; "
                "import the latest version and apply the edit again")
    if isinstance(exc, (SpatiaError, CameraExportError, plan.PlanError, ValueError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def notify(scene, message: str, *, error: bool = False, undo: bool = False) -> None:
    """Show the outcome of background work: panel status, console, undo step (main thread)."""
    if scene is not None:
        scene.spatia.status = ("Error: " if error else "") + message
    print(f"Spatia: {'error: ' if error else ''}{message}")
    if undo and not bpy.app.background:
        try:
            bpy.ops.ed.undo_push(message=f"Spatia: {message[:60]}")
        except RuntimeError:
            pass
    runtime.redraw()


def run_async(op, context, name: str, work, on_done, *, on_progress=None, on_error=None, started: str = "working...",
              undo: bool = True) -> set:
    """Run work(task, report) off the main thread; on_done(scene, result) -> message, on the main thread.

    on_progress(scene, payload) and on_error(scene, exception) run on the main thread too."""
    scene_name = context.scene.name
    failure: list[BaseException] = []
    success: list[str] = []

    def done(result):
        scene = runtime.scene_by_name(scene_name)
        try:
            message = on_done(scene, result) if scene is not None else "the scene is gone"
        except Exception as exc:  # noqa: BLE001 - reported to the user
            failed(exc)
            return
        success.append(message)
        notify(scene, message, undo=undo)

    def failed(exc):
        failure.append(exc)
        scene = runtime.scene_by_name(scene_name)
        if on_error is not None and scene is not None:
            try:
                on_error(scene, exc)
            except Exception as hook_error:  # noqa: BLE001 - the original error matters more
                print(f"Spatia: while reporting an error: {hook_error!r}")
        notify(scene, describe(exc), error=True)

    def progress(payload):
        if on_progress is not None:
            scene = runtime.scene_by_name(scene_name)
            if scene is not None:
                on_progress(scene, payload)
                runtime.redraw()

    try:
        task = runtime.runner.submit(name, work, on_done=done, on_error=failed, on_progress=progress)
    except RuntimeError as exc:
        op.report({"WARNING"}, f"{exc}; wait for it to finish")
        return {"CANCELLED"}
    if task.done.is_set():  # blocking mode: finished already
        if failure:
            op.report({"ERROR"}, describe(failure[0]))
            return {"CANCELLED"}
        op.report({"INFO"}, success[0] if success else "done")
        return {"FINISHED"}
    context.scene.spatia.status = started
    op.report({"INFO"}, started)
    return {"FINISHED"}


def client_or_report(op):
    try:
        return runtime.client()
    except SpatiaError as exc:
        op.report({"ERROR"}, str(exc))
        return None


def fetch_memory(client, world_id: str, version=None) -> dict:
    """World info, history and one memory version (default: latest), cached on disk. Worker thread."""
    world = client.world(world_id)
    history = client.memory_history(world_id)
    if version is None:
        if not history:
            raise SpatiaError(f"world {world_id} has no memory yet")
        version = int(history[-1]["version"])
    path = scene_data.memory_cache_path(world_id, version)  # versions never change: cache them
    memory = None
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            try:
                memory = scene_data.parse_memory(handle.read(), f"memory v{version}")
            except ValueError:  # a damaged cache file: fetch it again
                memory = None
    if memory is None:
        data = client.memory_bytes(world_id, version)
        memory = scene_data.parse_memory(data, f"memory v{version}")
        with open(path + ".part", "wb") as handle:
            handle.write(data)
        os.replace(path + ".part", path)
    return {"world": world, "history": history, "version": int(version), "memory": memory}


def apply_memory(scene, fetched: dict) -> str:
    """Main thread: world info, version list and the memory object from fetch_memory's result."""
    settings = scene.spatia
    world = fetched["world"]
    scene_data.set_world(settings, world)
    scene_data.set_versions(settings, fetched["history"])
    settings.memory_version = fetched["version"]
    scene_data.import_memory_version(scene, fetched["memory"], world["id"], fetched["version"])
    return f"world {world['id']}: memory version {fetched['version']} ({len(fetched['memory']['xyz'])} points)"


def check_connection_async(context, wait_s: float = 0.0) -> None:
    """Refresh runtime.connection off the main thread (waiting up to wait_s for a starting backend)."""
    try:
        client = runtime.client(timeout=10)
    except SpatiaError as exc:
        runtime.connection.set_error("", str(exc))
        return
    url = client.root

    def work(task, report):
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return client.health()
            except SpatiaError:
                if time.monotonic() >= deadline or task.cancelled or (runtime.backend.process is not None and not runtime.backend.running):
                    raise
                time.sleep(0.5)

    try:
        runtime.runner.submit("connection", work, on_done=lambda health: runtime.connection.set_ok(url, health),
                              on_error=lambda exc: runtime.connection.set_error(url, describe(exc)))
    except RuntimeError:
        pass


def prompts_of(settings) -> list[str]:
    return [p.text.strip() for p in settings.prompts if p.text.strip()]


# --- connection ------------------------------------------------------------------------------
class SPATIA_OT_test_connection(bpy.types.Operator):
    """Ask the backend for its version, device, GPU and free VRAM"""

    bl_idname = "spatia.test_connection"
    bl_label = "Test Connection"

    def execute(self, context):
        try:
            client = runtime.client(timeout=10)
        except SpatiaError as exc:
            runtime.connection.set_error("", str(exc))
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        url = client.root

        def done(health):
            runtime.connection.set_ok(url, health)
            runtime.redraw()

        def failed(exc):
            runtime.connection.set_error(url, describe(exc))
            runtime.redraw()

        try:
            task = runtime.runner.submit("connection", lambda task, report: client.health(), on_done=done, on_error=failed)
        except RuntimeError:
            self.report({"WARNING"}, "already checking the connection")
            return {"CANCELLED"}
        if task.done.is_set():
            if task.error is not None:
                self.report({"ERROR"}, runtime.connection.error)
                return {"CANCELLED"}
            self.report({"INFO"}, f"connected: {runtime.connection.summary()}")
        return {"FINISHED"}


# --- worlds ----------------------------------------------------------------------------------
def _world_name(context) -> str:
    return context.scene.spatia.world_name.strip() or context.scene.name


def _create_world(operator, context, client, *, kind, size, camera, files, start, started):
    """Create a world on the backend off the main thread, then import its first memory."""
    scene, settings = context.scene, context.scene.spatia
    fps = scene.render.fps / scene.render.fps_base
    name, voxel = _world_name(context), settings.voxel_size

    def work(task, report):
        client.health()  # a backend of another API version is refused before anything is sent
        world = client.create_world(name=name, kind=kind, width=size[0], height=size[1], fps=fps, voxel_size=voxel,
                                    camera=camera, files=files)
        return fetch_memory(client, world["id"])

    def done(scene, fetched):
        scene.spatia.world_frame_start = start
        scene.spatia.clips.clear()
        return "new " + apply_memory(scene, fetched)

    return run_async(operator, context, WORLD_TASK, work, done, started=started)


class SPATIA_OT_world_from_render(bpy.types.Operator):
    """Create a new world from the active camera's render at the first frame (colour + exact depth + camera)"""

    bl_idname = "spatia.world_from_render"
    bl_label = "New World from Camera Render"
    bl_options = {"REGISTER", "UNDO"}

    samples: IntProperty(name="Samples", default=16, min=1, max=4096, description="Cycles samples of the colour render")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.scene.camera is not None and not runtime.runner.busy(WORLD_TASK)

    def execute(self, context):
        from .render_rgbd import render_rgbd

        scene, settings = context.scene, context.scene.spatia
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        start, _ = settings.frame_range(scene)
        current = scene.frame_current
        try:
            scene.frame_set(start)
            shot = render_rgbd(scene, scene.camera, samples=self.samples)
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
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH")
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    use_camera: BoolProperty(name="Use Active Camera", default=True,
                             description="Place the image at the active camera (its pose and focal length); "
                                         "off: the backend estimates the focal length and puts the camera at the origin")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and not runtime.runner.busy(WORLD_TASK)

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
        from .camera_math import render_size

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


# --- memory ----------------------------------------------------------------------------------
class SPATIA_OT_memory_import(bpy.types.Operator):
    """Import a memory version of the world as the point object "Spatia Memory" (replacing it)"""

    bl_idname = "spatia.memory_import"
    bl_label = "Import Memory Version"
    bl_options = {"REGISTER", "UNDO"}

    version: IntProperty(name="Version", default=-1, min=-1, description="-1: the latest version")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and bool(context.scene.spatia.world_id) and not runtime.runner.busy(MEMORY_TASK)

    def execute(self, context):
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        world_id = context.scene.spatia.world_id
        version = None if self.version < 0 else self.version
        return run_async(self, context, MEMORY_TASK, lambda task, report: fetch_memory(client, world_id, version),
                         apply_memory, started="downloading the memory...")


class SPATIA_OT_memory_revert(bpy.types.Operator):
    """Make the selected memory version the newest one again (a new version equal to it) and import it"""

    bl_idname = "spatia.memory_revert"
    bl_label = "Revert to Version"
    bl_options = {"REGISTER", "UNDO"}

    version: IntProperty(name="Version", default=-1, min=-1, description="-1: the version selected in the list")

    @classmethod
    def poll(cls, context):
        settings = context.scene.spatia if context.scene else None
        return settings is not None and bool(settings.world_id) and len(settings.versions) > 0 and not runtime.runner.busy(MEMORY_TASK)

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
        world_id = settings.world_id

        def work(task, report):
            new = client.revert(world_id, version)
            return fetch_memory(client, world_id, int(new["version"]))

        def done(scene, fetched):
            return f"reverted to version {version}: " + apply_memory(scene, fetched)

        return run_async(self, context, MEMORY_TASK, work, done, started=f"reverting to version {version}...")


class SPATIA_OT_memory_push(bpy.types.Operator):
    """Send your edits of the memory object (deleted, moved and duplicated points, plus points sampled from the
    selected mesh objects) to the backend as a new memory version"""

    bl_idname = "spatia.memory_push"
    bl_label = "Push Memory Edits"
    bl_options = {"REGISTER", "UNDO"}

    message: StringProperty(name="Message", default="edited in Blender")
    include_selected: BoolProperty(name="Add Selected Meshes", default=True,
                                   description="Sample points (with colours) from the surfaces of the selected mesh objects")
    hide_added: BoolProperty(name="Hide Added Meshes", default=True,
                             description="Hide the sampled mesh objects once their points are in the memory")

    @classmethod
    def poll(cls, context):
        return scene_data.find_memory_object(context) is not None and not runtime.runner.busy(MEMORY_TASK)

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
        if obj.mode == "EDIT":
            obj.update_from_editmode()
        current = scene_data.memory_object.read_memory(obj)
        sources = [o for o in context.selected_objects if o.type == "MESH" and o != obj] if self.include_selected else []
        spacing = float(obj.get(scene_data.MEMORY_PROP_VOXEL, context.scene.spatia.voxel_size))
        extra_xyz, extra_rgb = scene_data.sample_objects(sources, context.evaluated_depsgraph_get(), spacing)
        source_names = [o.name for o in sources]
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        message = self.message

        def work(task, report):
            base = fetch_memory(client, world_id, parent)["memory"]
            edits = payloads.memory_edits(base["point_id"], base["xyz"], current["point_id"], current["xyz"], current["rgb"],
                                          parent=parent, message=message, extra_xyz=extra_xyz, extra_rgb=extra_rgb)
            summary = payloads.edits_summary(edits)
            if not (edits["delete_ids"] or edits["move_ids"] or edits["add_xyz"]):
                return {"summary": "no changes to push", "fetched": None}
            new = client.memory_edits(world_id, edits)
            return {"summary": summary, "fetched": fetch_memory(client, world_id, int(new["version"]))}

        def done(scene, result):
            if result["fetched"] is None:
                return result["summary"]
            text = apply_memory(scene, result["fetched"])
            if self_hide:
                for name in source_names:
                    source = bpy.data.objects.get(name)
                    if source is not None:
                        source.hide_set(True)
                        source.hide_render = True
            return f"pushed ({result['summary']}): {text}"

        self_hide = self.hide_added
        return run_async(self, context, MEMORY_TASK, work, done, started="pushing memory edits...")


# --- shot ------------------------------------------------------------------------------------
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
        return context.scene is not None and len(context.scene.spatia.prompts) > 0

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
        return context.scene is not None and context.scene.camera is not None

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
    """How much of each frame the memory already knows, along the camera path (F-curve 'spatia_coverage' on the scene)"""

    bl_idname = "spatia.coverage"
    bl_label = "Preview Coverage"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.scene.camera is not None and bool(context.scene.spatia.world_id)

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

        def work(task, report):
            coverage = client.coverage(world_id, cameras)
            if len(coverage) != len(frames):
                raise SpatiaError(f"the backend returned {len(coverage)} coverage values for {len(frames)} frames")
            return coverage

        def done(scene, coverage):
            scene_data.write_coverage_curve(scene, frames, coverage)
            summary = payloads.coverage_summary(frames, coverage)
            scene.spatia.coverage_mean, scene.spatia.coverage_min = summary["mean"], summary["min"]
            scene.spatia.coverage_min_frame = summary["min_frame"] or 0
            return (f"coverage: mean {summary['mean']:.0%}, lowest {summary['min']:.0%} at frame {summary['min_frame']}; "
                    f"{len(summary['low_frames'])} frames under 50%")

        return run_async(self, context, "coverage", work, done, started="computing coverage...")


# --- generation ------------------------------------------------------------------------------
def _job_progress(scene, job: dict) -> None:
    settings = scene.spatia
    settings.job_id = job.get("id", settings.job_id)
    settings.job_status = job.get("status", "")
    settings.job_stage = job.get("stage", "") or ""
    settings.job_fraction = float(job.get("fraction") or 0.0)


def follow_and_fetch(client, job: dict, task, report, clips_dir: str) -> dict:
    """Worker: follow a job to its end, then download its video, cameras, new frames and memory."""
    report(job)
    job = client.follow(job["id"], on_update=report)
    if job["status"] != "succeeded":
        raise SpatiaError(f"job {job['id']} {job['status']}: {job_error_text(job)}")
    files = (job.get("result") or {}).get("files") or {}
    folder = os.path.join(clips_dir, job["id"])
    report({**job, "stage": "downloading the clip"})
    video = client.download(job["id"], files.get("video", "video.mp4"), os.path.join(folder, "video.mp4"))
    if files.get("cameras"):
        client.download(job["id"], files["cameras"], os.path.join(folder, "cameras.json"))
    _, _, new_frames = payloads.clip_span(job)
    for i, name in enumerate(new_frames):
        if task.cancelled:
            break
        client.download(job["id"], name, os.path.join(folder, "frames", os.path.basename(name)))
        if i % 10 == 0:
            report({**job, "stage": f"downloading frames {i + 1}/{len(new_frames)}"})
    fetched = fetch_memory(client, job["world_id"], (job.get("result") or {}).get("memory_version"))
    return {"job": job, "video": video, "frames_dir": os.path.join(folder, "frames"), "fetched": fetched}


def _retire_older_clips(scene, imported: dict) -> None:
    """A world's newest video holds every frame so far: hide the earlier clips behind the camera
    and mute their strips (they stay in the file, and in the Clips list, for comparison)."""
    camera = scene.camera
    if camera is not None and camera.type == "CAMERA":
        for background in camera.data.background_images:
            if background.clip is not None and background.clip != imported["clip"] and background.clip.name.startswith("Spatia "):
                background.show_background_image = False
    editor = scene.sequence_editor
    if editor is not None:
        for strip in editor.strips:
            if strip != imported["strip"] and strip.name.startswith("Spatia "):
                strip.mute = True


def apply_clip(scene, result: dict, shot_first_frame: int, prompt: str = "") -> str:
    """Main thread: the clip behind the camera and in the sequencer, the new memory, the lists."""
    from .clip_import import import_clip

    settings, job = scene.spatia, result["job"]
    video_start, count, _ = payloads.clip_span(job)
    frame_start = shot_first_frame + video_start
    name = f"Spatia {job['id'][:12]}"
    imported = import_clip(scene, scene.camera, result["video"], frame_start, name=name)
    _retire_older_clips(scene, imported)
    clip = settings.clips.add()
    clip.name, clip.job_id, clip.frame_start, clip.frame_count = name, job["id"], frame_start, count
    clip.video, clip.frames_dir, clip.prompt = result["video"], result["frames_dir"], prompt
    clip.memory_version = result["fetched"]["version"]
    settings.clip_index = len(settings.clips) - 1
    _job_progress(scene, job)
    settings.job_error = ""
    memory_text = apply_memory(scene, result["fetched"])
    return f"clip {name}: frames {frame_start}-{frame_start + count - 1}; {memory_text}"


def _start_follow(op, context, client, submit_job, shot_first_frame: int, prompt: str) -> set:
    clips_dir = runtime.user_dir("worlds", context.scene.spatia.world_id, "clips")

    def work(task, report):
        client.health()  # a backend of another API version is refused before anything is sent
        return follow_and_fetch(client, submit_job(), task, report, clips_dir)

    def done(scene, result):
        return apply_clip(scene, result, shot_first_frame, prompt)

    def progress(scene, job):
        _job_progress(scene, job)

    def failed(scene, exc):
        settings = scene.spatia
        settings.job_error = describe(exc)
        if settings.job_status not in ("failed", "cancelled", "interrupted"):
            settings.job_status = "failed"

    settings = context.scene.spatia
    settings.job_error, settings.job_status, settings.job_fraction, settings.job_stage = "", "queued", 0.0, "submitting"
    return run_async(op, context, GENERATE_TASK, work, done, on_progress=progress, on_error=failed, started="generating...")


def shot_for_scene(scene) -> tuple[dict, dict]:
    """The shot spec dict for the scene's camera, frame range, prompts and settings, plus the
    exported cameras; raises PlanError, CameraExportError or ValueError with a clear message."""
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
    shot = payloads.build_shot(
        exported, prompts, name=scene.name, world=settings.world_id or None, generator=settings.generator,
        quality=settings.quality, vram=settings.vram, seed=settings.seed, negative_prompt=settings.negative_prompt,
        dynamic_prompts=payloads.split_prompts(settings.dynamic_prompts), steps=settings.steps or None,
        guidance=settings.guidance or None, rounds=settings.rounds_dict())
    return shot, exported


class SPATIA_OT_generate(bpy.types.Operator):
    """Generate a clip along the active camera's path over the frame range, then import the clip and the new memory"""

    bl_idname = "spatia.generate"
    bl_label = "Generate Clip"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        scene = context.scene
        return scene is not None and scene.camera is not None and bool(scene.spatia.world_id) and not runtime.runner.busy(GENERATE_TASK)

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
        shots_dir = runtime.user_dir("worlds", settings.world_id, "shots")
        with open(os.path.join(shots_dir, f"shot-{time.strftime('%Y%m%d-%H%M%S')}.json"), "w", encoding="utf-8") as handle:
            json.dump(shot, handle)
        world_id = settings.world_id
        return _start_follow(self, context, client, lambda: client.submit(world_id, shot), start, prompts[0])


class SPATIA_OT_follow(bpy.types.Operator):
    """Follow the scene's last job again (after a restart of Blender or of the backend) and import its result"""

    bl_idname = "spatia.follow"
    bl_label = "Follow Job"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        scene = context.scene
        return scene is not None and bool(scene.spatia.job_id) and not runtime.runner.busy(GENERATE_TASK)

    def execute(self, context):
        settings = context.scene.spatia
        client = client_or_report(self)
        if client is None:
            return {"CANCELLED"}
        job_id = settings.job_id
        return _start_follow(self, context, client, lambda: client.job(job_id), settings.world_frame_start, "")


class SPATIA_OT_cancel(bpy.types.Operator):
    """Cancel the running generation (the backend stops between denoising steps)"""

    bl_idname = "spatia.cancel"
    bl_label = "Cancel Generation"

    @classmethod
    def poll(cls, context):
        scene = context.scene
        return scene is not None and bool(scene.spatia.job_id) and scene.spatia.job_status in ("queued", "running")

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


CLASSES = (
    SPATIA_OT_test_connection, SPATIA_OT_world_from_render, SPATIA_OT_world_from_image, SPATIA_OT_world_refresh,
    SPATIA_OT_memory_import, SPATIA_OT_memory_revert, SPATIA_OT_memory_push, SPATIA_OT_prompt_add,
    SPATIA_OT_prompt_remove, SPATIA_OT_camera_path, SPATIA_OT_coverage, SPATIA_OT_generate, SPATIA_OT_follow,
    SPATIA_OT_cancel,
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
