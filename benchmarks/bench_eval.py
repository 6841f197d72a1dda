"""The oracle evaluation of the room: Cycles ground truth along the look-away-and-back loop
(rendered into a fresh cache, so the render time is measured too), the world loop with the
renders as generated frames, and the memory measured against the ground truth.

    .venv/bin/python benchmarks/bench_eval.py [--quick] [--scene room|street|terrain]

Full: 256x144, 48 frames in 4 rounds, 16 samples. Quick: 96x64, 25 frames, 3 rounds, 4 samples.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from spatia.eval import EvalOptions, render_ground_truth
from spatia.eval.report import write_report
from spatia.eval.runner import evaluate_scene
from spatia.engine.models.oracle import FrameTable, OracleGenerator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scene", default="room")
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="spatia-bench-eval-") as tmp:
        options = (EvalOptions.quick if args.quick else EvalOptions)(scenes=[args.scene], out=Path(tmp) / "out",
                                                                     cache_dir=Path(tmp) / "cache", progress=False)
        t0 = time.perf_counter()
        gt = render_ground_truth(args.scene, options.frames, options.width, options.height, samples=options.samples,
                                 cache_dir=options.cache_dir, progress=False)
        render_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = evaluate_scene(gt, OracleGenerator(FrameTable(gt.cameras, gt.rgb, gt.depth)), options,
                                options.out / args.scene)
        evaluate_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = write_report({args.scene: result}, options, options.out)
        report_s = time.perf_counter() - t0
    scene = report["scenes"][args.scene]
    rounds = [{
        "round": r["round"],
        "memory_points": r["memory_points"],
        "memory_mb": round(r["memory_bytes"] / 1e6, 3),
        "accuracy_median_cm": round(100 * r["geometry"]["accuracy_median_m"], 3),
        "completeness_median_cm": round(100 * r["geometry"]["completeness_median_m"], 3),
        "fscore_5cm": round(r["geometry"]["thresholds"]["5cm"]["fscore"], 4),
    } for r in scene["rounds"]]
    summary = scene["summary"]
    harness.write("eval" + ("_quick" if args.quick else ""), {
        "scene": args.scene,
        "generator": "oracle",
        "size": summary["size"],
        "frames": summary["frames"],
        "rounds": summary["rounds"],
        "samples": options.samples,
        "metrics": {k: v for k, v in summary.items() if k not in ("scene", "generator", "size", "frames", "rounds",
                                                                  "world_loop_s", "measure_s")},
        "per_round": rounds,
        "times": {
            "ground_truth_render_s": render_s,
            "render_per_frame_s": render_s / summary["frames"],
            "world_loop_s": summary["world_loop_s"],
            "measure_s": summary["measure_s"],
            "evaluate_s": evaluate_s,
            "report_s": report_s,
        },
        "peak_rss_mb": harness.peak_rss_mb(),
    })


if __name__ == "__main__":
    main()
