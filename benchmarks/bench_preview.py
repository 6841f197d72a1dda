"""Preview generator speed: one clip of 81 frames at 1248x704 (the Spatia clip size).

    python benchmarks/bench_preview.py [--quick]

The synthetic memory projection has a disocclusion hole that drifts with the camera and a
band of sky with no depth, about a quarter of each frame to fill.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from spatia.cameras import Cameras  # noqa: E402
from spatia.engine.models import GenerationRequest, PreviewGenerator  # noqa: E402


def synthetic_request(frames: int, width: int, height: int) -> GenerationRequest:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], axis=-1).astype(np.uint8)
    noise = rng.integers(0, 24, (frames, height, width, 3), dtype=np.uint8)
    projection = base[None] + noise
    depth = np.broadcast_to((2.0 + 3.0 * yy / height).astype(np.float32), (frames, height, width)).copy()
    shift = np.arange(frames)[:, None, None] * width / (2 * frames)
    hole = ((xx[None] - width / 3 - shift) ** 2 + (yy[None] - height / 2) ** 2) < (height / 4) ** 2
    hole |= (yy < height // 10)[None]
    projection[hole] = 0
    depth[hole] = 0
    eye = np.stack([np.linspace(0, 1, frames), np.full(frames, -5.0), np.zeros(frames)], axis=1)
    cameras = Cameras.look_at(eye, [0, 0, 0], width=width, height=height)
    return GenerationRequest("benchmark", projection, depth, hole, cameras)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="17 frames at 624x352, one run")
    args = parser.parse_args()
    frames, width, height = (17, 624, 352) if args.quick else (81, 1248, 704)
    request = synthetic_request(frames, width, height)
    generator = PreviewGenerator()
    timing = harness.timed(lambda: generator.generate(request), repeat=1 if args.quick else 3, warmup=0 if args.quick else 1)
    harness.write(
        "preview_quick" if args.quick else "preview",
        {
            "frames": frames,
            "width": width,
            "height": height,
            "hole_fraction": float(request.hole_mask.mean()),
            "workers": generator.workers,
            "seconds_per_clip": timing["best_s"],
            "ms_per_frame": 1000 * timing["best_s"] / frames,
            "timing": timing,
            "peak_rss_mb": harness.peak_rss_mb(),
            "quick": args.quick,
        },
    )


if __name__ == "__main__":
    main()
