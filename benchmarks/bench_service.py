"""The backend service through HTTP on 127.0.0.1 (a real `spatia serve` process):
status-poll latency, the download of a 1M-point memory, and jobs per minute with the preview
generator at a small size (64x48, 24 frames in 3 rounds).

    .venv/bin/python benchmarks/bench_service.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import peak_rss_mb, write
from spatia.client import SpatiaClient
from spatia.memory import SpatialMemory, parse_snapshot, snapshot_bytes

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

            worlds = [wall_world(client) for _ in range(jobs)]
            t = time.perf_counter()
            ids = [client.submit_job(w, shot())["id"] for w in worlds]
            results = [client.wait(i) for i in ids]
            elapsed = time.perf_counter() - t
            assert all(r["status"] == "succeeded" for r in results)
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
        "client_peak_rss_mb": peak_rss_mb(),
    })


if __name__ == "__main__":
    main()
