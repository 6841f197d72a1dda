"""Start and stop a local Spatia backend (`python -m spatia.cli serve`) as a subprocess.

The backend runs in its own Python environment (the one with torch and the models), never
inside Blender; its output goes to a log file the user can open in Blender's text editor.
Nothing here imports bpy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time


class BackendProcessError(RuntimeError):
    pass


def serve_command(python: str, port: int, data_dir: str, host: str | None = None) -> list[str]:
    """The backend command line; without `host` it binds the backend's default (loopback)."""
    command = [python, "-m", "spatia.cli", "serve", "--port", str(int(port)), "--data-dir", data_dir]
    return command + ["--host", host] if host else command


def resolve_python(path: str) -> str:
    """The backend's Python: a python executable, or an environment folder holding bin/python."""
    path = os.path.expanduser((path or "").strip())
    if not path:
        raise BackendProcessError("set the backend's Python (Preferences > Add-ons > Spatia > Backend Python): "
                                  "the python of the environment where `spatia` is installed, or that environment's folder")
    if os.path.isdir(path):
        for candidate in ("bin/python", "bin/python3", "Scripts/python.exe"):
            full = os.path.join(path, candidate)
            if os.path.isfile(full):
                return full
        raise BackendProcessError(f"{path} is a folder without bin/python; point to the environment or its python")
    if os.path.isfile(path):
        return path
    found = shutil.which(path)
    if found:
        return found
    raise BackendProcessError(f"backend Python not found: {path}")


class BackendProcess:
    """One backend subprocess that this Blender session started."""

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.log_path: str | None = None
        self.command: list[str] = []

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def start(self, python: str, port: int, data_dir: str, log_path: str, host: str | None = None) -> list[str]:
        if self.running:
            raise BackendProcessError(f"the backend is already running (pid {self.process.pid})")
        python = resolve_python(python)
        os.makedirs(data_dir, exist_ok=True)
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        self.command = serve_command(python, port, data_dir, host)
        self.log_path = log_path
        env = dict(os.environ)
        for name in ("PYTHONHOME", "PYTHONPATH"):  # Blender's own Python settings must not leak
            env.pop(name, None)
        env["PYTHONUNBUFFERED"] = "1"
        with open(log_path, "ab") as log:
            log.write(f"\n$ {' '.join(self.command)}\n".encode())
            log.flush()
            kwargs = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if sys.platform == "win32" else {"start_new_session": True}
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, **kwargs)
        return self.command

    def stop(self, timeout: float = 10.0) -> int | None:
        """Terminate the process (then kill it after `timeout` s); returns its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        code = self.process.returncode
        self.process = None
        return code

    def wait_ready(self, probe, timeout: float = 60.0, interval: float = 0.25) -> None:
        """Call probe() until it returns without raising; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BackendProcessError(f"the backend exited with status {self.process.returncode}; see {self.log_path}")
            try:
                probe()
                return
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last = exc
            time.sleep(interval)
        raise BackendProcessError(f"the backend did not answer within {timeout:.0f} s ({last}); see {self.log_path}")


def read_token(data_dir: str) -> str:
    """The token the backend wrote to <data dir>/token, or ''."""
    try:
        with open(os.path.join(data_dir, "token"), encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def tail(path: str, max_bytes: int = 200_000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(size - max_bytes, 0))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
