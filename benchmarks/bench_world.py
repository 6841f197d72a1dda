"""The world loop without a generator: one memory update and one whole round (render the
memory, retrieve references, update the memory, save) at 1248x704 with 81-frame rounds,
incremental update versus the paper's full rebuild after 1, 5 and 10 rounds.

The "generated" frames are exact views of a textured box room computed analytically, fed
through the oracle generator, so only our own work is timed.

    .venv/bin/python benchmarks/bench_world.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from harness import peak_rss_mb, write
from spatia.cameras import Cameras, Trajectory
from spatia.engine.models.oracle import OracleGenerator
from spatia.engine.world import GenerateSettings, World

ROOM = np.array([6.0, 6.0, 3.0])  # half extents x, y and full height z, metres


def box_room_views(cameras: Cameras, chunk: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Exact colour and z-depth of a box room [-6,6]x[-6,6]x[0,3] with checkered walls
    (a few frames at a time, so the ground truth does not dominate the peak memory)."""
    parts = [_box_room_views(cameras[i:i + chunk]) for i in range(0, len(cameras), chunk)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _box_room_views(cameras: Cameras) -> tuple[np.ndarray, np.ndarray]:
    f, h, w = len(cameras), cameras.height, cameras.width
    u = np.arange(w) + 0.5
    v = np.arange(h) + 0.5
    k = cameras.intrinsics
    rays_cam = np.stack(np.broadcast_arrays(
        (u[None, None, :] - k[:, 2, None, None]) / k[:, 0, None, None],
        (v[None, :, None] - k[:, 3, None, None]) / k[:, 1, None, None],
        np.ones((f, 1, 1)),
    ), axis=-1)  # z = 1: the ray parameter is the z-depth
    c2w = cameras.c2w
    rays = np.einsum("fij,fhwj->fhwi", c2w[:, :3, :3], rays_cam)
    origin = c2w[:, None, None, :3, 3]
    best = np.full((f, h, w), np.inf)
    hit_axis = np.zeros((f, h, w), dtype=np.int8)
    lows, highs = np.array([-ROOM[0], -ROOM[1], 0.0]), np.array([ROOM[0], ROOM[1], ROOM[2]])
    for axis in range(3):
        d = rays[..., axis]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(d > 0, (highs[axis] - origin[..., axis]) / d, (lows[axis] - origin[..., axis]) / d)
        t = np.where(np.isfinite(t) & (t > 0), t, np.inf)
        closer = t < best
        best = np.where(closer, t, best)
        hit_axis = np.where(closer, axis, hit_axis)
    point = origin + rays * best[..., None]
    # the checker runs along the two axes of the wall that was hit; the wall's own coordinate sits
    # on a cell boundary, where rounding would flip a whole wall's parity between two views
    along = np.floor(point / 0.5).astype(np.int64)
    np.put_along_axis(along, hit_axis[..., None].astype(np.int64), 0, axis=-1)
    cells = along.sum(axis=-1) % 2
    palette = np.array([[200, 60, 50], [240, 230, 210], [50, 120, 200], [230, 220, 120], [60, 160, 80], [245, 245, 245]])
    colour = palette[hit_axis * 2 + cells]
    return colour.astype(np.uint8), best.astype(np.float32)


def walkthrough(frames: int, width: int, height: int) -> Trajectory:
    """A camera walking a loop around the room, looking along its path and outward."""
    t = np.arange(frames) / frames
    angle = 2 * np.pi * t * 0.35
    eye = np.stack([3.0 * np.sin(angle), -3.0 * np.cos(angle), np.full(frames, 1.5)], axis=1)
    look = angle + np.pi / 2 + 0.6 * np.sin(8 * np.pi * t)
    target = eye + np.stack([np.cos(look), np.sin(look), np.full(frames, -0.1)], axis=1)
    f = 0.6 * width
    cams = Cameras.look_at(eye, target, width=width, height=height, fov_x_deg=np.degrees(2 * np.arctan(width / (2 * f))))
    return Trajectory(cams, fps=24.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    width, height, first, later, rounds = (312, 176, 33, 25, 4) if args.quick else (1248, 704, 121, 81, 10)
    overlap = 9
    total = first + (rounds - 1) * (later - overlap)
    trajectory = walkthrough(total, width, height)
    oracle = OracleGenerator(box_room_views)
    settings = GenerateSettings(first_round_frames=first, round_frames=later, overlap=overlap)
    checkpoints = {1, 5, 10} if not args.quick else {1, 2, 4}

    with tempfile.TemporaryDirectory() as tmp:
        world = World.create(f"{tmp}/world", width=width, height=height, voxel_size=0.02)
        rgb, depth = box_room_views(trajectory.cameras[0])
        world.init_from_rgbd(rgb[0], depth[0], trajectory.cameras[0])
        per_round, rebuild = [], {}
        for r in range(rounds):
            end = first if r == 0 else first + r * (later - overlap)
            t0 = time.perf_counter()
            record = world.generate(trajectory[:end], ["a room"], oracle, settings)[0]
            wall = time.perf_counter() - t0
            timings = record["timings"]
            per_round.append({
                "round": r + 1,
                "frames": record["end"] - record["start"],
                "keyframes": len(record["keyframes"]),
                "memory_points": record["update"]["points_after"],
                "stages_s": {k: round(v, 4) for k, v in timings.items()},
                "incremental_update_s": timings["update_s"],
                "round_without_generator_s": wall - timings["generate_s"],
            })
            if r + 1 in checkpoints:
                t0 = time.perf_counter()
                rebuilt = world.rebuild_memory()
                rebuild[r + 1] = {"full_rebuild_s": time.perf_counter() - t0, "points": len(rebuilt),
                                  "incremental_update_s": timings["update_s"]}
            print(per_round[-1], flush=True)
    write("world" + ("_quick" if args.quick else ""), {
        "width": width, "height": height, "first_round_frames": first, "round_frames": later, "rounds": rounds,
        "per_round": per_round, "incremental_vs_full_rebuild": rebuild, "peak_rss_mb": peak_rss_mb(),
    })


if __name__ == "__main__":
    main()
