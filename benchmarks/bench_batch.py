"""Batch throughput: shots per minute through `spatia batch` on this machine, with the preview
generator (every shot in its own process: Blender start-up, a Cycles render of the first
frame, every round, the outputs and the updated .blend), and the cost of a resumed run that
skips every finished shot.

    .venv/bin/python benchmarks/bench_batch.py [--quick] [--shots N] [--ray]

--ray also runs the same shots as tasks on a local Ray instance (one CPU each).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def build_shots(folder: Path, count: int, width: int, height: int, frames: int, rounds: tuple[int, int, int]) -> None:
    """Demo-room shots with the extension's settings, in this file run as a script (a fresh Blender)."""
    import bpy
    from spatia.demo.scene import build_demo_room, keyframe_camera, look_away_and_back

    from spatia_blender import properties

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        room = build_demo_room(width, height)
        if "spatia" not in bpy.types.Scene.bl_rna.properties:
            properties.register()
        keyframe_camera(room.scene, room.camera, look_away_and_back(frames, yaw_degrees=30.0 + 10.0 * i))
        settings = room.scene.spatia
        settings.prompts.add().text = "a sunlit room"
        settings.generator, settings.quality, settings.seed = "preview", "draft", i
        settings.first_round_frames, settings.round_frames, settings.overlap = rounds
        settings.voxel_size = 0.05
        bpy.ops.wm.save_as_mainfile(filepath=str(folder / f"shot{i:02d}.blend"), check_existing=False)


def _stage_medians(out: Path, names: list[str]) -> dict:
    timings: dict[str, list[float]] = {}
    for name in names:
        report = json.loads((out / "shots" / name / "report.json").read_text())
        for key, value in report["timings"].items():
            timings.setdefault(key, []).append(value)
        timings.setdefault("shot_process_s", []).append(report["duration_s"])
    return {key: round(statistics.median(values), 3) for key, values in timings.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--shots", type=int, default=None)
    parser.add_argument("--ray", action="store_true", help="also run the shots on a local Ray instance")
    parser.add_argument("--build", nargs=7, metavar=("DIR", "N", "W", "H", "FRAMES", "FIRST", "LATER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        folder, count, width, height, frames, first, later = args.build
        build_shots(Path(folder), int(count), int(width), int(height), int(frames), (int(first), int(later), 4))
        return 0

    from spatia.batch import BatchOptions, run_batch

    count = args.shots or (3 if args.quick else 4)
    width, height, frames, first, later = (48, 32, 20, 12, 10) if args.quick else (96, 64, 25, 13, 9)
    samples = 2 if args.quick else 4
    with tempfile.TemporaryDirectory(prefix="spatia-bench-batch-") as tmp:
        shots, out = Path(tmp) / "shots", Path(tmp) / "out"
        subprocess.run([sys.executable, __file__, "--build", str(shots), str(count), str(width), str(height), str(frames),
                        str(first), str(later)], check=True, capture_output=True)
        options = BatchOptions(samples=samples)
        t0 = time.perf_counter()
        result = run_batch([shots], out, options, progress=False)
        local_s = time.perf_counter() - t0
        if result.exit_code:
            print(result.entries, file=sys.stderr)
            return 1
        names = [entry["name"] for entry in result.entries]
        stages = _stage_medians(out, names)
        rounds = json.loads((out / "shots" / names[0] / "report.json").read_text())["summary"]["rounds"]
        t0 = time.perf_counter()
        again = run_batch([shots], out, options, progress=False)
        resume_s = time.perf_counter() - t0
        assert all(entry["status"] == "skipped" for entry in again.entries)
        record = {
            "size": f"{width}x{height}", "frames_per_shot": frames, "rounds_per_shot": rounds,
            "shots": count, "cycles_samples": samples, "generator": "preview",
            "local": {"total_s": round(local_s, 2), "shots_per_minute": round(60.0 * count / local_s, 2),
                      "stage_median_s": stages},
            "resume_all_skipped_s": round(resume_s, 3),
        }
        if args.ray:
            import ray

            ray.init(include_dashboard=False)
            try:
                cpus = int(ray.cluster_resources().get("CPU", 0))
                t0 = time.perf_counter()
                result = run_batch([shots], Path(tmp) / "ray", options, ray="local", ray_cpus=1, progress=False)
                ray_s = time.perf_counter() - t0
            finally:
                ray.shutdown()
            record["ray_local"] = {"total_s": round(ray_s, 2), "shots_per_minute": round(60.0 * count / ray_s, 2),
                                   "cpus": cpus, "failed": result.failed}
    harness.write("batch" + ("_quick" if args.quick else ""), record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
