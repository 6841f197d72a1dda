"""Point-cloud renderer throughput on a synthetic room seen by a camera turning around inside it.

Renders about 1,000,000 points (a square grid on the room's walls, floor and ceiling, like a
voxel-downsampled scan) into 81 frames of 1248x704 (default): colour + depth + mask, and
depth only; reports seconds per frame, throughput and peak memory, and compares with a
plain per-frame numpy z-buffer (lexsort, 1-pixel splats) run in the same process. Also the
control video spatia-5b is conditioned on (`render_control`: soft disks of radius 0.01 NDC, 5
points per pixel composited, plus the score video) on the same points, and the voxel
downsampling before it. Runs on CPU and, when available, on CUDA with the same code. Writes
benchmarks/results/render.json (render_control.json with --control-only).

    python benchmarks/bench_render.py                 # full size; CPU, plus CUDA if present
    python benchmarks/bench_render.py --quick         # small size, seconds
    python benchmarks/bench_render.py --device cuda   # CUDA only
    python benchmarks/bench_render.py --threads 1     # one CPU thread (steadier on a busy machine)
    python benchmarks/bench_render.py --control-only  # render_control alone
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from spatia.cameras import Cameras  # noqa: E402
from spatia.engine.render import control_voxel_size, render, render_control, voxel_downsample  # noqa: E402

ROOM_SIZE = np.array([10.0, 8.0, 3.0])  # metres along x, y, z; the floor is z = 0


def room_points(count: int) -> tuple[np.ndarray, np.ndarray, float]:
    """About `count` points on a square grid over the six faces of the room.

    Returns xyz [N,3] float32 (N >= count, within a few percent), rgb [N,3] uint8 (a
    checker pattern by position) and the grid spacing (the matching voxel size).
    """
    sx, sy, sz = ROOM_SIZE
    spacing = float(np.sqrt(2 * (sx * sy + sx * sz + sy * sz) / count))
    faces = []
    for axis in range(3):
        a, b = [i for i in range(3) if i != axis]
        steps_a, steps_b = int(np.ceil(ROOM_SIZE[a] / spacing)), int(np.ceil(ROOM_SIZE[b] / spacing))
        grid_a = (np.arange(steps_a) + 0.5) * ROOM_SIZE[a] / steps_a
        grid_b = (np.arange(steps_b) + 0.5) * ROOM_SIZE[b] / steps_b
        ga, gb = np.meshgrid(grid_a, grid_b, indexing="ij")
        for value in (0.0, ROOM_SIZE[axis]):
            face = np.empty((ga.size, 3))
            face[:, axis], face[:, a], face[:, b] = value, ga.ravel(), gb.ravel()
            faces.append(face)
    xyz = np.concatenate(faces)
    face_id = np.repeat(np.arange(6), [len(f) for f in faces])
    checker = (np.floor(xyz * 2).astype(np.int64).sum(axis=1) % 2).astype(np.float64)
    rgb = np.stack([40 + 40 * face_id, 80 + 120 * checker, 255 * xyz[:, 2] / sz], axis=1)
    return xyz.astype(np.float32), np.clip(rgb, 0, 255).astype(np.uint8), spacing


def turning_cameras(frames: int, width: int, height: int, *, turns: float = 1.0, phase: float = 0.0) -> Cameras:
    """A camera walking a loop around the room centre while turning `turns` times, 60 degree field of view."""
    t = phase + np.linspace(0.0, 1.0, frames, endpoint=False)
    angle = 2 * np.pi * t
    eye = ROOM_SIZE / 2 + np.stack([1.5 * np.cos(angle), 1.0 * np.sin(angle), 0.2 * np.sin(3 * angle)], axis=1)
    yaw = turns * angle + 0.5
    target = eye + np.stack([np.cos(yaw), np.sin(yaw), np.full_like(yaw, -0.15)], axis=1)
    return Cameras.look_at(eye, target, up=(0, 0, 1), fov_x_deg=60.0, width=width, height=height)


def numpy_render(xyz: np.ndarray, rgb: np.ndarray, cameras: Cameras, near: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Plain per-frame numpy z-buffer with 1-pixel splats: colour [F,H,W,3] and depth [F,H,W] (+inf empty)."""
    frames, height, width = len(cameras), cameras.height, cameras.width
    colour = np.zeros((frames, height, width, 3), dtype=np.uint8)
    depth = np.full((frames, height, width), np.inf, dtype=np.float32)
    for f in range(frames):
        fx, fy, cx, cy = cameras.intrinsics[f].astype(np.float32)
        cam = xyz @ cameras.w2c[f, :3, :3].T.astype(np.float32) + cameras.w2c[f, :3, 3].astype(np.float32)
        z = cam[:, 2]
        front = z > near
        cam, z, ids = cam[front], z[front], np.flatnonzero(front)
        col = np.floor(fx * cam[:, 0] / z + cx).astype(np.int64)
        row = np.floor(fy * cam[:, 1] / z + cy).astype(np.int64)
        inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        pixel, z, ids = row[inside] * width + col[inside], z[inside], ids[inside]
        order = np.lexsort((z, pixel))  # by pixel, nearest first
        pixel, z, ids = pixel[order], z[order], ids[order]
        first = np.ones(len(pixel), dtype=bool)
        first[1:] = pixel[1:] != pixel[:-1]
        depth[f].reshape(-1)[pixel[first]] = z[first]
        colour[f].reshape(-1, 3)[pixel[first]] = rgb[ids[first]]
    return colour, depth


