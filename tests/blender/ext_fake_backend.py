"""A tiny stand-in for the backend's HTTP API (health, worlds, memory, objects, jobs and their
files), recording requests and enforcing the memory's and the objects' base versions like the
real service. A submitted shot's `forget_objects` and copies (`copy_of`) change its objects as
the real pipeline would (docs/objects.md)."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeBackend:
    def __init__(self, snapshots: dict[int, bytes], voxel_size: float = 0.05, coverage=None, token: str = "",
                 port: int = 0):
        self.snapshots = dict(snapshots)
        self.voxel_size = voxel_size
        self.coverage = coverage
        self.token = token
        self.requests: list[tuple[str, str, object]] = []
        self.headers: list[tuple[str, str, dict]] = []
        self.job_polls = 0
        self.api_version = 1
        self.job_states = [("running", 0.5, "round 1/1: denoising"),
                           ("failed", 0.5, "round 1/1: denoising")]
        self.job_files: dict[str, bytes] = {}  # path -> bytes, served once the job succeeded
        self.job_frames: list[str] = []  # the frame files of a succeeded job (paths under its files)
        self.job_memory_version: int | None = None  # the version a succeeded job made (added on the first poll)
        self.unreachable_polls = 0  # the next polls of a job answer with a dropped connection
        # GET /objects as docs/objects.md shows it; None: a backend from before object memory (404)
        self.objects = {"version": None, "memory_version": None, "up": [0, 0, 1], "objects": []}
        self.object_points: dict[int, dict] = {}  # id -> {"xyz", "rgb"}
        self.object_entries: dict[int, list[int]] = {}  # id -> video frames where it comes back into view
        self.previews: list[bytes] = []  # PNGs the running job's preview route answers with, one per poll
        self.preview_polls = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, raw=False, headers=None):
                data = body if raw else json.dumps(body).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/octet-stream" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self):
                if backend.token and self.headers.get("Authorization") != f"Bearer {backend.token}":
                    self._send(401, {"error": {"type": "unauthorized", "message": "missing or wrong token", "field": None}})
                    return False
                return True

            def _job(self, status, fraction, stage):
                error = {"type": "OutOfMemoryError", "message": "CUDA out of memory"} if status == "failed" else None
                result = None
                if status == "succeeded":
                    result = {"files": {"video": "video.mp4", "frames": list(backend.job_frames)},
                              "frames": [0, len(backend.job_frames)], "memory_version": backend.job_memory_version}
                return {"id": "j1", "world_id": "w", "status": status, "fraction": fraction, "stage": stage,
                        "error": error, "messages": [], "result": result}

            def _objects_get(self, path):
                if backend.objects is None:
                    return self._send(404, {"detail": "Not Found"})  # FastAPI's answer to an unknown route
                if path == "/v1/worlds/w/objects":
                    return self._send(200, backend.objects)
                match = re.fullmatch(r"/v1/worlds/w/objects/(\d+)/points", path)
                oid = int(match.group(1)) if match else None
                if oid in backend.object_points and any(o["id"] == oid for o in backend.objects["objects"]):
                    return self._send(200, {"id": oid, "version": backend.objects["version"], **backend.object_points[oid]})
                return self._send(404, {"error": {"type": "not_found", "message": f"no object {oid}", "field": None}})

            def do_GET(self):
                path = self.path.split("?")[0]
                backend.requests.append(("GET", path, None))
                backend.headers.append(("GET", path, dict(self.headers)))
                if not self._authorised():
                    return None
                if path == "/v1/health":
                    return self._send(200, {"version": "fake", "api_version": backend.api_version, "device": "cpu"})
                if path == "/v1/worlds":
                    return self._send(200, [{"id": "w"}])
                if path == "/v1/worlds/w":
                    return self._send(200, {"id": "w", "frames": 0, "memory_version": max(backend.snapshots),
                                            "voxel_size": backend.voxel_size, "width": 64, "height": 48})
                if path == "/v1/worlds/w/memory":
                    return self._send(200, [{"version": v, "parent": v - 1 if v > 1 else None, "points": 0,
                                             "message": f"v{v}"} for v in sorted(backend.snapshots)])
                if path == "/v1/jobs/j1":
                    if backend.unreachable_polls > 0:
                        backend.unreachable_polls -= 1
                        self.close_connection = True
                        self.connection.shutdown(2)  # no answer: the client sees a dropped connection
                        return None
                    status, fraction, stage = backend.job_states[min(backend.job_polls, len(backend.job_states) - 1)]
                    backend.job_polls += 1
                    if status == "succeeded" and backend.job_memory_version is None:
                        version = max(backend.snapshots) + 1
                        backend.snapshots[version] = backend.snapshots[max(backend.snapshots)]
                        backend.job_memory_version = version
                    return self._send(200, self._job(status, fraction, stage))
                if path.startswith("/v1/worlds/w/objects"):
                    return self._objects_get(path)
                if path == "/v1/jobs/j1/preview" and backend.previews:
                    index = min(backend.preview_polls, len(backend.previews) - 1)
                    backend.preview_polls += 1
                    return self._send(200, backend.previews[index], raw=True, headers={
                        "X-Preview-Step": str(2 * (index + 1)), "X-Preview-Steps": "8", "X-Preview-Seq": str(index + 1),
                        "X-Preview-Frames": "1", "X-Preview-Columns": "1"})
                match = re.fullmatch(r"/v1/jobs/j1/files/(.+)", path)
                if match and match.group(1) in backend.job_files:
                    return self._send(200, backend.job_files[match.group(1)], raw=True)
                match = re.fullmatch(r"/v1/worlds/w/memory/(\d+)", path)
                if match and int(match.group(1)) in backend.snapshots:
                    return self._send(200, backend.snapshots[int(match.group(1))], raw=True)
                return self._send(404, {"error": {"type": "not_found", "message": path, "field": None}})

            def _conflict(self, parent):
                current = max(backend.snapshots)
                if_match = self.headers.get("If-Match")
                if parent is None or if_match != f'"{parent}"':
                    return self._send(428, {"error": {"type": "precondition_required", "field": "parent",
                                                      "message": "send the version this write is based on"}}) or True
                if int(parent) != current:
                    return self._send(409, {"error": {"type": "conflict", "field": "parent", "current_version": current,
                                                      "message": f"version {parent} is not the current version {current}"}}) or True
                return False

            def do_POST(self):
                path = self.path.split("?")[0]
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                multipart = self.headers.get("Content-Type", "").startswith("multipart/form-data")
                body = raw if multipart else json.loads(raw or b"{}")
                backend.requests.append(("POST", path, body))
                backend.headers.append(("POST", path, dict(self.headers)))
                if not self._authorised():
                    return None
                if path == "/v1/worlds" and multipart:
                    return self._send(201, {"id": "w", "frames": 0, "memory_version": max(backend.snapshots),
                                            "voxel_size": backend.voxel_size})
                if path == "/v1/worlds/w/memory/edits":
                    if self._conflict(body.get("parent")):
                        return None
                    version = max(backend.snapshots) + 1
                    backend.snapshots[version] = backend.snapshots[body["parent"]]
                    return self._send(201, {"version": version})
                if path == "/v1/worlds/w/memory/revert":
                    if self._conflict(body.get("parent")):
                        return None
                    version = max(backend.snapshots) + 1
                    backend.snapshots[version] = backend.snapshots[body["version"]]
                    return self._send(201, {"version": version})
                if path == "/v1/jobs":
                    backend.apply_shot(body["shot"])
                    return self._send(201, self._job("queued", 0.0, "queued"))
                if path == "/v1/session/links":
                    return self._send(200, {"code": "c0de", "path": "/login#code=c0de", "expires_in_s": 120})
                if path == "/v1/jobs/j1/resume":
                    backend.job_polls = 0
                    return self._send(200, self._job("queued", 0.0, "queued"))
                if path == "/v1/jobs/j1/cancel":
                    return self._send(200, self._job("running", 0.5, "cancelling"))
                if path == "/v1/worlds/w/query/coverage":
                    n = len(body["cameras"]["w2c"])
                    return self._send(200, {"coverage": backend.coverage or [i / max(n - 1, 1) for i in range(n)]})
                if path == "/v1/worlds/w/query/object-entries" and backend.objects is not None:
                    n = len(body["cameras"]["w2c"])
                    return self._send(200, {"objects": [
                        {"id": o["id"], "label": o["label"], "entries": backend.object_entries.get(o["id"], []),
                         "visible": [True] * n} for o in backend.objects["objects"]]})
                return self._send(404, {"error": {"type": "not_found", "message": path, "field": None}})

            def do_DELETE(self):
                path = self.path.split("?")[0]
                backend.requests.append(("DELETE", path, None))
                backend.headers.append(("DELETE", path, dict(self.headers)))
                if not self._authorised():
                    return None
                match = re.fullmatch(r"/v1/worlds/w/objects/(\d+)", path)
                if backend.objects is None or not match:
                    return self._send(404, {"error": {"type": "not_found", "message": path, "field": None}})
                current = backend.objects["version"]
                if self.headers.get("If-Match") != f'"{current}"':
                    return self._send(409, {"error": {"type": "conflict", "field": "If-Match", "current_version": current,
                                                      "message": f"objects version {current} is the current one"}})
                backend.forget([int(match.group(1))])
                return self._send(201, {"version": backend.objects["version"]})

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forget(self, ids) -> None:
        table = self.objects
        table["objects"] = [o for o in table["objects"] if o["id"] not in set(ids)]
        table["version"] = (table["version"] or 0) + 1

    def apply_shot(self, shot: dict) -> None:
        """What a round does to the objects: forget, then make the copies (path frames become video frames)."""
        if self.objects is None:
            return
        first = shot["frames"][0]["frame"]
        copies = [d for d in shot.get("objects", []) if d.get("copy_of")]
        if shot.get("forget_objects"):
            self.forget(shot["forget_objects"])
        for copy in copies:
            source = next(o for o in self.objects["objects"] if o["id"] == copy["copy_of"])
            keys = [{**k, "frame": k["frame"] - first} for k in copy["path"]]
            self.objects["objects"].append({**source, "id": copy["id"], "keys": keys, "seen": []})
            self.object_points[copy["id"]] = self.object_points[copy["copy_of"]]
        if copies:
            self.objects["version"] = (self.objects["version"] or 0) + 1

    def posted(self, path):
        return [body for method, p, body in self.requests if method == "POST" and p == path]

    def posted_headers(self, path):
        return [headers for method, p, headers in self.headers if method == "POST" and p == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
