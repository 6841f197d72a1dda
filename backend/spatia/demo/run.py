"""`spatia demo`: the whole loop on a built-in scene, on a CPU, with no model weights.

A textured room is built in Blender; its camera looks away from the far wall and comes back.
The first frame is rendered with Cycles (colour + exact depth + the camera) and seeds the
spatial memory. Each round then renders the memory along the camera path, retrieves past
frames that saw the same space, and asks the preview generator (memory projection with
classical hole filling, not a generative model) for the clip; the memory is updated from
every clip. Outputs (the layout every command writes, plus demo.blend): video.mp4, memory.ply,
cameras.json, report.json, demo.blend (memory object + clips + camera), and the world folder.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spatia.cameras import Cameras, Trajectory
from spatia.formats.atomic import write_json
from spatia.engine.memory import export_ply
from spatia.engine.metrics import psnr
from spatia.engine.models.preview import PreviewGenerator
from spatia.engine.render import render_memory
from spatia.engine.world import GenerateSettings, World

PROMPT = "a sunlit room with a checkered floor, a table, a cabinet and a red and white ball"


@dataclass
class DemoOptions:
    out: Path = Path("out/demo")
    width: int = 320
    height: int = 176
    rounds: int = 4
    first_round_frames: int = 49
    round_frames: int = 33
    overlap: int = 9
    voxel_size: float = 0.03
    samples: int = 16
    seed: int = 0


def run_demo(options: DemoOptions, progress=None) -> dict:
    import bpy

    from spatia_blender.camera_export import export_camera
    from spatia_blender.clip_import import import_clip, round_frames
    from spatia_blender.memory_object import import_memory
    from spatia_blender.render_rgbd import render_rgbd

    from spatia.engine.progress import progress_bar
    from spatia.demo.scene import build_demo_room, keyframe_camera, look_away_and_back

    t0 = time.perf_counter()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    world_dir = out / "world"
    if world_dir.exists():
        import shutil

        shutil.rmtree(world_dir)
    frame_count = options.first_round_frames + (options.rounds - 1) * (options.round_frames - options.overlap)

    scene_info = build_demo_room(options.width, options.height)
    scene, camera = scene_info.scene, scene_info.camera
    keyframe_camera(scene, camera, look_away_and_back(frame_count))
    scene.frame_set(scene.frame_start)
    t = time.perf_counter()
    first = render_rgbd(scene, camera, samples=options.samples)
    render_s = time.perf_counter() - t
    exported = export_camera(scene, camera)
    cams = Cameras(exported["intrinsics"], exported["w2c"], exported["width"], exported["height"])
    trajectory = Trajectory(cams, fps=exported["fps"])

    world = World.create(world_dir, width=cams.width, height=cams.height, fps=trajectory.fps,
                         voxel_size=options.voxel_size)
    world.init_from_rgbd(first["rgb"], first["depth"], cams[0],
                         message="initialised from a Cycles render of the first frame")
    settings = GenerateSettings(seed=options.seed, first_round_frames=options.first_round_frames,
                                round_frames=options.round_frames, overlap=options.overlap)
    update, close = progress_bar(desc="demo") if progress is None else (progress, lambda: None)
    try:
        records = world.generate(trajectory, [PROMPT], PreviewGenerator(), settings, progress=update)
    finally:
        close()

    video = world.export_video(out / "video.mp4")
    memory = world.memory()
    export_ply(memory, out / "memory.ply")
    write_json(out / "cameras.json", {"width": cams.width, "height": cams.height, "fps": trajectory.fps,
                                      "intrinsics": cams.intrinsics, "w2c": cams.w2c})  # as `spatia generate`

    # Loop closure: the last frame's camera is the first frame's; compare what the memory
    # shows there with the Cycles render the world started from.
    last_view = render_memory(memory, cams[len(cams) - 1])
    covered = last_view.mask[0].cpu().numpy()
    loop_psnr = psnr(last_view.rgb[0].cpu().numpy(), first["rgb"], covered)

    xyz = memory.xyz.cpu().numpy() if hasattr(memory.xyz, "cpu") else np.asarray(memory.xyz)
    rgb = memory.rgb.cpu().numpy() if hasattr(memory.rgb, "cpu") else np.asarray(memory.rgb)
    ids = memory.point_id.cpu().numpy() if hasattr(memory.point_id, "cpu") else np.asarray(memory.point_id)
    import_memory(scene, xyz, rgb, ids, radius=options.voxel_size * 0.6, version=world.memory_version,
                  world=str(world_dir.resolve()))
    for record in records:
        import_clip(scene, camera, round_frames(world.root.resolve(), record, scene.frame_start))
    blend = out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend.resolve()), check_existing=False)

    summary = {
        "frames": world.frame_count,
        "rounds": len(records),
        "size": f"{cams.width}x{cams.height}",
        "memory_points": len(memory),
        "memory_versions": world.store.versions(),
        "coverage_per_round": [round(r["coverage"], 4) for r in records],
        "references_per_round": [r["references"] for r in records],
        "loop_closure_psnr_db": round(loop_psnr, 2),
        "loop_closure_covered_fraction": round(float(covered.mean()), 4),
        "first_frame_render_s": round(render_s, 2),
        "total_s": round(time.perf_counter() - t0, 2),
    }
    report = {"summary": summary, "options": {k: str(v) for k, v in asdict(options).items()}, "rounds": records,
              "outputs": {"video": str(video), "memory_ply": str(out / "memory.ply"), "blend": str(blend),
                          "cameras": str(out / "cameras.json"),
                          "world": str(world_dir)}}
    write_json(out / "report.json", report)
    return report
