"""A tiny stand-in for the backend's HTTP API (memory and query endpoints only), recording requests."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeBackend:
    def __init__(self, snapshots: dict[int, bytes], voxel_size: float = 0.05, coverage=None):
        self.snapshots = dict(snapshots)
        self.voxel_size = voxel_size
        self.coverage = coverage
        self.requests: list[tuple[str, str, object]] = []
        self.job_polls = 0
        self.api_version = 1
        self.job_states = [("running", 0.5, "round 1/1: denoising"),
                           ("failed", 0.5, "round 1/1: denoising")]
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, raw=False):
                data = body if raw else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = self.path.split("?")[0]
                backend.requests.append(("GET", path, None))
                if path == "/v1/health":
                    return self._send(200, {"version": "fake", "api_version": backend.api_version, "device": "cpu"})
                if path == "/v1/worlds/w":
                    return self._send(200, {"id": "w", "frames": 0, "memory_version": max(backend.snapshots),
                                            "voxel_size": backend.voxel_size, "width": 64, "height": 48})
                if path == "/v1/worlds/w/memory":
                    return self._send(200, [{"version": v, "parent": v - 1 if v > 1 else None, "points": 0,
                                             "message": f"v{v}"} for v in sorted(backend.snapshots)])
                if path == "/v1/jobs/j1":
                    status, fraction, stage = backend.job_states[min(backend.job_polls, len(backend.job_states) - 1)]
                    backend.job_polls += 1
                    error = {"type": "OutOfMemoryError", "message": "CUDA out of memory"} if status == "failed" else None
                    return self._send(200, {"id": "j1", "world_id": "w", "status": status, "fraction": fraction,
                                            "stage": stage, "error": error, "messages": [], "result": None})
                match = re.fullmatch(r"/v1/worlds/w/memory/(\d+)", path)
                if match and int(match.group(1)) in backend.snapshots:
                    return self._send(200, backend.snapshots[int(match.group(1))], raw=True)
                return self._send(404, {"error": {"type": "not_found", "message": path, "field": None}})

            def do_POST(self):
                path = self.path.split("?")[0]
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                multipart = self.headers.get("Content-Type", "").startswith("multipart/form-data")
                body = raw if multipart else json.loads(raw or b"{}")
                backend.requests.append(("POST", path, body))
                if path == "/v1/worlds" and multipart:
                    return self._send(201, {"id": "w", "frames": 0, "memory_version": max(backend.snapshots),
                                            "voxel_size": backend.voxel_size})
                if path == "/v1/worlds/w/memory/edits":
                    version = max(backend.snapshots) + 1
                    backend.snapshots[version] = backend.snapshots[body["parent"]]
                    return self._send(201, {"version": version})
                if path == "/v1/jobs":
                    return self._send(201, {"id": "j1", "world_id": "w", "status": "queued", "fraction": 0.0,
                                            "stage": "queued", "error": None, "messages": [], "result": None})
                if path == "/v1/worlds/w/query/coverage":
                    n = len(body["cameras"]["w2c"])
                    return self._send(200, {"coverage": backend.coverage or [i / max(n - 1, 1) for i in range(n)]})
                return self._send(404, {"error": {"type": "not_found", "message": path, "field": None}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posted(self, path):
        return [body for method, p, body in self.requests if method == "POST" and p == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
