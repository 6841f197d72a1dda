"""A small HTTP client for the Spatia backend (docs/http-api.md), on `requests` alone.

Every failure becomes a SpatiaError subclass whose message is fit for the UI:
BackendUnavailable (nothing answers), AuthError (token refused), VersionSkew (the backend
speaks another API version), ApiError (any other 4xx/5xx, with the backend's message), and
OnlineAccessDenied (a non-loopback URL while Blender's online access is off).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import urllib.parse
import uuid

import requests

API_VERSION = 1
DEFAULT_URL = "http://127.0.0.1:8765"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 60.0
FINAL_STATES = ("succeeded", "failed", "cancelled", "interrupted")


class SpatiaError(Exception):
    """A backend problem, worded for the user."""


class BackendUnavailable(SpatiaError):
    pass


class AuthError(SpatiaError):
    pass


class VersionSkew(SpatiaError):
    pass


class OnlineAccessDenied(SpatiaError):
    pass


class Cancelled(SpatiaError):
    pass


class ApiError(SpatiaError):
    def __init__(self, status: int, kind: str, message: str, field: str | None = None,
                 current_version: int | None = None):
        self.status, self.kind, self.field, self.current_version = status, kind, field, current_version
        where = f" (field {field})" if field else ""
        super().__init__(f"backend error {status} {kind}: {message}{where}")


class MemoryConflict(ApiError):
    """A memory write based on a version that is no longer the current one (409)."""

    def __init__(self, message: str, current_version: int | None):
        super().__init__(409, "conflict", message, None, current_version)
        now = f" (now version {current_version})" if current_version is not None else ""
        self.args = (f"the memory changed on the backend{now}; import the latest version, apply your edit again "
                     f"and push ({message})",)


class ObjectsConflict(ApiError):
    """A write to the world's objects based on an objects version that is no longer current (409)."""

    def __init__(self, message: str, current_version: int | None):
        super().__init__(409, "conflict", message, None, current_version)
        now = f" (now version {current_version})" if current_version is not None else ""
        self.args = (f"the world's objects changed on the backend{now}; fetch the objects again and retry ({message})",)


def normalize_url(url: str) -> str:
    """The server root (scheme://host:port[/prefix]) without a trailing /v1."""
    url = (url or "").strip() or DEFAULT_URL
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/").removesuffix("/v1")


