"""A small client of the Spatia backend service (docs/http-api.md), on `requests`.

    client = SpatiaClient("http://127.0.0.1:8765", token=None)
    world = client.create_world("street", "rgbd", 832, 480, image="first.png", depth="depth.npy",
                                camera={"intrinsics": [...], "w2c": [...]})
    job = client.submit_job(world["id"], shot_dict, idempotency_key="my-shot-1")
    job = client.wait(job["id"], progress=lambda fraction, stage: print(fraction, stage))
    client.download(job["id"], "video.mp4", "out/video.mp4")

Every method raises SpatiaClientError carrying the server's status, error type, message and field.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import requests

FINAL_STATES = ("succeeded", "failed", "cancelled", "interrupted")
DEFAULT_TIMEOUT = 60.0
Progress = Callable[[float, str], None]
FileInput = str | os.PathLike | bytes | np.ndarray


class SpatiaClientError(RuntimeError):
    """The server refused a request or cannot be reached; `message` is the server's own words."""

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None, field: str | None = None,
                 current_version: int | None = None):
        super().__init__(message if status is None else f"HTTP {status}: {message}")
        self.message, self.status, self.type, self.field = message, status, type, field
        self.current_version = current_version  # on a 409/428 of a memory write: the world's current version


def _file_bytes(value: FileInput, kind: str) -> bytes:
    """A path, raw bytes, or an array (encoded as PNG for images, .npy for depth)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, np.ndarray):
        buffer = io.BytesIO()
        if kind == "npy":
            np.save(buffer, value, allow_pickle=False)
        else:
            from PIL import Image

            Image.fromarray(value).save(buffer, format="PNG")
        return buffer.getvalue()
    return Path(value).read_bytes()


class SpatiaClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        base = base_url.rstrip("/")
        self.base_url = base.removesuffix("/v1")
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # --- plumbing ------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.base_url}/v1/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, stream: bool = False, timeout: float | None = None,
                **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, self.url(path), timeout=timeout or self.timeout, stream=stream,
                                            **kwargs)
        except requests.RequestException as err:
            raise SpatiaClientError(f"cannot reach the Spatia service at {self.base_url}: {err}") from err
        if response.status_code >= 400:
            raise self._error(response)
        return response

    @staticmethod
    def _error(response: requests.Response) -> SpatiaClientError:
        try:
            error = response.json()["error"]
            return SpatiaClientError(error["message"], status=response.status_code, type=error.get("type"),
                                     field=error.get("field"), current_version=error.get("current_version"))
        except (ValueError, KeyError, TypeError):
            return SpatiaClientError(response.text[:500] or response.reason, status=response.status_code)

    def _json(self, method: str, path: str, **kwargs) -> Any:
        response = self.request(method, path, **kwargs)
        return None if response.status_code == 204 else response.json()

    # --- system --------------------------------------------------------------------------------
    def health(self) -> dict:
        return self._json("GET", "health")

    def models(self) -> list[dict]:
        return self._json("GET", "models")

    def dashboard_link(self) -> str:
        """A single-use sign-in link to the dashboard (the token stays here; the link holds a code)."""
        return self.base_url + self._json("POST", "session/links")["path"]

    # --- worlds --------------------------------------------------------------------------------
    def create_world(self, name: str, kind: str, width: int, height: int, *, fps: float = 24.0,
                     voxel_size: float | None = None, camera: dict | None = None, depth_model: str | None = None,
                     image: FileInput | None = None, depth: FileInput | None = None, mask: FileInput | None = None,
                     points: FileInput | None = None) -> dict:
        """kind "image" (image [+ camera]), "rgbd" (image + depth + camera) or "points" (points: .ply/.safetensors)."""
        data = {"name": name, "kind": kind, "width": str(width), "height": str(height), "fps": repr(float(fps))}
        if voxel_size is not None:  # default: 0.02, or a snapshot's own
            data["voxel_size"] = repr(float(voxel_size))
        if camera is not None:
            data["camera"] = json.dumps({k: np.asarray(v).tolist() for k, v in camera.items()})
        if depth_model is not None:
            data["depth_model"] = depth_model
        files = {}
        for field, value, kind_of in (("image", image, "png"), ("depth", depth, "npy"), ("mask", mask, "png"),
                                      ("points", points, "raw")):
            if value is not None:
                filename = Path(value).name if isinstance(value, (str, os.PathLike)) else f"{field}.{kind_of}"
                files[field] = (filename, _file_bytes(value, kind_of), "application/octet-stream")
        return self._json("POST", "worlds", data=data, files=files or None)

    def list_worlds(self) -> list[dict]:
        return self._json("GET", "worlds")

    def get_world(self, world_id: str) -> dict:
        return self._json("GET", f"worlds/{world_id}")

    def delete_world(self, world_id: str) -> None:
        self.request("DELETE", f"worlds/{world_id}")

    # --- memory --------------------------------------------------------------------------------
    def memory_history(self, world_id: str) -> list[dict]:
        return self._json("GET", f"worlds/{world_id}/memory")

    def get_memory(self, world_id: str, version: int | str = "latest", format: str = "safetensors") -> bytes:
        return self.request("GET", f"worlds/{world_id}/memory/{version}", params={"format": format}).content

    def download_memory(self, world_id: str, dest, version: int | str = "latest", format: str = "safetensors") -> Path:
        response = self.request("GET", f"worlds/{world_id}/memory/{version}", params={"format": format}, stream=True)
        return _save_stream(response, Path(dest))

    def put_memory(self, world_id: str, snapshot: bytes | str | os.PathLike, *, parent: int,
                   message: str = "pushed") -> int:
        """Push a memory snapshot (safetensors bytes or file) as the world's new version.

        `parent` is the version the snapshot was made from; if the world has moved on since,
        the server refuses with 409 (SpatiaClientError.current_version names the newer one).
        A file is streamed, not read into memory."""
        headers = {"Content-Type": "application/octet-stream", "If-Match": f'"{int(parent)}"'}
        params = {"message": message, "parent": int(parent)}
        if isinstance(snapshot, (bytes, bytearray, memoryview)):
            return self._json("POST", f"worlds/{world_id}/memory", params=params, data=bytes(snapshot),
                              headers=headers)["version"]
        with open(snapshot, "rb") as handle:
            return self._json("POST", f"worlds/{world_id}/memory", params=params, data=handle,
                              headers=headers)["version"]

    def edit_memory(self, world_id: str, parent: int, *, message: str = "edited", delete_ids=(), move_ids=(),
                    move_xyz=(), add_xyz=(), add_rgb=None) -> dict:
        body = {"parent": parent, "message": message, "delete_ids": np.asarray(delete_ids, dtype=np.int64).tolist(),
                "move_ids": np.asarray(move_ids, dtype=np.int64).tolist(),
                "move_xyz": np.asarray(move_xyz, dtype=np.float64).reshape(-1, 3).tolist(),
                "add_xyz": np.asarray(add_xyz, dtype=np.float64).reshape(-1, 3).tolist()}
        if add_rgb is not None:
            body["add_rgb"] = np.asarray(add_rgb, dtype=np.int64).reshape(-1, 3).tolist()
        return self._json("POST", f"worlds/{world_id}/memory/edits", json=body)

    def diff_memory(self, world_id: str, from_version: int, to_version: int) -> dict:
        return self._json("GET", f"worlds/{world_id}/memory/diff", params={"from": from_version, "to": to_version})

    def revert_memory(self, world_id: str, version: int, *, parent: int) -> int:
        """Make `version`'s points the new version; `parent` is the current version it replaces."""
        return self._json("POST", f"worlds/{world_id}/memory/revert",
                          json={"version": int(version), "parent": int(parent)})["version"]

    # --- queries -------------------------------------------------------------------------------
    @staticmethod
    def _cameras(cameras) -> dict:
        """A spatia Cameras or a dict {width, height, intrinsics [F,4], w2c [F,4,4]}."""
        if hasattr(cameras, "intrinsics") and hasattr(cameras, "w2c"):
            cameras = {"width": cameras.width, "height": cameras.height, "intrinsics": cameras.intrinsics,
                       "w2c": cameras.w2c}
        return {"width": int(cameras["width"]), "height": int(cameras["height"]),
                "intrinsics": np.asarray(cameras["intrinsics"], dtype=np.float64).reshape(-1, 4).tolist(),
                "w2c": np.asarray(cameras["w2c"], dtype=np.float64).reshape(-1, 4, 4).tolist()}

    def render(self, world_id: str, cameras, version: int | None = None) -> dict:
        """{"frames", "coverage", "token", "urls"}; frames as PNG via render_frame."""
        return self._json("POST", f"worlds/{world_id}/query/render",
                          json={"cameras": self._cameras(cameras), "version": version})

    def render_arrays(self, world_id: str, cameras, version: int | None = None) -> dict[str, np.ndarray]:
        """rgb uint8 [F,H,W,3], depth float32 [F,H,W] (0 where empty), mask bool [F,H,W]."""
        response = self.request("POST", f"worlds/{world_id}/query/render", headers={"Accept": "application/octet-stream"},
                                json={"cameras": self._cameras(cameras), "version": version})
        with np.load(io.BytesIO(response.content), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}

    def render_frame(self, world_id: str, token: str, index: int) -> bytes:
        return self.request("GET", f"worlds/{world_id}/query/render/{token}/{index}.png").content

    def coverage(self, world_id: str, cameras, version: int | None = None) -> list[float]:
        return self._json("POST", f"worlds/{world_id}/query/coverage",
                          json={"cameras": self._cameras(cameras), "version": version})["coverage"]

    def points_in_box(self, world_id: str, box_min, box_max, limit: int = 100_000, version: int | None = None) -> dict:
        return self._json("POST", f"worlds/{world_id}/query/points-in-box",
                          json={"min": list(map(float, box_min)), "max": list(map(float, box_max)), "limit": limit,
                                "version": version})

    def raycast(self, world_id: str, origins, directions, radius: float | None = None,
                version: int | None = None) -> dict:
        return self._json("POST", f"worlds/{world_id}/query/raycast",
                          json={"origins": np.asarray(origins, dtype=np.float64).reshape(-1, 3).tolist(),
                                "directions": np.asarray(directions, dtype=np.float64).reshape(-1, 3).tolist(),
                                "radius": radius, "version": version})

    # --- jobs ----------------------------------------------------------------------------------
    def submit_job(self, world_id: str, shot: dict, idempotency_key: str | None = None) -> dict:
        """Queue a shot on a world. The same idempotency key returns the job it made the first time."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "jobs", json={"world_id": world_id, "shot": shot}, headers=headers)

    def list_jobs(self, world_id: str | None = None) -> list[dict]:
        return self._json("GET", "jobs", params={"world_id": world_id} if world_id else None)

    def get_job(self, job_id: str) -> dict:
        return self._json("GET", f"jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict:
        return self._json("POST", f"jobs/{job_id}/cancel")

    def resume_job(self, job_id: str) -> dict:
        return self._json("POST", f"jobs/{job_id}/resume")

    def events(self, job_id: str, timeout: float | None = None) -> Iterator[dict]:
        """The job's Server-Sent Events, one Job dict per change, until it reaches a final state.
        `timeout` bounds the wait for each event (keep-alives arrive every 15 s)."""
        response = self.request("GET", f"jobs/{job_id}/events", stream=True, timeout=timeout or max(self.timeout, 30.0),
                                headers={"Accept": "text/event-stream"})
        with response:
            data: list[str] = []
            for line in response.iter_lines(decode_unicode=True):
                if line is None:
                    continue
                if line == "":
                    if data:
                        yield json.loads("\n".join(data))
                        data = []
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())

    def wait(self, job_id: str, progress: Progress | None = None, *, timeout: float | None = None,
             poll_interval: float = 0.5) -> dict:
        """Follow a job to a final state (SSE, falling back to polling) and return it.
        `progress(fraction, stage)` is called on every change; `timeout` (s) raises TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = None
        try:
            for job in self.events(job_id):
                if progress:
                    progress(job["fraction"], job["stage"])
                if job["status"] in FINAL_STATES:
                    return job
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
        except SpatiaClientError as err:
            if err.status is not None and err.status != 404 and err.status < 500:
                raise
        except (requests.RequestException, ValueError):
            pass  # the stream broke: poll instead
        while True:
            job = self.get_job(job_id)
            if progress:
                progress(job["fraction"], job["stage"])
            if job["status"] in FINAL_STATES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
            time.sleep(poll_interval)

    def download(self, job_id: str, path: str, dest) -> Path:
        """Save a file of a finished job (`video.mp4`, `cameras.json`, `frames/000000.png`, ...) to `dest`."""
        response = self.request("GET", f"jobs/{job_id}/files/{path}", stream=True)
        return _save_stream(response, Path(dest))


