"""A round's commit (frames, videos, keyframes, records) runs behind the next round: measured.

The generator is the exact box-room oracle plus a fixed wait standing in for the GPU's
denoising (a wait releases the interpreter as CUDA kernels do). The same rounds run twice: with
the commit overlapped (the engine's CommitWriter) and with every commit waited for in line. Per
round: wall time, each stage's seconds (the round record's `timings`), and the commit's seconds.
With the commit overlapped, a round's wall time approaches max(round work, previous commit)
instead of their sum.

    python benchmarks/bench_commit.py [--quick] [--generate-s 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_world import box_room_views, walkthrough  # noqa: E402
from harness import peak_rss_mb, write  # noqa: E402

from spatia.engine.models.oracle import OracleGenerator  # noqa: E402
from spatia.engine.settings import GenerateSettings  # noqa: E402
from spatia.engine.stages import commit  # noqa: E402
from spatia.engine.world import World  # noqa: E402


class SlowOracle(OracleGenerator):
    """The oracle, plus `seconds` of waiting per clip (the GPU's share of a real round)."""

    def __init__(self, views, seconds: float):
        super().__init__(views)
        self.seconds = seconds

    def generate(self, request, progress=None, should_cancel=None):
        time.sleep(self.seconds)
        return super().generate(request, progress, should_cancel)


class InlineWriter(commit.CommitWriter):
    """Every commit waited for as soon as it is handed over: the commit in line, for comparison."""

    def submit(self, files):
        waited = super().submit(files)
        self.wait()
        return waited


def run(mode: str, width: int, height: int, first: int, later: int, rounds: int, generate_s: float) -> list[dict]:
    overlap = 9
    total = first + (rounds - 1) * (later - overlap)
    trajectory = walkthrough(total, width, height)
    settings = GenerateSettings(first_round_frames=first, round_frames=later, overlap=overlap, object_memory=False)
    original = commit.CommitWriter
    per_round, stamps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        world = World.create(f"{tmp}/world", width=width, height=height, voxel_size=0.02)
        rgb, depth = box_room_views(trajectory.cameras[0])
        world.init_from_rgbd(rgb[0], depth[0], trajectory.cameras[0])
        commit.CommitWriter = InlineWriter if mode == "inline" else original
        try:
            started = time.perf_counter()
            records = world.generate(trajectory, ["a room"], SlowOracle(box_room_views, generate_s), settings,
                                     progress=lambda f, s: stamps.append((time.perf_counter(), s)))
            total_s = time.perf_counter() - started
        finally:
            commit.CommitWriter = original
    done = [t for t, s in stamps if s.endswith("round done")]
    walls = np.diff([started, *done])
    for record, wall in zip(records, walls):
        per_round.append({"round": record["round"], "wall_s": round(float(wall), 3),
                          "stages_s": {k: round(v, 3) for k, v in record["timings"].items()}})
    return per_round, total_s


def summary(per_round: list[dict], total_s: float) -> dict:
    later = per_round[1:] or per_round
    mean = lambda key: float(np.mean([r["stages_s"][key] for r in later]))  # noqa: E731
    return {"total_s": round(total_s, 2), "mean_round_wall_s": round(float(np.mean([r["wall_s"] for r in later])), 3),
            "mean_round_work_s": round(mean("total_s"), 3), "mean_commit_s": round(mean("commit_s"), 3),
            "mean_commit_wait_s": round(mean("commit_wait_s"), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="312x176, 33/25-frame rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--generate-s", type=float, default=None, help="the stand-in GPU seconds per clip")
    parser.add_argument("--modes", default="overlapped,inline", help="overlapped, inline or both (default)")
    args = parser.parse_args()
    width, height, first, later = (312, 176, 33, 25) if args.quick else (1248, 704, 121, 81)
    generate_s = args.generate_s if args.generate_s is not None else (1.0 if args.quick else 8.0)
    result = {"width": width, "height": height, "first_round_frames": first, "round_frames": later,
              "rounds": args.rounds, "generate_wait_s": generate_s}
    for mode in args.modes.split(","):
        per_round, total_s = run(mode, width, height, first, later, args.rounds, generate_s)
        result[mode] = {"per_round": per_round, **summary(per_round, total_s)}
        print(mode, result[mode], flush=True)
    result["peak_rss_mb"] = peak_rss_mb()
    write("commit" + ("_quick" if args.quick else ""), result)


if __name__ == "__main__":
    main()
