"""Add-on preferences: where the backend is, its token, and a local backend this Blender
session can start and stop (its log opens in a Text datablock)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from . import runtime
from .client import DEFAULT_URL, normalize_url



def _token_changed(self, context):
    # a typed token belongs to the URL it was typed for, and is sent only there
    self.token_url = normalize_url(self.backend_url) if self.token.strip() else ""


class SpatiaPreferences(bpy.types.AddonPreferences):
    bl_idname = runtime.ADDON_ID

    backend_url: StringProperty(name="Backend URL", default=DEFAULT_URL,
                                description="Address of the Spatia backend (`spatia serve`); a URL that is not on this "
                                            "computer needs Blender's online access")
    token: StringProperty(name="Token", subtype="PASSWORD", default="", update=_token_changed,
                          description="The backend's token (<data dir>/token); empty: for the local backend (this "
                                      "computer, the port below), read it from the data directory")
    token_url: StringProperty(name="Token's backend", default="", options={"HIDDEN"},
                              description="The backend URL the token was typed for; it is sent to no other")
    auto_token: BoolProperty(name="Read local token from data directory", default=True,
                             description="When the token is empty and the URL is the local backend's (loopback, the "
                                         "port below), use the token it wrote to its data directory")
    python_path: StringProperty(name="Backend Python", subtype="FILE_PATH", default="",
                                description="The python (or environment folder) where the `spatia` backend is installed")
    port: IntProperty(name="Port", default=runtime.DEFAULT_PORT, min=1024, max=65535)
    data_dir: StringProperty(name="Data directory", subtype="DIR_PATH", default=runtime.DEFAULT_DATA_DIR,
                             description="Where a local backend keeps its worlds, memory versions and token (the same "
                                         "default as `spatia serve`; kept when the extension is uninstalled)")
    presets_dir: StringProperty(name="Presets folder", subtype="DIR_PATH", default="",
                                description="Folder with quality, model, VRAM and camera path presets (default: the repository's presets/)")

    def draw(self, context):
        draw_preferences(self.layout, self)


def draw_preferences(layout, prefs) -> None:
    col = layout.column()
    col.prop(prefs, "backend_url")
    row = col.row(align=True)
    row.prop(prefs, "token")
    if prefs.token.strip() and prefs.token_url and prefs.token_url != normalize_url(prefs.backend_url):
        col.label(text=f"The token is for {prefs.token_url}: not sent to this URL; type this backend's token",
                  icon="INFO")
    col.prop(prefs, "auto_token")
    row = col.row()
    row.operator("spatia.test_connection", icon="LINKED")
    status = runtime.connection
    line = col.row()
    line.alert = bool(status.error)
    line.label(text=status.summary(), icon="CHECKMARK" if status.connected else "ERROR" if status.error else "QUESTION")

    box = layout.box()
    box.label(text="Local backend", icon="CONSOLE")
    box.prop(prefs, "python_path")
    box.prop(prefs, "port")
    box.prop(prefs, "data_dir")
    row = box.row(align=True)
    if runtime.backend.running:
        row.operator("spatia.backend_stop", icon="CANCEL")
        box.label(text=f"running (pid {runtime.backend.process.pid})", icon="PLAY")
    else:
        row.operator("spatia.backend_start", icon="PLAY")
        code = runtime.backend.exit_code
        if code is not None:
            box.label(text=f"exited with status {code}", icon="ERROR")
    row.operator("spatia.backend_log", icon="TEXT")
    layout.prop(prefs, "presets_dir")


CLASSES = (SpatiaPreferences,)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

