"""Reference-frame retrieval time: 200 history frames, 81 target frames, about 1,000,000 points.

The scene of bench_render (a room sampled on a grid) and cameras of 1248x704 turning around
inside it; the targets revisit part of the history path. Times retrieve() with its defaults
(candidates at 6 fps and targets at 2 fps of 24 fps frames, visibility at 256 px), and with
every frame used (no subsampling), and compares with a plain numpy implementation (per-frame
z-buffer, np.unique visible sets, a double loop of np.intersect1d over frame pairs, Hungarian)
on the default sampling. Writes benchmarks/results/retrieval.json.

    python benchmarks/bench_retrieval.py                 # full size, CPU (and CUDA if present)
    python benchmarks/bench_retrieval.py --quick         # small size, seconds
    python benchmarks/bench_retrieval.py --device cuda   # CUDA only
    python benchmarks/bench_retrieval.py --threads 1     # one CPU thread (steadier on a busy machine)
    python benchmarks/bench_retrieval.py --indexed 10000 # the world's path: a view index of 10,000 frames

--indexed F times what a round of the world does (`retrieve_indexed` with spatia-5b's
"reference" scoring): the targets' visible sets at 1248x704 by the reference's rule, their exact
shared counts with every one of F indexed frames, the bfloat16 Hungarian assignment. The F
frames' sets are the full-resolution visible sets of 400 poses of a camera walking the room,
repeated with fresh bitmaps (a long shot that keeps going round the room, so every frame
overlaps the targets' region as often as a revisit can), measured at F/8, F/4, F/2 and F
frames: the cost per round must stay flat enough that F frames take under a second.
Writes benchmarks/results/retrieval_indexed.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from bench_render import room_points, turning_cameras  # noqa: E402

from spatia.cameras import Cameras  # noqa: E402
from spatia.engine.retrieval import reduced_size, retrieve, retrieve_indexed, sample_at_rate  # noqa: E402
from spatia.engine.view_index import ViewIndex, visible_ids  # noqa: E402

FRAME_FPS = 24.0


def numpy_visible_sets(xyz: np.ndarray, cameras: Cameras, near: float = 1e-2) -> list[np.ndarray]:
    """Per frame, the sorted ids of the points that win a 1-pixel numpy z-buffer."""
    sets = []
    for f in range(len(cameras)):
        fx, fy, cx, cy = cameras.intrinsics[f].astype(np.float32)
        cam = xyz @ cameras.w2c[f, :3, :3].T.astype(np.float32) + cameras.w2c[f, :3, 3].astype(np.float32)
        z = cam[:, 2]
        front = z > near
        cam, z, ids = cam[front], z[front], np.flatnonzero(front)
        col = np.floor(fx * cam[:, 0] / z + cx).astype(np.int64)
        row = np.floor(fy * cam[:, 1] / z + cy).astype(np.int64)
        inside = (col >= 0) & (col < cameras.width) & (row >= 0) & (row < cameras.height)
        pixel, z, ids = row[inside] * cameras.width + col[inside], z[inside], ids[inside]
        order = np.lexsort((z, pixel))
        pixel, ids = pixel[order], ids[order]
        first = np.ones(len(pixel), dtype=bool)
        first[1:] = pixel[1:] != pixel[:-1]
        sets.append(np.unique(ids[first]))
    return sets


def numpy_retrieve(xyz, history: Cameras, targets: Cameras, k: int = 7, exclude_recent: int = 9) -> np.ndarray:
    """The same selection written plainly: loops over frames and frame pairs."""
    older = np.arange(len(history) - exclude_recent)
    candidates = older[sample_at_rate(older / FRAME_FPS, 6.0)]
    target_ids = sample_at_rate(np.arange(len(targets)) / FRAME_FPS, 2.0)
    size = reduced_size(history.width, history.height, 256)
    target_sets = numpy_visible_sets(xyz, targets[target_ids].resized(*size))
    candidate_sets = numpy_visible_sets(xyz, history[candidates].resized(*size))
    iou = np.zeros((len(target_sets), len(candidate_sets)))
    for i, a in enumerate(target_sets):
        for j, b in enumerate(candidate_sets):
            shared = len(np.intersect1d(a, b, assume_unique=True))
            iou[i, j] = shared / max(len(a) + len(b) - shared, 1)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    keep = np.argsort(-iou[rows, cols])[:k]
    return candidates[cols[keep][iou[rows, cols][keep] > 0]]


def indexed(frames: int, count: int = 1_000_000, poses: int = 400, shuffle_ids: bool = False) -> dict:
    """The view-index round at `frames` indexed frames (see the module docstring). The room's
    point ids follow its grid, so a frame's ids come in runs that compress well; shuffle_ids
    numbers the points at random instead (the worst case for the bitmaps)."""
    import time

    xyz, _, _ = room_points(count)
    ids = np.arange(len(xyz), dtype=np.int64)
    if shuffle_ids:
        ids = np.random.default_rng(0).permutation(len(xyz)).astype(np.int64)
    path = turning_cameras(poses, 1248, 704, turns=2.0)
    t0 = time.perf_counter()
    sets = visible_ids(xyz, ids, path, rule="reference")
    build_sets_s = time.perf_counter() - t0
    targets = turning_cameras(81, 1248, 704, turns=2.0 * 81 / poses, phase=0.13)
    record = {"points": len(xyz), "distinct_poses": poses, "shuffled_ids": shuffle_ids, "visible_per_frame_mean": float(np.mean([len(x) for x in sets])),
              "visible_sets_s_per_frame": build_sets_s / poses, "rounds": []}
    index = ViewIndex()
    added = 0
    for size in sorted({max(poses, frames // 8), frames // 4, frames // 2, frames}):
        t0 = time.perf_counter()
        while added < size:
            chunk = list(range(added, min(size, added + poses)))
            index.add(chunk, [sets[f % poses] for f in chunk])
            added = chunk[-1] + 1
        add_s = time.perf_counter() - t0
        candidates = index.frames[index.frames < added]
        cpu = []

        def one_round():
            c0 = time.process_time()
            retrieve_indexed(index, xyz, ids, targets, candidates, k=7, scoring="reference")
            cpu.append(time.process_time() - c0)

        timing = harness.timed(one_round, repeat=3, warmup=1)
        t0 = time.perf_counter()
        target_sets = visible_ids(xyz, ids, targets[sample_at_rate(np.arange(81) / FRAME_FPS, 2.0)], rule="reference")
        sets_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index.shared_counts(target_sets, candidates)
        counts_s = time.perf_counter() - t0
        record["rounds"].append({"indexed_frames": int(len(candidates)), "retrieve_s": timing["best_s"],
                                 "retrieve_median_s": timing["median_s"], "retrieve_cpu_s": min(cpu[1:]),
                                 "of_which_target_sets_s": sets_s, "of_which_shared_counts_s": counts_s,
                                 "add_s": add_s, "pairs_stored": len(index), "peak_rss_mb": harness.peak_rss_mb()})
        print(record["rounds"][-1], flush=True)
    found = retrieve_indexed(index, xyz, ids, targets, index.frames, k=7, scoring="reference")
    record["chosen"] = found.indices.tolist()
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200k points, 60 history and 24 target frames")
    parser.add_argument("--indexed", type=int, default=0, metavar="F",
                        help="time the world's view-index retrieval at F indexed frames instead")
    parser.add_argument("--shuffle-ids", action="store_true", help="with --indexed: number the points at random")
    harness.add_device_options(parser)
    args = parser.parse_args(argv)
    if args.indexed:
        harness.devices_from(args)
        record = indexed(args.indexed, count=200_000 if args.quick else 1_000_000, shuffle_ids=args.shuffle_ids)
        record["peak_rss_mb"] = harness.peak_rss_mb()
        name = "retrieval_indexed" + ("_shuffled" if args.shuffle_ids else "") + ("_quick" if args.quick else "")
        harness.write(name, record)
        return 0
    count, history_frames, target_frames = (200_000, 60, 24) if args.quick else (1_000_000, 200, 81)
    devices = harness.devices_from(args)
    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 1

    xyz, _, spacing = room_points(count)
    history = turning_cameras(history_frames, 1248, 704, turns=2.0)
    # The targets walk a stretch of the same path again, slightly offset in phase.
    targets = turning_cameras(target_frames, 1248, 704, turns=2.0 * target_frames / history_frames, phase=0.13)
    record = {"points": len(xyz), "history_frames": history_frames, "target_frames": target_frames, "quick": args.quick}

    baseline = harness.timed(lambda: numpy_retrieve(xyz, history, targets), repeat=1, warmup=0)
    record["numpy_baseline_s"] = baseline["best_s"]
    record["numpy_baseline_chosen"] = numpy_retrieve(xyz, history, targets).tolist()
    for device in devices:
        sync = device == "cuda"
        points = torch.as_tensor(xyz, device=device)
        default = harness.timed(lambda: retrieve(points, history, targets, point_size=spacing, device=device),
                                repeat=3, sync=sync)
        every_frame = dict(history_fps=FRAME_FPS, target_fps=FRAME_FPS)
        dense = harness.timed(lambda: retrieve(points, history, targets, point_size=spacing, device=device, **every_frame),
                              repeat=1, sync=sync)
        result = retrieve(points, history, targets, point_size=spacing, device=device)
        record[device] = {
            "default_s": default["best_s"],
            "default_median_s": default["median_s"],
            "default_matrix": list(result.shared.shape),
            "chosen": result.indices.tolist(),
            "chosen_iou": [round(float(x), 4) for x in result.scores],
            "every_frame_s": dense["best_s"],
            "every_frame_matrix": [target_frames, history_frames - 9],
            "speedup_vs_numpy": baseline["best_s"] / default["best_s"],
        }
        if sync:
            record[device]["cuda_peak_mb"] = harness.cuda_peak_mb()
    record["peak_rss_mb"] = harness.peak_rss_mb()
    harness.write("retrieval_quick" if args.quick else "retrieval", record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
