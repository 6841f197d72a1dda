"""Fusion and carving throughput on a synthetic room seen by a moving camera.

Fuses 81 depth maps of 1248x704 (default) into a memory of about a million points, times
back-projection + fusion per frame, compares with a plain per-frame numpy implementation
(np.unique over memory and new keys every frame) run in the same process, and times carving
all frames against the final memory. Writes benchmarks/results/fusion.json.

    python benchmarks/bench_fusion.py           # full size
    python benchmarks/bench_fusion.py --quick   # small size, seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from spatia.cameras import Cameras  # noqa: E402
from spatia.engine.memory import SpatialMemory, carve, fuse_points, points_from_depth  # noqa: E402

ROOM = (np.array([-4.0, -3.0, 0.0]), np.array([4.0, 3.0, 3.0]))
SOLIDS = [
    (np.array([1.0, -0.5, 0.0]), np.array([1.6, 0.5, 3.0])),  # a pillar
    (np.array([-2.5, 1.8, 0.0]), np.array([-1.5, 2.4, 0.9])),  # a table-sized block
]


def room_cameras(frames: int, width: int, height: int) -> Cameras:
    """A camera circling inside the room, turning once around while bobbing its gaze."""
    t = np.linspace(0.0, 1.0, frames, endpoint=False)
    eye = np.stack([-1.0 + 1.2 * np.cos(2 * np.pi * t), 1.0 * np.sin(2 * np.pi * t), 1.5 + 0.2 * np.sin(4 * np.pi * t)], 1)
    yaw = 2 * np.pi * t
    target = eye + np.stack([np.cos(yaw), np.sin(yaw), -0.15 + 0.25 * np.sin(6 * np.pi * t)], 1)
    return Cameras.look_at(eye, target, up=(0, 0, 1), fov_x_deg=75.0, width=width, height=height)


def render(cameras: Cameras, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact z-depth [H,W] float32 and checker-textured colours [H,W,3] uint8 of the room."""
    fx, fy, cx, cy = cameras.intrinsics[index]
    c2w = cameras.c2w[index]
    u = (np.arange(cameras.width, dtype=np.float32) + 0.5 - cx) / fx
    v = (np.arange(cameras.height, dtype=np.float32) + 0.5 - cy) / fy
    cam = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.float32(1)), -1)
    rays = cam @ c2w[:3, :3].T.astype(np.float32)  # z-depth t along these rays
    origin = c2w[:3, 3].astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / rays
        lo, hi = (ROOM[0] - origin) * inv, (ROOM[1] - origin) * inv
        t = np.maximum(lo, hi).min(-1)
        for box_lo, box_hi in SOLIDS:
            a, b = (box_lo - origin) * inv, (box_hi - origin) * inv
            enter, leave = np.minimum(a, b).max(-1), np.maximum(a, b).min(-1)
            hit = (enter <= leave) & (enter > 0)
            t = np.where(hit & (enter < t), enter, t)
    points = origin + rays * t[..., None]
    checker = (np.floor(points / 0.25).astype(np.int64).sum(-1) & 1).astype(np.float32)
    tint = np.abs(np.sin(points * np.float32(0.7))) * 120
    rgb = (tint + 100 * checker[..., None]).clip(0, 255).astype(np.uint8)
    return t.astype(np.float32), rgb


