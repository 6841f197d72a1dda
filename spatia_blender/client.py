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
    def __init__(self, status: int, kind: str, message: str, field: str | None = None):
        self.status, self.kind, self.field = status, kind, field
        where = f" (field {field})" if field else ""
        super().__init__(f"backend error {status} {kind}: {message}{where}")


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

    def request(self, method: str, path: str, *, expect=(200, 201, 204), headers=None, stream=False, **kwargs):
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
        raise self._error(response)

    def _error(self, response) -> SpatiaError:
        kind, message, field = "error", response.reason or "", None
        try:
            body = response.json().get("error") or {}
            kind, message, field = body.get("type", kind), body.get("message", message), body.get("field")
        except (ValueError, AttributeError):
            text = (response.text or "").strip()
            message = text[:300] or message
        if response.status_code in (401, 403):
            return AuthError(f"the backend at {self.root} refused the token ({message}); copy it from "
                             "<data dir>/token into Preferences > Add-ons > Spatia > Token")
        return ApiError(response.status_code, kind, message, field)

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
        return self.post_json(f"/worlds/{_quote(world_id)}/memory/edits", edits)

    def revert(self, world_id: str, version: int) -> dict:
        return self.post_json(f"/worlds/{_quote(world_id)}/memory/revert", {"version": int(version)})

    def coverage(self, world_id: str, cameras: dict, version: int | None = None) -> list[float]:
        body = {"cameras": cameras}
        if version is not None:
            body["version"] = int(version)
        return self.post_json(f"/worlds/{_quote(world_id)}/query/coverage", body)["coverage"]

    # --- jobs --------------------------------------------------------------------------------
    def submit(self, world_id: str, shot: dict, idempotency_key: str | None = None) -> dict:
        key = idempotency_key or uuid.uuid4().hex
        return self.post_json("/jobs", {"world_id": world_id, "shot": shot}, headers={"Idempotency-Key": key})

    def job(self, job_id: str) -> dict:
        return self.get_json(f"/jobs/{_quote(job_id)}")

    def cancel(self, job_id: str) -> dict:
        return self.post_json(f"/jobs/{_quote(job_id)}/cancel")

    def follow(self, job_id: str, on_update=None, *, interval: float = 0.5, should_stop=None,
               timeout: float | None = None) -> dict:
        """Poll the job until it reaches a final state; on_update(job) after every poll."""
        started = time.monotonic()
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job.get("status") in FINAL_STATES:
                return job
            if should_stop is not None and should_stop():
                raise Cancelled("stopped following the job")
            if timeout is not None and time.monotonic() - started > timeout:
                raise BackendUnavailable(f"job {job_id} did not finish within {timeout:.0f} s")
            time.sleep(interval)

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


def _quote(part) -> str:
    return urllib.parse.quote(str(part), safe="")


def job_error_text(job: dict) -> str:
    error = job.get("error") or {}
    message = error.get("message") or (job.get("messages") or [""])[-1] or job.get("status", "failed")
    kind = error.get("type")
    return f"{kind}: {message}" if kind else message
