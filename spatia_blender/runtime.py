"""State that lives for one Blender session (not saved): the task runner, the backend
process this session started, the last connection check; plus small bpy helpers shared by
the operators and panels."""

from __future__ import annotations

import os
import tempfile

import bpy

from . import presets
from .backend_process import BackendProcess, read_token
from .client import DEFAULT_URL, Client, is_loopback, normalize_url
from .tasks import TaskRunner

ADDON_ID = __package__
DEFAULT_PORT = 8765
# The local backend's worlds and token: the same default as `spatia serve`, outside the
# extension's own user folder (Blender deletes that one when the extension is uninstalled).
DEFAULT_DATA_DIR = os.path.join("~", ".spatia", "service")
# A shot's clips, frames and memory cache: beside the .blend, like Blender's own caches.
DEFAULT_SHOT_DIR = "//spatia"


def _blocking() -> bool:
    return bool(bpy.app.background)


def blocking() -> bool:
    """Whether main-thread work runs at once (Blender in background: timers never fire)."""
    return _blocking()


def _tick():
    runner.drain()
    redraw()
    return 0.1 if runner.pending else None


def _wake():
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=0.05, persistent=True)


runner = TaskRunner(blocking=_blocking, wake=_wake)
backend = BackendProcess()


class Connection:
    """The last health check: `health` (dict) when connected, `error` (str) otherwise."""

    def __init__(self):
        self.health: dict | None = None
        self.error: str = ""
        self.url: str = ""

    @property
    def connected(self) -> bool:
        return self.health is not None

    def set_ok(self, url: str, health: dict) -> None:
        self.url, self.health, self.error = url, health, ""

    def set_error(self, url: str, error: str) -> None:
        self.url, self.health, self.error = url, None, error

    def summary(self) -> str:
        if self.health:
            h = self.health
            gpu = h.get("gpu_name") or h.get("device", "cpu")
            vram = h.get("vram_free_gb")
            vram_text = f", {vram:.1f} GB VRAM free" if isinstance(vram, (int, float)) else ""
            return f"spatia {h.get('version', '?')} on {gpu}{vram_text}"
        return self.error or "not connected"


connection = Connection()


class _Defaults:
    """Preference values when the extension is registered without Blender's add-on system."""

    backend_url = DEFAULT_URL
    token = ""
    token_url = ""
    python_path = ""
    port = DEFAULT_PORT
    data_dir = ""
    presets_dir = ""
    auto_token = True


def prefs():
    addon = bpy.context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None and addon.preferences is not None else _Defaults()


_user_base: str | None = None


def user_dir(*parts: str, create: bool = True) -> str:
    """The extension's user data folder (never the extension's own folder). The base is
    looked up on the main thread (at register) and remembered, so worker threads can use it."""
    global _user_base
    base = os.environ.get("SPATIA_BLENDER_USER_DIR", "")
    if not base:
        if _user_base is None:
            try:
                _user_base = bpy.utils.extension_path_user(ADDON_ID, create=True)
            except ValueError:  # not installed as an extension (a development checkout)
                _user_base = bpy.utils.user_resource("DATAFILES", path="spatia", create=True) or \
                    os.path.join(tempfile.gettempdir(), "spatia")
        base = _user_base
    path = os.path.join(base, *parts)
    if create:
        os.makedirs(path, exist_ok=True)
    return path


def data_dir() -> str:
    """The local backend's data directory (its worlds and its token)."""
    configured = prefs().data_dir.strip() or DEFAULT_DATA_DIR
    return os.path.normpath(os.path.expanduser(bpy.path.abspath(configured)))


_process = f"{os.getpid()}"


def unsaved_dir() -> str:
    """Where the shot data of a .blend that was never saved waits until it is (then it moves)."""
    return user_dir("unsaved", _process)


def shot_dir(scene, *parts: str, create: bool = True) -> str:
    """A folder of the scene's shot data (main thread): the scene's Shot Data folder, a `//`
    path relative to the .blend by default; for a .blend never saved, the extension's user folder."""
    setting = (scene.spatia.data_dir if scene is not None else "").strip() or DEFAULT_SHOT_DIR
    if setting.startswith("//") and not bpy.data.filepath:
        base = unsaved_dir()
    else:
        base = os.path.expanduser(bpy.path.abspath(setting))
    path = os.path.normpath(os.path.join(base, *parts))
    if create:
        os.makedirs(path, exist_ok=True)
    return path


def blend_path(path: str) -> str:
    """`path` as Blender should store it: relative (`//`) to a saved .blend, else absolute."""
    if bpy.data.filepath:
        try:
            return bpy.path.relpath(path)
        except ValueError:  # another drive on Windows
            return path
    return path


def log_path() -> str:
    return os.path.join(user_dir("logs"), "backend.log")


def local_url(port: int | None = None) -> str:
    return f"http://127.0.0.1:{int(port if port is not None else prefs().port)}"


def is_local_backend(url: str) -> bool:
    """Whether `url` is the local backend of the preferences (loopback, its port)."""
    import urllib.parse

    root = normalize_url(url)
    parts = urllib.parse.urlsplit(root)
    return is_loopback(root) and parts.port == int(prefs().port) and parts.path in ("", "/")


def token() -> str:
    """The token for the configured URL: the one typed in the preferences for this URL, else, for
    the local backend only, the one it wrote to its data directory (never sent to another backend)."""
    p = prefs()
    typed_for = getattr(p, "token_url", "")
    if p.token.strip() and (not typed_for or typed_for == normalize_url(p.backend_url)):
        return p.token.strip()
    if getattr(p, "auto_token", True) and is_local_backend(p.backend_url):
        return read_token(data_dir())
    return ""


def client(timeout: float | None = None) -> Client:
    """A client for the configured backend; raises OnlineAccessDenied for a remote URL offline."""
    kwargs = {} if timeout is None else {"timeout": timeout}
    return Client(prefs().backend_url, token(), online_access=bool(bpy.app.online_access), **kwargs)


def presets_dir():
    return presets.find_presets_dir(bpy.path.abspath(prefs().presets_dir) if prefs().presets_dir else "")


def redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PREFERENCES", "GRAPH_EDITOR", "DOPESHEET_EDITOR", "SEQUENCE_EDITOR"}:
                area.tag_redraw()


def scene_by_name(name: str):
    return bpy.data.scenes.get(name)


def shutdown() -> None:
    from . import clip_import

    runner.cancel_all()
    clip_import.queue.clear()
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    backend.stop()
