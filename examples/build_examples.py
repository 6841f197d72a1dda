"""Rebuild the example shots of this folder: their first images, depth maps and camera paths.

    python examples/build_examples.py        # needs the bpy module (as ./dev.sh installs it)

- room-render/: the demo room rendered by Blender (Cycles colour + exact depth as OpenEXR),
  a camera that looks away and comes back (65 frames, 3 rounds).
- corridor-photo/: a picture that did not come from Blender (drawn here in numpy: a
  corridor with its exact depth as .npy), the camera dollies in and pans (57 frames, 3 rounds).
- room-long-return/: the same room, a long shot that leaves the first view and returns to it
  three times, each swing wider (289 frames, 15 rounds).

Every shot runs as it is with the `preview` generator: CPU, no weights. The files are
committed; this script is how they were made.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "backend"), str(ROOT)]

WIDTH, HEIGHT = 160, 96
ROUNDS = {"first_round_frames": 25, "round_frames": 25, "overlap": 5}


def shot_json(name: str, cams, fps: float, prompts: list[str], init: dict) -> str:
    from spatia.cameras import Trajectory
    from spatia.formats.shot import ShotSpec, format_shot_json

    spec = ShotSpec.from_trajectory(Trajectory(cams, fps), prompts, first_frame=1, name=name,
                                    generator="preview", init=init, rounds=ROUNDS)
    return format_shot_json(spec)


def write_exr_depth(path: Path, depth: np.ndarray) -> None:
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"Z": np.ascontiguousarray(depth, dtype=np.float32)}).write(str(path))


def room_examples() -> None:
    from spatia.cameras import Cameras
    from spatia.demo.run import PROMPT
    from spatia.demo.scene import build_demo_room, keyframe_camera, look_away_and_back
    from spatia.formats.video import write_frames
    from spatia_blender.camera_export import export_camera
    from spatia_blender.render_rgbd import render_rgbd

    loops = {"room-render": 1, "room-long-return": 3}
    frames = {"room-render": 65, "room-long-return": 289}
    for name, count in frames.items():
        demo = build_demo_room(WIDTH, HEIGHT)
        per_loop = (count - 1) // loops[name] + 1
        path = []
        for loop in range(loops[name]):
            swing = look_away_and_back(per_loop, yaw_degrees=70.0 + 25.0 * loop)  # wider each time
            path += swing if loop == 0 else swing[1:]
        keyframe_camera(demo.scene, demo.camera, path)
        demo.scene.frame_set(1)
        first = render_rgbd(demo.scene, demo.camera, samples=32)
        exported = export_camera(demo.scene, demo.camera)
        cams = Cameras(exported["intrinsics"], exported["w2c"], exported["width"], exported["height"])
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        write_frames(folder / "first.png", first["rgb"][None], single=True)
        if name == "room-render":
            write_exr_depth(folder / "depth.exr", first["depth"])
            depth_name = "depth.exr"
        else:
            np.save(folder / "depth.npy", first["depth"].astype(np.float32))
            depth_name = "depth.npy"
        text = shot_json(name, cams, exported["fps"], [PROMPT],
                         {"kind": "render", "image": "first.png", "depth": depth_name})
        (folder / "shot.json").write_text(text, encoding="utf-8")
        assert len(cams) == count, (name, len(cams))


def corridor(width: int, height: int, fx: float) -> tuple[np.ndarray, np.ndarray]:
    """A corridor seen from its middle (OpenCV camera at the origin looking down +z): floor,
    ceiling, two walls and an end wall, each with its own pattern; the colour and the exact
    z-depth of every pixel centre."""
    v, u = np.mgrid[0:height, 0:width] + 0.5
    d = np.stack([(u - width / 2) / fx, (v - height / 2) / fx, np.ones_like(u)], axis=-1)
    planes = [  # (axis, position, colour function of the hit point)
        (1, 1.2, lambda p: np.where((np.floor(p[..., 0] * 2) + np.floor(p[..., 2] * 2)) % 2 == 0, 0.85, 0.25)[..., None]
         * np.array([1.0, 0.9, 0.75])),
        (1, -1.5, lambda p: np.full(p.shape, 0.92) - 0.1 * (np.sin(p[..., 2] * 3) > 0)[..., None]),
        (0, -1.5, lambda p: (0.5 + 0.4 * np.sin(p[..., 2] * 4 + p[..., 1] * 2))[..., None] * np.array([0.3, 0.5, 0.9])),
        (0, 1.5, lambda p: np.where(np.floor(p[..., 2]) % 2 == 0, 0.9, 0.55)[..., None] * np.array([0.9, 0.6, 0.3])),
        (2, 14.0, lambda p: (0.6 + 0.3 * np.cos(p[..., 0] * 5) * np.cos(p[..., 1] * 5))[..., None]
         * np.array([0.4, 0.8, 0.4])),
    ]
    best = np.full(u.shape, np.inf)
    rgb = np.zeros((*u.shape, 3))
    for axis, position, colour in planes:
        with np.errstate(divide="ignore", invalid="ignore"):  # rays parallel to a plane never reach it
            t = position / d[..., axis]
            t = np.where(t > 0, t, np.inf)
            hit = t < best
            best = np.where(hit, t, best)
            rgb = np.where(hit[..., None], colour(d * np.where(hit, t, 0.0)[..., None]), rgb)
    return np.clip(rgb * 255, 0, 255).astype(np.uint8), best.astype(np.float32)  # d_z = 1: t is the depth


def corridor_example() -> None:
    from spatia.cameras import Cameras
    from spatia.formats.video import write_frames

    fx = 0.9 * WIDTH
    rgb, depth = corridor(WIDTH, HEIGHT, fx)
    count = 57
    c2w = np.repeat(np.eye(4)[None], count, axis=0)
    for i in range(count):  # in 2.5 m, turning 25 degrees to the right and back
        t = i / (count - 1)
        yaw = math.radians(25.0) * math.sin(math.pi * t)
        c2w[i, :3, :3] = [[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]]
        c2w[i, :3, 3] = [0.3 * math.sin(math.pi * t), 0.0, 2.5 * t]
    k = np.tile([fx, fx, WIDTH / 2, HEIGHT / 2], (count, 1))
    cams = Cameras.from_c2w(k, c2w, WIDTH, HEIGHT)
    folder = HERE / "corridor-photo"
    folder.mkdir(exist_ok=True)
    write_frames(folder / "photo.png", rgb[None], single=True)
    np.save(folder / "depth.npy", depth)
    text = shot_json("corridor-photo", cams, 24.0, ["a long corridor with a checkered floor, painted walls"],
                     {"kind": "render", "image": "photo.png", "depth": "depth.npy"})
    (folder / "shot.json").write_text(text, encoding="utf-8")
    json.loads(text)


if __name__ == "__main__":
    corridor_example()
    room_examples()
    print("wrote", ", ".join(sorted(p.name for p in HERE.iterdir() if p.is_dir())))