def measure(xyz, rgb, cameras, spacing, device: str, repeat: int) -> dict:
    sync = device == "cuda"
    if sync:
        torch.cuda.reset_peak_memory_stats()
    points = torch.as_tensor(xyz, device=device)
    colours = torch.as_tensor(rgb, device=device)
    frames = len(cameras)
    full = harness.timed(lambda: render(points, colours, cameras, point_size=spacing, device=device), repeat=repeat, sync=sync)
    depth_only = harness.timed(lambda: render(points, None, cameras, point_size=spacing, device=device, depth_only=True),
                               repeat=repeat, sync=sync)
    one_pixel = harness.timed(lambda: render(points, colours, cameras, point_size=0.0, device=device), repeat=repeat, sync=sync)
    result = render(points, colours, cameras, point_size=spacing, device=device)
    record = {
        "seconds_per_frame": full["best_s"] / frames,
        "frames_per_second": frames / full["best_s"],
        "points_frames_per_second": len(xyz) * frames / full["best_s"],
        "depth_only_seconds_per_frame": depth_only["best_s"] / frames,
        "one_pixel_splats_seconds_per_frame": one_pixel["best_s"] / frames,
        "coverage": float(result.mask.float().mean()),
        "timing_full": full,
    }
    if sync:
        record["cuda_peak_mb"] = harness.cuda_peak_mb()
    return record


def measure_control(xyz, rgb, cameras, device: str, repeat: int) -> dict:
    """render_control (colour + score) of the points as given, and the round-0 voxel downsampling."""
    sync = device == "cuda"
    if sync:
        torch.cuda.reset_peak_memory_stats()
    points = torch.as_tensor(xyz, device=device)
    colours = torch.as_tensor(rgb, device=device)
    frames = len(cameras)
    control = harness.timed(lambda: render_control(points, colours, cameras, device=device), repeat=repeat, sync=sync)
    downsample = harness.timed(lambda: voxel_downsample(points, colours, control_voxel_size(0)), repeat=repeat, sync=sync)
    result = render_control(points, colours, cameras, device=device)
    record = {
        "seconds_per_frame": control["best_s"] / frames,
        "median_seconds_per_frame": control["median_s"] / frames,
        "covered": float((result.score < 1).float().mean()),
        "voxel_downsample_s": downsample["best_s"],
        "points_after_downsample": int(len(voxel_downsample(points, colours, control_voxel_size(0))[0])),
        "timing": control,
    }
    if sync:
        record["cuda_peak_mb"] = harness.cuda_peak_mb()
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200k points, 9 frames of 624x352")
    parser.add_argument("--control-only", action="store_true", help="measure render_control only")
    harness.add_device_options(parser)
    args = parser.parse_args(argv)
    count, frames, width, height = (200_000, 9, 624, 352) if args.quick else (1_000_000, 81, 1248, 704)
    devices = harness.devices_from(args)
    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 1

    xyz, rgb, spacing = room_points(count)
    cameras = turning_cameras(frames, width, height)
    record = {
        "points": len(xyz),
        "frames": frames,
        "width": width,
        "height": height,
        "point_size": spacing,
        "quick": args.quick,
    }
    if args.control_only:
        for device in devices:
            record[f"control_{device}"] = measure_control(xyz, rgb, cameras, device, repeat=1 if args.quick else 2)
        record["peak_rss_mb"] = harness.peak_rss_mb()
        harness.write("render_control_quick" if args.quick else "render_control", record)
        return 0
    # The baseline renders every ninth frame (spread over the path) to keep the run short.
    sampled = cameras[:: max(1, frames // 9)]
    baseline = harness.timed(lambda: numpy_render(xyz, rgb, sampled), repeat=3, warmup=0)
    numpy_seconds = baseline["best_s"] / len(sampled)
    record["numpy_baseline_seconds_per_frame"] = numpy_seconds
    for device in devices:
        result = measure(xyz, rgb, cameras, spacing, device, repeat=1 if args.quick else 2)
        result["speedup_vs_numpy"] = numpy_seconds / result["seconds_per_frame"]
        result["one_pixel_speedup_vs_numpy"] = numpy_seconds / result["one_pixel_splats_seconds_per_frame"]
        record[device] = result
        record[f"control_{device}"] = measure_control(xyz, rgb, cameras, device, repeat=1 if args.quick else 2)
    record["peak_rss_mb"] = harness.peak_rss_mb()
    harness.write("render_quick" if args.quick else "render", record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