def _save_stream(response: requests.Response, dest: Path) -> Path:
    """Write a streamed body to a temporary file beside `dest`, then rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.with_name(f".{dest.name}.part")
    try:
        with response, open(temp, "wb") as handle:
            for chunk in response.iter_content(chunk_size=1 << 20):
                handle.write(chunk)
        os.replace(temp, dest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return dest


# --- one shot, end to end ----------------------------------------------------------------------
def _world_for_shot(client: SpatiaClient, spec, base: Path) -> str:
    """The world a shot runs in on the server: the one it names, or a new one from its `init`."""
    if spec.world:
        return client.get_world(spec.world)["id"]
    init = spec.init
    if init is None:
        raise SpatiaClientError("the shot names no world and no init: give `world` (a world id on the server) or `init`")

    def local(path):
        return None if path is None else (Path(path) if Path(path).is_absolute() else base / path)

    first = spec.keyframe_cameras()[0]
    camera = {"intrinsics": first.intrinsics[0], "w2c": first.w2c[0]}
    common = dict(fps=spec.fps, mask=local(init.mask))
    if init.kind == "points":
        return client.create_world(spec.name, "points", spec.width, spec.height, points=local(init.points),
                                   fps=spec.fps)["id"]
    if init.kind == "render":
        if not str(init.depth).endswith(".npy"):
            raise SpatiaClientError("init.depth must be a .npy depth map (metres, z along the optical axis)")
        return client.create_world(spec.name, "rgbd", spec.width, spec.height, image=local(init.image),
                                   depth=local(init.depth), camera=camera, **common)["id"]
    return client.create_world(spec.name, "image", spec.width, spec.height, image=local(init.image), camera=camera,
                               **common)["id"]


def generate_remote(server: str, shot_path, out_dir, token: str | None = None, progress: Progress | None = None) -> dict:
    """Run a shot spec file on a Spatia service and fetch the results into `out_dir`.

    The shot's `world` names a world on the server, else its `init` files are uploaded to create
    one. Writes video.mp4, cameras.json, frames/ and memory.ply into out_dir; returns
    {"summary": {...}, "job": job}.
    """
    from spatia.formats.shot import dump_shot, load_shot

    from spatia.engine.plan import plan_rounds

    shot_path = Path(shot_path)
    spec = load_shot(shot_path)
    if not spec.world:  # a new world: the plan is checked here, before anything is created
        plan = spec.rounds
        plan_rounds(len(spec.trajectory()), list(spec.prompts), first_round_frames=plan.first_round_frames,
                    round_frames=plan.round_frames, overlap=plan.overlap)
    client = SpatiaClient(server, token=token)
    generators = {m["name"] for m in client.models() if m["role"] == "generator"}
    if spec.generator not in generators:
        raise SpatiaClientError(f"unknown generator {spec.generator!r}; the server knows: {', '.join(sorted(generators))}",
                                field="generator")
    world_id = _world_for_shot(client, spec, shot_path.parent)
    shot = dump_shot(spec)
    shot.pop("init", None)
    shot["world"] = None
    try:
        job = client.submit_job(world_id, shot)
    except SpatiaClientError:
        if not spec.world:  # the world was made for this run only: leave nothing half-made behind
            client.delete_world(world_id)
        raise
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job = client.wait(job["id"], progress=progress)
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise SpatiaClientError(f"job {job['id']} {job['status']}: {error.get('type', '')}: {error.get('message', '')}",
                                type=error.get("type"))
    result = job["result"]
    video = client.download(job["id"], result["files"]["video"], out / "video.mp4")
    client.download(job["id"], result["files"]["cameras"], out / "cameras.json")
    for name in result["files"]["frames"]:
        client.download(job["id"], name, out / name)
    client.download_memory(world_id, out / "memory.ply", version=result["memory_version"], format="ply")
    summary = {"server": client.base_url, "world_id": world_id, "job_id": job["id"], "frames": result["frames"],
               "rounds": len(result["rounds"]), "memory_version": result["memory_version"], "video": str(video)}
    (out / "report.json").write_text(json.dumps({"summary": summary, "job": job}, indent=2))
    return {"summary": summary, "job": job}