class PlainNumpyFusion:
    """The straightforward version: every frame, np.unique over memory keys plus new keys."""

    def __init__(self, voxel_size: float):
        self.voxel_size = voxel_size
        self.xyz = np.zeros((0, 3), np.float32)
        self.rgb = np.zeros((0, 3), np.float32)
        self.conf = np.zeros(0, np.float32)
        self.side = np.zeros(0, np.int64)

    def fuse_frame(self, depth: np.ndarray, rgb: np.ndarray, cameras: Cameras, index: int) -> None:
        valid = np.isfinite(depth) & (depth > 0)
        world = cameras[index].unproject(depth[None])[0][valid].astype(np.float32)
        view = world - cameras.centers[index].astype(np.float32)
        axis = np.abs(view).argmax(1)
        side = 2 * axis + (view[np.arange(len(view)), axis] > 0)
        xyz = np.concatenate([self.xyz, world])
        colours = np.concatenate([self.rgb, rgb[valid].astype(np.float32)])
        conf = np.concatenate([self.conf, np.ones(len(world), np.float32)])
        sides = np.concatenate([self.side, side])
        coords = np.floor(xyz / self.voxel_size).astype(np.int64) + (1 << 19)
        keys = (coords[:, 0] << 43) | (coords[:, 1] << 23) | (coords[:, 2] << 3) | sides
        unique, inverse = np.unique(keys, return_inverse=True)
        weight = np.bincount(inverse, conf, len(unique))
        self.xyz = np.stack([np.bincount(inverse, xyz[:, i] * conf, len(unique)) for i in range(3)], 1) / weight[:, None]
        self.rgb = np.stack([np.bincount(inverse, colours[:, i] * conf, len(unique)) for i in range(3)], 1) / weight[:, None]
        self.xyz, self.rgb = self.xyz.astype(np.float32), self.rgb.astype(np.float32)
        self.conf = weight.astype(np.float32)
        self.side = unique & 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="312x176, 12 frames")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--voxel-size", type=float, default=None)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads, 0 for torch's default; 1 by default because on a small shared machine "
        "intra-op threads spin against other processes and run several times slower",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    width, height, frames, voxel = (312, 176, 12, 0.04) if args.quick else (1248, 704, 81, 0.0125)
    frames = args.frames or frames
    voxel = args.voxel_size or voxel
    cameras = room_cameras(frames, width, height)

    depths, colours = zip(*(render(cameras, f) for f in range(frames)))
    memory = SpatialMemory.empty(voxel)
    fuse_times = []
    for f in range(frames):
        t0 = time.perf_counter()
        points = points_from_depth(depths[f][None], colours[f][None], cameras[f], frames=[f])
        memory = fuse_points(memory, points)
        fuse_times.append(time.perf_counter() - t0)
    fusion_peak_rss = harness.peak_rss_mb()

    baseline_times = []
    if not args.skip_baseline:
        plain = PlainNumpyFusion(voxel)
        for f in range(frames):
            t0 = time.perf_counter()
            plain.fuse_frame(depths[f], colours[f], cameras, f)
            baseline_times.append(time.perf_counter() - t0)

    depth_stack = torch.from_numpy(np.stack(depths))
    carve_timing = harness.timed(
        lambda: carve(memory, depth_stack, cameras, margin_abs=0.02, margin_rel=0.01), repeat=1, warmup=0
    )
    carved, removed = carve(memory, depth_stack, cameras, margin_abs=0.02, margin_rel=0.01)

    per_frame = float(np.mean(fuse_times))
    record = {
        "width": width,
        "height": height,
        "frames": frames,
        "voxel_size": voxel,
        "pixels_per_frame": width * height,
        "memory_points": len(memory),
        "memory_mb": memory.nbytes / 2**20,
        "fuse_s_per_frame_mean": per_frame,
        "fuse_s_per_frame_median": float(np.median(fuse_times)),
        "fuse_s_per_frame_max": float(np.max(fuse_times)),
        "fuse_s_total": float(np.sum(fuse_times)),
        "fusion_peak_rss_mb": fusion_peak_rss,
        "plain_numpy_s_per_frame_mean": float(np.mean(baseline_times)) if baseline_times else None,
        "plain_numpy_points": len(plain.conf) if baseline_times else None,
        "speedup_vs_plain_numpy": float(np.mean(baseline_times)) / per_frame if baseline_times else None,
        "carve_s_all_frames": carve_timing["best_s"],
        "carve_s_per_frame": carve_timing["best_s"] / frames,
        "carve_removed_points": removed,
        "peak_rss_mb": harness.peak_rss_mb(),
        "load_average_1_5_15": list(os.getloadavg()),  # other processes on the machine skew wall times
        "cuda_peak_mb": harness.cuda_peak_mb(),
    }
    harness.write("fusion_quick" if args.quick else "fusion", record)


if __name__ == "__main__":
    main()
