"""A long shot: many rounds along a camera path that circles a room and comes back to the
first camera's exact pose again and again, with the oracle (ground truth), the preview
generator and a generator that disagrees with the memory (the truth perturbed: colour shift and
noise, depth scale error and noise, content displaced; spatia.engine.models.disagree). Per
round: time per stage, memory points, disk added, resident memory, the memory rendered at the
first camera against the first image, keyframe recall (the memory at the cameras of frames it
fused, against them), and revisited frames against the frames they revisit.

The ground truth is an analytic box room (exact colour and depth), so only our own work is
timed and the numbers do not depend on a renderer. Everything is measured from outside the
world (its files, its memory, its frames), so the same script measures any version.

    .venv/bin/python benchmarks/bench_long.py [--rounds 50] [--size 128x72] [--quick]
        [--generators oracle,preview,disagree] [--threads N] [--generate-s SECONDS]

Besides each stage's wall seconds (`timings`), each stage's CPU seconds on the round's own
thread are recorded (`<stage>_cpu_s`): with `--threads 1` that is all of the stage's work, and
it does not grow when other programs compete for the cores, as wall time does. `--generate-s`
adds a wait to every clip, standing in for the GPU: behind a real generator the previous round's
commit runs while the clip denoises, not while the memory works, and so it does here.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench_world import box_room_views
from harness import write
from spatia.cameras import Cameras, Trajectory
from spatia.engine.metrics import psnr
from spatia.engine.models.disagree import DisagreeingGenerator
from spatia.engine.models.oracle import OracleGenerator
from spatia.engine.models.preview import PreviewGenerator
from spatia.engine.render import render_memory
from spatia.engine.stages import pipeline
from spatia.engine.world import GenerateSettings, World

_wall_clock = pipeline.StageClock.__call__


@contextmanager
def _wall_and_cpu(self, name: str):
    """The stage clock, plus the stage's CPU seconds on this thread as `<stage>_cpu_s`."""
    started = time.thread_time()
    try:
        with _wall_clock(self, name):
            yield
    finally:
        key = f"{name}_cpu_s"
        self.seconds[key] = self.seconds.get(key, 0.0) + time.thread_time() - started


pipeline.StageClock.__call__ = _wall_and_cpu

PERIOD = 200  # frames: the camera is back at frame 0's pose every PERIOD frames
REGION = 0.25  # metres: "a place" when checking that nothing seen in round 0 is forgotten (or the largest cell)


def circling_path(frames: int, width: int, height: int) -> Trajectory:
    """Round a circle of 1.37 m radius looking outward and sideways, closing every PERIOD frames."""
    t = np.arange(frames) / PERIOD
    angle = 2 * np.pi * t
    eye = np.stack([1.37 * np.cos(angle), 1.37 * np.sin(angle), np.full(frames, 1.43)], axis=1)
    look = angle + 0.5 + 0.4 * np.sin(4 * np.pi * t)
    target = eye + np.stack([np.cos(look), np.sin(look), np.full(frames, -0.15)], axis=1)
    cams = Cameras.look_at(eye, target, width=width, height=height, fov_x_deg=70.0)
    return Trajectory(cams, fps=24.0)


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def occupied(xyz: np.ndarray, region: float) -> set:
    return set(map(tuple, np.floor(xyz / region).astype(np.int64).tolist()))


def waiting(generator, seconds: float):
    """`generator` that also waits `seconds` per clip, standing in for the GPU's denoising (a wait
    releases the interpreter as CUDA kernels do), so the previous round's commit runs meanwhile."""
    if seconds <= 0:
        return generator
    real = generator.generate

    def generate(request, progress=None, should_cancel=None):
        time.sleep(seconds)
        return real(request, progress, should_cancel)

    generator.generate = generate
    return generator


