"""What every operator shares: running network work off the main thread and reporting its
outcome, the memory download (cached on disk) and its import, the connection check."""

from __future__ import annotations

import os
import time

import bpy
import numpy as np

from .. import plan, runtime, scene_data
from ..camera_export import CameraExportError
from ..client import ApiError, Cancelled, SpatiaError

WORLD_TASK = "world"
MEMORY_TASK = "memory"
OBJECTS_TASK = "objects"
GENERATE_TASK = "generate"
NO_OBJECT_MEMORY = (404, 405)  # what a backend from before object memory answers its routes with


def describe(exc: BaseException) -> str:
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
        notify(scene, describe(exc), error=not isinstance(exc, Cancelled))

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
            op.report({"INFO"} if isinstance(failure[0], Cancelled) else {"ERROR"}, describe(failure[0]))
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


def fetch_memory(client, world_id: str, version=None, *, data_root: str) -> dict:
    """World info, history and one memory version (default: latest), cached on disk under the
    shot's data folder `data_root` (resolve it on the main thread: runtime.shot_dir). Worker thread."""
    world = client.world(world_id)
    history = client.memory_history(world_id)
    if version is None:
        if not history:
            raise SpatiaError(f"world {world_id} has no memory yet")
        version = int(history[-1]["version"])
    path = scene_data.memory_cache_path(data_root, world_id, version)  # versions never change: cache them
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


def fetch_objects(client, world_id: str, *, missing_ok: bool = False) -> dict | None:
    """The world's object table and every object's points (worker thread). `missing_ok`: a
    backend without object memory gives None instead of an error."""
    try:
        table = client.objects(world_id)
    except ApiError as exc:
        if missing_ok and exc.status in NO_OBJECT_MEMORY:
            return None
        raise
    points = {}
    for info in table.get("objects") or []:
        data = client.object_points(world_id, info["id"])
        points[int(info["id"])] = {"xyz": np.asarray(data.get("xyz") or np.zeros((0, 3)), np.float32).reshape(-1, 3),
                                   "rgb": np.asarray(data.get("rgb") or np.zeros((0, 3)), np.uint8).reshape(-1, 3)}
    return {"world": world_id, "table": table, "points": points}


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


WATCH_INTERVAL_S = 5.0  # how often the connection line is checked against the backend


def watch_connection() -> float | None:
    """A timer (every WATCH_INTERVAL_S): the connection line follows the backend. A local backend
    this Blender started that has exited is reported at once, with its exit status; a connected
    backend is asked for its health off the main thread, and one that stopped answering shows as
    such, without a press of Test Connection. Returns the timer's next interval."""
    process = runtime.backend.process
    code = runtime.backend.exit_code
    if process is not None and code is not None:
        runtime.backend.process = None  # reported once; Start Backend is offered again
        runtime.connection.set_error(runtime.connection.url, f"the local backend exited (status {code}); "
                                     "View Backend Log shows why")
        runtime.redraw()
    elif runtime.connection.connected and not runtime.runner.busy("connection"):
        check_connection_async(bpy.context)
    return WATCH_INTERVAL_S


def prompts_of(settings) -> list[str]:
    return [p.text.strip() for p in settings.prompts if p.text.strip()]
