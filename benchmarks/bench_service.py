"""The backend service through HTTP on 127.0.0.1 (a real `spatia serve` process):
status-poll latency, the download of a 1M-point memory, jobs per minute with the preview
generator at a small size (64x48, 24 frames in 3 rounds), `/v1/health` latency while each
heavy request runs (a 100,000-frame shot, a 1M-point edit, a 1M-point push, a 4000x4000
render, 4,096 rays over 1M points), and the server's peak memory during a push as a multiple
of the pushed snapshot's size.

    .venv/bin/python benchmarks/bench_service.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

import numpy as np
from harness import peak_rss_mb, write
from spatia.service.client import SpatiaClient
from spatia.engine.memory import SpatialMemory, parse_snapshot, snapshot_bytes

WIDTH, HEIGHT, K = 64, 48, [50.0, 50.0, 32.0, 24.0]


def start(data_dir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "spatia.service.commands", "--port", str(port), "--data-dir",
                                str(data_dir), "--log-level", "warning"], env=dict(os.environ, HF_HUB_OFFLINE="1"))
    url = f"http://127.0.0.1:{port}"
    client = SpatiaClient(url, timeout=5)
    for _ in range(300):
        try:
            client.health()
            return process, url
        except Exception:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the service did not start")


def percentiles(samples: list[float]) -> dict:
    ms = np.array(samples) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms.max()), "n": len(ms)}


def shot(frames: int = 24) -> dict:
    cams = []
    for i in range(frames):
        w2c = np.eye(4)
        w2c[0, 3] = -0.0125 * i
        cams.append({"frame": i + 1, "intrinsics": K, "w2c": w2c.tolist()})
    return {"schema": "spatia.shot", "version": 1, "name": "bench", "width": WIDTH, "height": HEIGHT, "fps": 24.0,
            "frames": cams, "prompts": ["a wall"], "generator": "preview",
            "rounds": {"first_round_frames": 12, "round_frames": 10, "overlap": 2}}


def wall_world(client: SpatiaClient) -> str:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([(xx * 4) % 256, (yy * 5) % 256, (xx * yy) % 256], axis=-1).astype(np.uint8)
    depth = (2.0 + 0.01 * xx).astype(np.float32)
    return client.create_world("wall", "rgbd", WIDTH, HEIGHT, image=rgb, depth=depth,
                               camera={"intrinsics": K, "w2c": np.eye(4)})["id"]


def room(points: int, rng) -> np.ndarray:
    """A floor and three walls (an 8 m room, 3 m high), as points."""
    u = rng.uniform(0, 1, (points, 2))
    side = rng.integers(0, 4, points)
    a, b = u[:, 0] * 8 - 4, u[:, 1]
    floor = np.c_[a, b * 8 - 4, np.full(points, -1.5)]
    back = np.c_[a, np.full(points, 4.0), b * 3 - 1.5]
    left = np.c_[np.full(points, -4.0), a, b * 3 - 1.5]
    right = np.c_[np.full(points, 4.0), a, b * 3 - 1.5]
    return np.choose(side[:, None], [floor, back, left, right]).astype(np.float32)


def vm(pid: int, key: str) -> int:
    """VmRSS / VmHWM of a process, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def push_peak(url: str, pid: int, world_id: str, parent: int, body: bytes) -> dict:
    """The server's peak resident memory above its resting level while it takes one push."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
        resettable = True
    except OSError:
        resettable = False
    rest = vm(pid, "VmRSS")
    samples = [rest]
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(vm(pid, "VmRSS"))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    response = requests.post(f"{url}/v1/worlds/{world_id}/memory", params={"parent": parent}, data=body,
                             headers={"Content-Type": "application/octet-stream"}, timeout=600)
    elapsed = time.perf_counter() - t
    done.set()
    sampler.join()
    response.raise_for_status()
    peak = max(vm(pid, "VmHWM") if resettable else 0, max(samples))
    return {"snapshot_mb": len(body) / 2**20, "push_s": elapsed, "rest_rss_mb": rest / 2**20,
            "peak_rss_mb": peak / 2**20, "peak_above_rest_mb": (peak - rest) / 2**20,
            "peak_above_rest_x_body": (peak - rest) / len(body), "peak_from_vmhwm": resettable}


def health_while(url: str, label: str, heavy) -> dict:
    """/v1/health latency, polled every 20 ms, while `heavy()` runs in another thread."""
    latencies: list[float] = []
    result: dict = {}
    done = threading.Event()

    def run():
        t = time.perf_counter()
        try:
            response = heavy()
            result["status"] = response.status_code
        except Exception as err:  # noqa: BLE001 - reported in the figures
            result["status"] = repr(err)
        result["request_s"] = time.perf_counter() - t
        done.set()

    session = requests.Session()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    while not done.is_set():
        t = time.perf_counter()
        session.get(f"{url}/v1/health", timeout=120).raise_for_status()
        latencies.append(time.perf_counter() - t)
        time.sleep(0.02)
    worker.join()
    figures = percentiles(latencies) if latencies else {"n": 0}
    return {"request": label, **result, "health": figures}


def heavy_requests(url: str, client: SpatiaClient, args, rng) -> tuple[list[dict], dict]:
    frames, points, side = (20_000, 200_000, 2000) if args.quick else (100_000, 1_000_000, 4000)
    wall = wall_world(client)
    memory = SpatialMemory.from_points(room(points, rng), rng.integers(0, 256, (points, 3), dtype=np.uint8),
                                       voxel_size=0.02)
    snapshot = snapshot_bytes(memory)
    big = client.create_world("room", "points", WIDTH, HEIGHT, points=snapshot)["id"]
    session = requests.Session()
    huge_shot = shot(frames)
    huge_shot["width"] = WIDTH + 2  # refused once validated: the figure is the parse, not a job
    edit = {"parent": 2, "add_xyz": rng.uniform(-3, 3, (points, 3)).round(4).tolist()}
    eye = np.eye(4)
    render = {"cameras": {"width": side, "height": side, "intrinsics": [[side * 0.6, side * 0.6, side / 2, side / 2]],
                          "w2c": [eye.tolist()]}}
    directions = np.c_[rng.normal(size=(4096, 2)), rng.uniform(0.2, 1, 4096)][:, [0, 2, 1]]
    cast = {"origins": np.zeros((4096, 3)).tolist(), "directions": directions.tolist()}
    # bodies encoded beforehand: the client's own JSON encoding would hold this process's
    # interpreter lock and delay its health polls, which is not the server's latency
    encoded = {name: json.dumps(value).encode() for name, value in (
        ("shot", {"world_id": wall, "shot": huge_shot}), ("edit", edit), ("render", render), ("cast", cast))}
    as_json = {"Content-Type": "application/json"}
    figures = [
        health_while(url, f"job submit, {frames}-frame shot", lambda: session.post(
            f"{url}/v1/jobs", data=encoded["shot"], headers=as_json, timeout=600)),
        health_while(url, f"push of {points} points", lambda: session.post(
            f"{url}/v1/worlds/{big}/memory", params={"parent": 1}, data=snapshot,
            headers={"Content-Type": "application/octet-stream"}, timeout=600)),
        health_while(url, f"memory edit adding {points} points", lambda: session.post(
            f"{url}/v1/worlds/{big}/memory/edits", data=encoded["edit"], headers=as_json, timeout=600)),
        health_while(url, f"render {side}x{side} of {points} points", lambda: session.post(
            f"{url}/v1/worlds/{big}/query/render", data=encoded["render"], headers=as_json, timeout=600)),
        health_while(url, f"raycast 4096 rays over {points} points", lambda: session.post(
            f"{url}/v1/worlds/{big}/query/raycast", data=encoded["cast"], headers=as_json, timeout=600)),
    ]
    return figures, {"memory": memory, "snapshot": snapshot}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests, a smaller memory, fewer jobs")
    args = parser.parse_args()
    polls, points, jobs = (100, 100_000, 3) if args.quick else (1000, 1_000_000, 10)

    with tempfile.TemporaryDirectory(prefix="spatia-bench-service-") as tmp:
        process, url = start(Path(tmp) / "data")
        try:
            client = SpatiaClient(url, timeout=120)
            world_id = wall_world(client)
            job = client.wait(client.submit_job(world_id, shot(12))["id"])
            session = client.session
            status_url = client.url(f"jobs/{job['id']}")
            samples = []
            for _ in range(polls):
                t = time.perf_counter()
                session.get(status_url, timeout=10).raise_for_status()
                samples.append(time.perf_counter() - t)
            poll = percentiles(samples)

            rng = np.random.default_rng(0)
            memory = SpatialMemory.from_points(rng.uniform(-5, 5, (points, 3)).astype(np.float32),
                                               rng.integers(0, 256, (points, 3), dtype=np.uint8), voxel_size=0.01)
            snapshot = snapshot_bytes(memory)
            t = time.perf_counter()
            big = client.create_world("big", "points", WIDTH, HEIGHT, points=snapshot)["id"]
            upload_s = time.perf_counter() - t
            downloads = []
            for _ in range(3):
                t = time.perf_counter()
                data = client.get_memory(big, "latest")
                downloads.append(time.perf_counter() - t)
            assert len(parse_snapshot(data)[0]) == points
            t = time.perf_counter()
            ply = client.get_memory(big, "latest", format="ply")
            ply_s = time.perf_counter() - t

            heavy, pushing = heavy_requests(url, client, args, rng)

            worlds = [wall_world(client) for _ in range(jobs)]
            t = time.perf_counter()
            ids = [client.submit_job(w, shot())["id"] for w in worlds]
            results = [client.wait(i) for i in ids]
            elapsed = time.perf_counter() - t
            assert all(r["status"] == "succeeded" for r in results)
        finally:
            process.terminate()
            process.wait(30)
        # the push's peak on a fresh server, whose allocator holds nothing from earlier requests
        process, url = start(Path(tmp) / "fresh")
        try:
            fresh = SpatiaClient(url, timeout=600)
            seed = snapshot_bytes(pushing["memory"].subset(np.arange(10)))  # same ids and voxel size, 10 points
            world = fresh.create_world("seed", "points", WIDTH, HEIGHT, points=seed)["id"]
            push = push_peak(url, process.pid, world, 1, pushing["snapshot"])
        finally:
            process.terminate()
            process.wait(30)

    write("service", {
        "quick": args.quick,
        "status_poll": poll,
        "memory_download": {
            "points": points, "snapshot_mb": len(snapshot) / 2**20, "upload_create_world_s": upload_s,
            "first_download_s": downloads[0], "repeat_download_best_s": min(downloads[1:]),
            "ply_download_s": ply_s, "ply_mb": len(ply) / 2**20,
        },
        "jobs": {"count": jobs, "size": f"{WIDTH}x{HEIGHT}", "frames": 24, "rounds": 3, "generator": "preview",
                 "workers": 1, "elapsed_s": elapsed, "jobs_per_minute": jobs / elapsed * 60},
        "health_while_heavy": heavy,
        "push_memory": push,
        "client_peak_rss_mb": peak_rss_mb(),
    })


if __name__ == "__main__":
    main()