def run(generator_name: str, rounds: int, width: int, height: int, first: int, later: int, overlap: int,
        max_points: int, folder: Path, generate_s: float = 0.0) -> dict:
    total = first + (rounds - 1) * (later - overlap)
    trajectory = circling_path(total, width, height)
    generator = waiting({"oracle": lambda: OracleGenerator(box_room_views), "preview": PreviewGenerator,
                         "disagree": lambda: DisagreeingGenerator(box_room_views, seed=0)}[generator_name](), generate_s)
    settings = GenerateSettings(first_round_frames=first, round_frames=later, overlap=overlap)
    settings.update = type(settings.update)(max_points=max_points)
    world = World.create(folder, width=width, height=height, voxel_size=0.02)
    first_cam = trajectory.cameras[:1]
    rgb, depth = box_room_views(first_cam)
    world.init_from_rgbd(rgb[0], depth[0], first_cam)

    def memory_vs_first() -> float:
        view = render_memory(world.memory(), first_cam, pinned=first_cam)
        return psnr(view.rgb[0].numpy(), rgb[0], view.mask[0].numpy())

    initial_psnr = min(memory_vs_first(), 100.0)  # identical images: reported as 100 dB
    per_round, round0_xyz = [], None
    disk, memory_disk = folder_bytes(folder), folder_bytes(folder / "memory")
    for r in range(rounds):
        end = first if r == 0 else first + r * (later - overlap)
        points_before = len(world.memory())
        t0 = time.perf_counter()
        record = world.generate(trajectory[:end], ["a room"], generator, settings)[0]
        wall = time.perf_counter() - t0
        memory = world.memory()
        if r == 0:
            round0_xyz = memory.xyz.numpy().copy()
            round0_ids = memory.point_id.numpy().copy()
        now, memory_now = folder_bytes(folder), folder_bytes(folder / "memory")
        timings = record["timings"]
        # revisits: new frames at frame 0's pose, against frame 0
        revisit = [g for g in range(record["start"] + record["overlap"], record["end"]) if g % PERIOD == 0 and g > 0]
        revisit_psnr = [psnr(world.frames([g])[0], world.frames([0])[0]) for g in revisit]
        added = len(memory) - points_before
        per_round.append({
            "round": r,
            "total_s": round(wall, 3),
            "without_generator_s": round(wall - timings["generate_s"], 3),
            # the commit runs behind the next round: the round's own work (total_s) is what stays in line
            "without_generator_or_save_s": round(timings["total_s"] - timings["generate_s"], 3),
            # the same on this thread's CPU: condition, retrieve, observe, update, index
            "memory_work_cpu_s": round(sum(v for k, v in timings.items() if k.endswith("_cpu_s")
                                           and not k.startswith("generate")), 3),
            **{k: round(v, 3) for k, v in timings.items() if k.endswith("_s")},
            "points": len(memory),
            "points_added": added,
            "disk_added_mb": round((now - disk) / 2**20, 3),
            "memory_disk_added_kb": round((memory_now - memory_disk) / 2**10, 1),
            "memory_kb_per_added_point": round((memory_now - memory_disk) / 2**10 / max(added, 1), 3),
            "rss_mb": round(rss_mb(), 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
            "memory_vs_first_psnr": round(min(memory_vs_first(), 100.0), 2),
            "revisit_psnr": [round(min(p, 100.0), 2) for p in revisit_psnr],
            "recall_psnr": record["loop_closure"]["recall"]["psnr"],
            "recall_ssim": record["loop_closure"]["recall"]["ssim"],
            "recall_coverage": record["loop_closure"]["recall"]["coverage"],
            "recall_new_psnr": record["loop_closure"]["recall"]["new_psnr"],
            "recall_past_psnr": record["loop_closure"]["recall"]["past_psnr"],
            "revisit_exact_psnr_mean": record["loop_closure"]["revisit_psnr_mean"],
            "revisit_near_psnr_mean": record["loop_closure"]["revisit_near_psnr_mean"],
            "swept": (record.get("update") or {}).get("swept"),
            "conflict_pixels": (record.get("update") or {}).get("conflict_pixels"),
            "points_merged": (record.get("update") or {}).get("points_merged"),
        })
        disk, memory_disk = now, memory_now
        print(generator_name, per_round[-1], flush=True)
    final = world.memory()
    level = getattr(final, "level", None)  # memories of older versions have no cell levels
    largest_cell = final.voxel_size * 2 ** int(level.max()) if level is not None and len(final) else final.voxel_size
    region = max(REGION, largest_cell)  # a merged point may sit anywhere in its cell
    round0_places, final_places = occupied(round0_xyz, region), occupied(final.xyz.numpy(), region)
    rounds_out = per_round

    def share(row):
        return row["retrieve_s"] / max(row["without_generator_s"], 1e-9)

    second, last = rounds_out[min(2, len(rounds_out) - 1)], rounds_out[-1]
    return {
        "generator": generator_name,
        "frames": total,
        "memory_vs_first_psnr_v1": round(initial_psnr, 2),
        "per_round": rounds_out,
        "summary": {
            "time_round_last_over_round_2": round(last["without_generator_s"] / max(second["without_generator_s"], 1e-9), 2),
            "retrieval_share_round_2": round(share(second), 3),
            "retrieval_share_last": round(share(last), 3),
            "memory_vs_first_drop_db": round(initial_psnr - last["memory_vs_first_psnr"], 2),
            "memory_vs_first_min_psnr": min(r["memory_vs_first_psnr"] for r in rounds_out),
            "memory_vs_first_round_1": rounds_out[min(1, len(rounds_out) - 1)]["memory_vs_first_psnr"],
            "memory_vs_first_last": last["memory_vs_first_psnr"],
            "recall_psnr_round_1": rounds_out[min(1, len(rounds_out) - 1)]["recall_psnr"],
            "recall_psnr_last": last["recall_psnr"],
            "recall_psnr_min": min((r["recall_psnr"] for r in rounds_out if r["recall_psnr"] is not None), default=None),
            "memory_work_s_round_2": second["without_generator_s"],
            "memory_work_s_last": last["without_generator_s"],
            "memory_work_s_max": max(r["without_generator_s"] for r in rounds_out),
            "memory_work_without_save_s_round_2": second["without_generator_or_save_s"],
            "memory_work_without_save_s_last": last["without_generator_or_save_s"],
            "round0_places_lost": len(round0_places - final_places),
            # share of the points of round 0 still in the memory under their own id (a merge keeps one of its ids)
            "round0_points_still_held": round(float(np.isin(round0_ids, final.point_id.numpy()).mean()), 4),
            "round0_places": len(round0_places),
            "place_size_m": region,
            "largest_cell_m": largest_cell,
            "rss_mb_round_2": second["rss_mb"],
            "rss_mb_last": last["rss_mb"],
            "disk_mb_per_round_last10": round(float(np.mean([r["disk_added_mb"] for r in rounds_out[-10:]])), 3),
            "memory_disk_kb_per_round_last10": round(float(np.mean([r["memory_disk_added_kb"] for r in rounds_out[-10:]])), 1),
            "memory_bytes_per_point": round(final.nbytes / max(len(final), 1), 1),
            "points_added_per_round_last10": round(float(np.mean([r["points_added"] for r in rounds_out[-10:]])), 1),
            "revisit_psnr": [p for r in rounds_out for p in r["revisit_psnr"]],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--size", default="128x72")
    parser.add_argument("--generators", default="oracle,preview,disagree")
    parser.add_argument("--max-points", type=int, default=100_000, help="the memory budget (small, so it binds)")
    parser.add_argument("--quick", action="store_true", help="6 rounds, for a smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--generate-s", type=float, default=0.0,
                        help="seconds each clip also waits, standing in for the GPU (the commit runs meanwhile)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    rounds = 6 if args.quick else args.rounds
    first, later, overlap = (33, 25, 9) if args.quick else (121, 81, 9)  # the paper's round lengths
    results = {}
    for name in args.generators.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = run(name, rounds, width, height, first, later, overlap, args.max_points, Path(tmp) / "w",
                                args.generate_s)
    write("long" + ("_quick" if args.quick else ""), {
        "width": width, "height": height, "rounds": rounds, "first_round_frames": first, "round_frames": later,
        "overlap": overlap, "max_points": args.max_points, "period_frames": PERIOD, "generate_wait_s": args.generate_s,
        "results": results,
        "torch_threads": __import__("torch").get_num_threads(),
    })
    for name, result in results.items():
        print(name, result["summary"])


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    main()
