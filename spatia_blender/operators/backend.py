"""The backend: test the connection; start, stop and read the log of a local backend."""

from __future__ import annotations

import os

import bpy

from .. import runtime
from ..backend_process import BackendProcessError, tail
from ..client import SpatiaError
from ..compat import poll_message
from .common import check_connection_async, describe

LOG_TEXT = "Spatia backend log"


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


class SPATIA_OT_backend_start(bpy.types.Operator):
    """Start a Spatia backend on this computer (`python -m spatia.cli serve`)"""

    bl_idname = "spatia.backend_start"
    bl_label = "Start Backend"

    @classmethod
    def poll(cls, context):
        if runtime.backend.running:
            return poll_message(cls, f"The local backend is running already (pid {runtime.backend.process.pid})")
        return True

    def execute(self, context):
        prefs = runtime.prefs()
        url = f"http://127.0.0.1:{prefs.port}"
        try:
            command = runtime.backend.start(bpy.path.abspath(prefs.python_path), prefs.port, runtime.data_dir(),
                                            runtime.log_path())
        except (BackendProcessError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if hasattr(prefs, "bl_rna") and prefs.backend_url != url:
            prefs.backend_url = url
        self.report({"INFO"}, f"started: {' '.join(command)} (log: {runtime.log_path()})")
        if bpy.app.background:
            try:
                runtime.backend.wait_ready(lambda: runtime.client(timeout=5).health())
            except BackendProcessError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
        else:
            check_connection_async(context, wait_s=60.0)
        return {"FINISHED"}


class SPATIA_OT_backend_stop(bpy.types.Operator):
    """Stop the backend this Blender session started"""

    bl_idname = "spatia.backend_stop"
    bl_label = "Stop Backend"

    @classmethod
    def poll(cls, context):
        if not runtime.backend.running:
            return poll_message(cls, "This Blender has not started a backend")
        return True

    def execute(self, context):
        code = runtime.backend.stop()
        runtime.connection.set_error("", "backend stopped")
        self.report({"INFO"}, f"backend stopped (status {code})")
        return {"FINISHED"}


class SPATIA_OT_backend_log(bpy.types.Operator):
    """Open the local backend's log in a Text datablock (Text Editor)"""

    bl_idname = "spatia.backend_log"
    bl_label = "View Backend Log"

    def execute(self, context):
        path = runtime.log_path()
        if not os.path.isfile(path):
            self.report({"WARNING"}, f"no log yet ({path})")
            return {"CANCELLED"}
        text = bpy.data.texts.get(LOG_TEXT) or bpy.data.texts.new(LOG_TEXT)
        text.clear()
        text.write(tail(path))
        text.use_fake_user = False
        for area in getattr(context.screen, "areas", []):
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
                break
        self.report({"INFO"}, f"log in the Text Editor as '{LOG_TEXT}'")
        return {"FINISHED"}


CLASSES = (SPATIA_OT_test_connection, SPATIA_OT_backend_start, SPATIA_OT_backend_stop, SPATIA_OT_backend_log)
