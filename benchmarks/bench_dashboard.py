"""The dashboard in headless Chromium against a live `spatia serve` on loopback:

- home: the jobs page opened fresh with 1,000 jobs in the queue's database: first contentful
  paint, and the moment the 1,000 rows are in the table (both from navigation start);
- previews: a job whose generator sends a preview every step (the tests' slow-preview, here
  defined again): the time from a preview being computed in the worker to its event reaching
  the page, and to the image being shown;
- memory: a world whose memory holds 5,000,000 points (1,000,000 with --quick) opened fresh:
  the first picture of the point cloud (first WebGL draw with points) and all points loaded;
- requests: every URL the browser asked for, and how many left 127.0.0.1.

    .venv/bin/python benchmarks/bench_dashboard.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from harness import write

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "service"))
from cdp import Browser, find_chromium  # noqa: E402

WIDTH, HEIGHT, K = 64, 48, [50.0, 50.0, 32.0, 24.0]
JOBS = 1000


def serve_main(argv) -> int:
    """The service with a generator that sends a preview after every frame (like a denoiser)."""
    from spatia.engine.models import PreviewGenerator
    from spatia.engine.models.base import raise_if_cancelled, report
    from spatia.service.commands import add_serve_arguments, config_from_args, serve

    class Previewing(PreviewGenerator):
        name = "previewing"
        supports_preview = True

        def generate(self, request, progress=None, should_cancel=None, preview=None):
            small = request.projection[:, ::4, ::4]
            for i in range(request.num_frames):
                raise_if_cancelled(should_cancel)
                report(progress, i / request.num_frames * 0.5, "steps")
                time.sleep(0.25)
                if preview is not None:
                    preview(i + 1, request.num_frames, small)
            return super().generate(request, progress, should_cancel)

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    return serve(config_from_args(args), extra_generators={"previewing": lambda: Previewing(workers=1)},
                 log_level="warning")


def shot(frames: int, generator: str = "preview", name: str = "pan") -> dict:
    cams = []
    for i in range(frames):
        w2c = np.eye(4)
        w2c[0, 3] = -0.0125 * i
        cams.append({"frame": i + 1, "intrinsics": K, "w2c": w2c.tolist()})
    return {"schema": "spatia.shot", "version": 1, "name": name, "width": WIDTH, "height": HEIGHT, "fps": 24.0,
            "frames": cams, "prompts": ["a wall"], "generator": generator,
            "rounds": {"first_round_frames": 12, "round_frames": 10, "overlap": 2}}


def fill_queue(data_dir: Path) -> None:
    """1,000 finished jobs of 20 worlds, written straight into the queue's database."""
    from spatia.service.jobstore import JobStore

    store = JobStore(data_dir / "jobs.sqlite")
    spec = shot(24)
    for i in range(JOBS):
        job, _ = store.submit(f"w-{i % 20:012d}", {**spec, "name": f"shot {i:04d}"}, None)
        store.finish(job["id"], "succeeded" if i % 7 else "failed", result={"frames": [0, 24], "rounds": [],
                     "memory_version": 2, "files": {"frames": [f"frames/{j:06d}.png" for j in range(24)]}},
                     message="done")
    store.close()


def start(data_dir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, __file__, "--serve", "--port", str(port), "--data-dir", str(data_dir),
                                "--preview-every", "1"], env=dict(os.environ, HF_HUB_OFFLINE="1"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            requests.get(url + "/openapi.json", timeout=2).raise_for_status()
            return process, url
        except requests.RequestException:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the service did not start")


def fresh(browser: Browser, url: str) -> None:
    browser.open("about:blank")
    browser.pump(0.2)
    browser.open(url)


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--serve":
        return serve_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("no chromium: install it (apt-get install chromium)", file=sys.stderr)
        return 2
    from spatia.engine.memory import SpatialMemory, snapshot_bytes
    from spatia.service.client import SpatiaClient

    points = 1_000_000 if args.quick else 5_000_000
    record: dict = {"jobs": JOBS, "memory_points": points, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        fill_queue(data_dir)
        process, url = start(data_dir)
        browser = Browser(chromium)
        try:
            client = SpatiaClient(url, timeout=600)
            # home with 1,000 jobs
            paints, rows = [], []
            for _ in range(3):
                fresh(browser, url + "/#/")
                browser.wait_for("window.spatiaStats && window.spatiaStats.jobsRenderedMs !== null", timeout=60)
                paints.append(browser.evaluate(
                    "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null"))
                rows.append(browser.evaluate("window.spatiaStats.jobsRenderedMs"))
                assert browser.evaluate("document.querySelectorAll('#jobs tr').length") == JOBS
            record["home_first_contentful_paint_ms"] = {"median": statistics.median(paints), "all": paints}
            record["home_1000_rows_rendered_ms"] = {"median": statistics.median(rows), "all": rows}

            # live previews
            yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
            rgb = np.stack([(xx * 4) % 256, (yy * 5) % 256, (xx * yy) % 256], axis=-1).astype(np.uint8)
            depth = (2.0 + 0.01 * xx).astype(np.float32)
            world = client.create_world("wall", "rgbd", WIDTH, HEIGHT, image=rgb, depth=depth,
                                        camera={"intrinsics": K, "w2c": np.eye(4).tolist()})
            job = client.submit_job(world["id"], shot(24, "previewing"))
            fresh(browser, f"{url}/#/job/{job['id']}")
            browser.wait_for("document.getElementById('job-status') && "
                             "document.getElementById('job-status').dataset.status === 'succeeded'", timeout=180)
            events = browser.evaluate("window.spatiaStats.previewLatencyMs")
            shown = browser.evaluate("window.spatiaStats.previewShownMs")
            record["preview_event_ms"] = {"n": len(events), "median": statistics.median(events), "max": max(events)}
            record["preview_shown_ms"] = {"n": len(shown), "median": statistics.median(shown), "max": max(shown)}

            # a multi-million point memory
            gen = np.random.default_rng(1)
            memory = SpatialMemory.from_points(gen.uniform(-5, 5, (points, 3)).astype(np.float32),
                                               gen.integers(0, 256, (points, 3), dtype=np.uint8), voxel_size=0.001)
            t = time.perf_counter()
            big = client.create_world("big", "points", WIDTH, HEIGHT, points=snapshot_bytes(memory))["id"]
            record["memory_upload_s"] = time.perf_counter() - t
            del memory
            first, full = [], []
            for _ in range(3):
                fresh(browser, f"{url}/#/world/{big}")
                browser.wait_for("window.spatiaStats && window.spatiaStats.firstPictureMs !== null", timeout=120)
                first.append(browser.evaluate("window.spatiaStats.firstPictureMs"))
                browser.wait_for(f"window.spatiaStats.pointsLoaded === {points}", timeout=300)
                full.append(browser.evaluate("performance.now()"))
            record["memory_first_picture_ms"] = {"median": statistics.median(first), "all": first}
            record["memory_all_points_ms"] = {"median": statistics.median(full), "all": full}
            browser.pump(0.5)
            outside = [u for u in browser.requests
                       if not u.startswith((url + "/", "about:", "data:", "blob:"))]
            record["requests"] = len(browser.requests)
            record["requests_leaving_the_machine"] = len(outside)
            record["console_errors"] = browser.errors
        finally:
            browser.close()
            process.terminate()
            process.wait(60)
    write("dashboard" + ("_quick" if args.quick else ""), record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
