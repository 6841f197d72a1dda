"""Open the backend's dashboard in the web browser, signed in: the backend is asked (with the
token) for a single-use sign-in link, which the browser trades for its own session cookie. The
token itself never leaves Blender."""

from __future__ import annotations

import webbrowser

import bpy

from .. import runtime
from ..client import SpatiaError
from .common import describe

DASHBOARD_TASK = "dashboard"


def open_in_browser(url: str) -> None:
    webbrowser.open(url, new=2)


class SPATIA_OT_open_dashboard(bpy.types.Operator):
    """Open the backend's studio dashboard (jobs, live previews, worlds, the machine) in the web browser"""

    bl_idname = "spatia.open_dashboard"
    bl_label = "Open Dashboard"

    def execute(self, context):
        try:
            client = runtime.client(timeout=10)
        except SpatiaError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        outcome = {}

        def done(url):
            outcome["url"] = url
            open_in_browser(url)

        def failed(exc):
            outcome["error"] = describe(exc)
            runtime.connection.set_error(client.root, outcome["error"])
            runtime.redraw()

        try:
            task = runtime.runner.submit(DASHBOARD_TASK, lambda task, report: client.dashboard_link(), on_done=done,
                                         on_error=failed)
        except RuntimeError:
            self.report({"WARNING"}, "already opening the dashboard")
            return {"CANCELLED"}
        if task.done.is_set():  # background mode: ran inline
            if "error" in outcome:
                self.report({"ERROR"}, outcome["error"])
                return {"CANCELLED"}
            self.report({"INFO"}, f"opened the dashboard of {client.root}")
        return {"FINISHED"}


CLASSES = (SPATIA_OT_open_dashboard,)
