"""A real service process on 127.0.0.1 for the tests, and small synthetic inputs."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
from spatia.cameras import Cameras

LAUNCHER = Path(__file__).with_name("service_launcher.py")
WIDTH, HEIGHT = 64, 48
INTRINSICS = [50.0, 50.0, 32.0, 24.0]
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    data_dir: Path
    log_path: Path

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        self.process.kill()
        self.process.wait(10)


def start_server(data_dir: Path, *args: str, port: int | None = None, step_s: float = 0.1) -> ServerProcess:
    port = port or free_port()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-server-{port}.log"
    # no network and an empty model cache, whatever this machine has
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(data_dir.parent / "hf-cache"),
               SPATIA_TEST_SLOW_STEP_S=str(step_s), OMP_NUM_THREADS="1")
    env.pop("SPATIA_MODELS_DIR", None)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
             "--log-level", "warning", *args],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", data_dir, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}:\n{server.log()}")
        try:
            if requests.get(f"{server.url}/openapi.json", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"the service did not start within {START_TIMEOUT_S} s:\n{server.log()}")


# --- inputs ----------------------------------------------------------------------------------
def first_view():
    """A textured wall 2 m ahead, slightly tilted, as an RGB + depth + camera."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([(xx * 4) % 256, (yy * 5) % 256, (xx * yy) % 256], axis=-1).astype(np.uint8)
    rgb = np.clip(rgb.astype(int) + rng.integers(0, 20, rgb.shape), 0, 255).astype(np.uint8)
    depth = (2.0 + 0.01 * xx).astype(np.float32)
    return rgb, depth, {"intrinsics": INTRINSICS, "w2c": np.eye(4).tolist()}


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def shot(frames: int = 24, *, generator: str = "preview", first_round: int = 12, round_frames: int = 10,
         overlap: int = 2, name: str = "pan") -> dict:
    """A small sideways pan over the wall, as a spatia.shot v1 dict."""
    xs = np.arange(frames) * 0.0125  # a fixed step, so a longer shot extends a shorter one
    cams = []
    for i, x in enumerate(xs):
        w2c = np.eye(4)
        w2c[0, 3] = -x  # camera moves +x
        cams.append({"frame": i + 1, "intrinsics": INTRINSICS, "w2c": w2c.tolist()})
    return {"schema": "spatia.shot", "version": 1, "name": name, "width": WIDTH, "height": HEIGHT, "fps": 24.0,
            "frames": cams, "prompts": ["a wall"], "generator": generator,
            "rounds": {"first_round_frames": first_round, "round_frames": round_frames, "overlap": overlap}}


def shot_cameras(spec: dict) -> Cameras:
    return Cameras([f["intrinsics"] for f in spec["frames"]], [f["w2c"] for f in spec["frames"]],
                   spec["width"], spec["height"])