def is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(normalize_url(url)).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url_allowed(url: str, online_access: bool) -> None:
    """Refuse a backend on another machine while Blender's "Allow Online Access" is off."""
    if not online_access and not is_loopback(url):
        raise OnlineAccessDenied(
            f"{normalize_url(url)} is not on this computer and Blender's online access is off "
            "(Preferences > System > Network > Allow Online Access); use a loopback URL such as "
            f"{DEFAULT_URL} or allow online access")


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str = "", *, online_access: bool = False,
                 timeout: float = READ_TIMEOUT):
        self.root = normalize_url(url)
        check_url_allowed(self.root, online_access)
        self.base = self.root + "/v1"
        self.token = (token or "").strip()
        self.timeout = timeout
        self.session = requests.Session()

    # --- plumbing ----------------------------------------------------------------------------
    def _headers(self, extra: dict | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    def request(self, method: str, path: str, *, expect=(200, 201, 204), headers=None, stream=False,
                memory_write: bool = False, objects_write: bool = False, **kwargs):
        url = self.base + path
        try:
            response = self.session.request(method, url, headers=self._headers(headers), stream=stream,
                                            timeout=(CONNECT_TIMEOUT, self.timeout), **kwargs)
        except requests.exceptions.Timeout:
            raise BackendUnavailable(f"the Spatia backend at {self.root} did not answer in time") from None
        except requests.exceptions.ConnectionError:
            raise BackendUnavailable(
                f"cannot reach the Spatia backend at {self.root}: start it (Preferences > Add-ons > Spatia > "
                "Start backend, or `spatia serve`) or fix the URL") from None
        if response.status_code in expect:
            return response
        raise self._error(response, memory_write, objects_write)

    def _error(self, response, memory_write: bool = False, objects_write: bool = False) -> SpatiaError:
        kind, message, field, current, structured = "error", response.reason or "", None, None, False
        try:
            data = response.json()
            body = data.get("error") or {}
            structured = bool(body)
            kind, message, field = body.get("type", kind), body.get("message", message), body.get("field")
            current = body.get("current_version", data.get("current_version"))
        except (ValueError, AttributeError):
            text = (response.text or "").strip()
            message = text[:300] or message
        if response.status_code in (401, 403):
            if not self.token:
                return AuthError(f"the backend at {self.root} needs a token and none is set: paste the one in its "
                                 "data directory (<data dir>/token) into Preferences > Add-ons > Spatia > Token")
            return AuthError(f"the backend at {self.root} refused the token ({message}); copy it from "
                             "<data dir>/token into Preferences > Add-ons > Spatia > Token")
        if response.status_code == 404 and not structured:
            return ApiError(404, "not_found", f"{response.url} does not exist: is {self.root} the address of a Spatia "
                            "backend (`spatia serve`)? Check the Backend URL in Preferences > Add-ons > Spatia")
        if response.status_code == 409 and memory_write:
            return MemoryConflict(message, None if current is None else int(current))
        if response.status_code == 409 and objects_write:
            return ObjectsConflict(message, None if current is None else int(current))
        return ApiError(response.status_code, kind, message, field, None if current is None else int(current))

    def get_json(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, body: dict | None = None, **kwargs):
        response = self.request("POST", path, json=body if body is not None else {}, **kwargs)
        return response.json() if response.content else None

    # --- health ------------------------------------------------------------------------------
    def health(self) -> dict:
        """GET /health, refusing a backend that speaks another API version."""
        info = self.get_json("/health")
        version = info.get("api_version")
        if version != API_VERSION:
            raise VersionSkew(f"the backend at {self.root} speaks API version {version} (spatia {info.get('version')}) "
                              f"but this extension speaks version {API_VERSION}; install matching versions")
        return info

    def models(self) -> list[dict]:
        return self.get_json("/models")

    # --- worlds ------------------------------------------------------------------------------
    def create_world(self, *, name: str, kind: str, width: int, height: int, fps: float = 24.0,
                     voxel_size: float | None = None, camera: dict | None = None, files: dict | None = None,
                     depth_model: str | None = None) -> dict:
        """POST /worlds (multipart). `files` maps field -> (filename, bytes, content type)."""
        data = {"name": name, "kind": kind, "width": str(int(width)), "height": str(int(height)), "fps": repr(float(fps))}
        if voxel_size:
            data["voxel_size"] = repr(float(voxel_size))
        if camera is not None:
            data["camera"] = json.dumps(camera)
        if depth_model:
            data["depth_model"] = depth_model
        return self.request("POST", "/worlds", data=data, files=files or {}).json()

    def worlds(self) -> list[dict]:
        return self.get_json("/worlds")

    def world(self, world_id: str) -> dict:
        return self.get_json(f"/worlds/{_quote(world_id)}")

    # --- memory ------------------------------------------------------------------------------
    def memory_history(self, world_id: str) -> list[dict]:
        return self.get_json(f"/worlds/{_quote(world_id)}/memory")

    def memory_bytes(self, world_id: str, version="latest") -> bytes:
        return self.request("GET", f"/worlds/{_quote(world_id)}/memory/{version}", params={"format": "safetensors"}).content

    def memory_edits(self, world_id: str, edits: dict) -> dict:
        """POST the edits of version edits["parent"]; a newer current version -> MemoryConflict."""
        return self.post_json(f"/worlds/{_quote(world_id)}/memory/edits", edits, headers=_if_match(edits["parent"]),
                              memory_write=True)

    def revert(self, world_id: str, version: int, parent: int) -> dict:
        """A new version equal to `version`, made on top of `parent` (the version the artist has)."""
        path, headers = f"/worlds/{_quote(world_id)}/memory/revert", _if_match(parent)
        try:
            return self.post_json(path, {"version": int(version), "parent": int(parent)}, headers=headers, memory_write=True)
        except ApiError as exc:
            if exc.status != 422 or "parent" not in f"{exc.field} {exc}":
                raise
        # a backend from before revert took `parent` in its body: the If-Match header still says it
        return self.post_json(path, {"version": int(version)}, headers=headers, memory_write=True)

    def push_memory(self, world_id: str, snapshot: bytes, parent: int, message: str = "") -> dict:
        """POST a whole safetensors snapshot as the version after `parent`."""
        return self.request("POST", f"/worlds/{_quote(world_id)}/memory", data=snapshot, memory_write=True,
                            params={"parent": int(parent), "message": message},
                            headers={**_if_match(parent), "Content-Type": "application/octet-stream"}).json()

    def coverage(self, world_id: str, cameras: dict, version: int | None = None) -> list[float]:
        body = {"cameras": cameras}
        if version is not None:
            body["version"] = int(version)
        return self.post_json(f"/worlds/{_quote(world_id)}/query/coverage", body)["coverage"]

    # --- objects (docs/objects.md) -------------------------------------------------------------
    def objects(self, world_id: str, version: int | None = None) -> dict:
        """The world's object table: {"version", "memory_version", "up", "objects": [...]}."""
        params = {"version": int(version)} if version is not None else None
        return self.get_json(f"/worlds/{_quote(world_id)}/objects", params=params)

    def object_points(self, world_id: str, object_id: int) -> dict:
        """{"id", "version", "xyz", "rgb"}: the object's points in its own frame."""
        return self.get_json(f"/worlds/{_quote(world_id)}/objects/{int(object_id)}/points")

    def forget_object(self, world_id: str, object_id: int, base_version: int) -> dict:
        """DELETE an object on top of objects version `base_version`; a newer one -> ObjectsConflict."""
        response = self.request("DELETE", f"/worlds/{_quote(world_id)}/objects/{int(object_id)}",
                                headers=_if_match(base_version), objects_write=True)
        return response.json()

    def object_entries(self, world_id: str, cameras: dict, start_frame: int, objects: list[dict]) -> list[dict]:
        """Per object, the video frames where its predicted place comes back into view.
        `start_frame` is the video index of cameras[0]; path frames in `objects` are video indices."""
        body = {"cameras": cameras, "start_frame": int(start_frame), "objects": list(objects)}
        return self.post_json(f"/worlds/{_quote(world_id)}/query/object-entries", body)["objects"]

    # --- jobs --------------------------------------------------------------------------------
    def submit(self, world_id: str, shot: dict, idempotency_key: str | None = None) -> dict:
        key = idempotency_key or uuid.uuid4().hex
        return self.post_json("/jobs", {"world_id": world_id, "shot": shot}, headers={"Idempotency-Key": key})

    def job(self, job_id: str) -> dict:
        return self.get_json(f"/jobs/{_quote(job_id)}")

    def cancel(self, job_id: str) -> dict:
        return self.post_json(f"/jobs/{_quote(job_id)}/cancel")

    def follow(self, job_id: str, on_update=None, *, interval: float = 0.5, should_stop=None,
               timeout: float | None = None, lost_after: float = 60.0, on_lost=None, sleep=time.sleep,
               clock=time.monotonic) -> dict:
        """Poll the job until it reaches a final state; on_update(job) after every poll.

        A poll that finds no backend is retried with a growing pause (0.5 s doubling to 8 s),
        calling on_lost(seconds_without_answer, error) each time; after `lost_after` seconds
        without an answer, BackendUnavailable says the backend is lost."""
        started = clock()
        lost_since: float | None = None
        pause = interval
        while True:
            try:
                job = self.job(job_id)
            except BackendUnavailable as exc:
                now = clock()
                lost_since = now if lost_since is None else lost_since
                if now - lost_since >= lost_after:
                    raise BackendUnavailable(
                        f"lost the backend at {self.root} while following job {job_id} (no answer for "
                        f"{now - lost_since:.0f} s); the job may still be running: press Follow Job once the "
                        "backend is back") from None
                if on_lost is not None:
                    on_lost(now - lost_since, exc)
                if should_stop is not None and should_stop():
                    raise Cancelled("stopped following the job") from None
                sleep(pause)
                pause = min(pause * 2.0, 8.0)
                continue
            lost_since, pause = None, interval
            if on_update:
                on_update(job)
            if job.get("status") in FINAL_STATES:
                return job
            if should_stop is not None and should_stop():
                raise Cancelled("stopped following the job")
            if timeout is not None and clock() - started > timeout:
                raise BackendUnavailable(f"job {job_id} did not finish within {timeout:.0f} s")
            sleep(interval)

    def job_preview(self, job_id: str) -> tuple[dict, bytes] | None:
        """The job's latest denoising preview: (step, steps, seq, frames, columns), PNG bytes; None
        while it has none (or on a backend without live previews)."""
        response = self.request("GET", f"/jobs/{_quote(job_id)}/preview", expect=(200, 404))
        if response.status_code == 404:
            return None
        info = {key: int(response.headers.get(f"X-Preview-{key.title()}", 0))
                for key in ("step", "steps", "seq", "frames", "columns")}
        return info, response.content

    def dashboard_link(self) -> str:
        """A single-use sign-in link to the backend's dashboard: the token stays here, the link
        carries a code that opens one browser session."""
        return self.root + self.post_json("/session/links")["path"]

    def resume(self, job_id: str) -> dict:
        """POST /jobs/{id}/resume: an interrupted or failed job is queued again."""
        return self.post_json(f"/jobs/{_quote(job_id)}/resume")

    def download(self, job_id: str, path: str, target: str) -> str:
        """GET /jobs/{id}/files/{path} into `target` (written to a temporary name, then renamed)."""
        response = self.request("GET", f"/jobs/{_quote(job_id)}/files/{path}", stream=True)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        temp = target + ".part"
        with open(temp, "wb") as handle:
            for chunk in response.iter_content(chunk_size=1 << 20):
                handle.write(chunk)
        os.replace(temp, target)
        return target


def _if_match(version) -> dict:
    return {"If-Match": f'"{int(version)}"'}


def _quote(part) -> str:
    return urllib.parse.quote(str(part), safe="")


def job_error_text(job: dict) -> str:
    error = job.get("error") or {}
    message = error.get("message") or (job.get("messages") or [""])[-1] or job.get("status", "failed")
    kind = error.get("type")
    return f"{kind}: {message}" if kind else message
