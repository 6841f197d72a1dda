"""Builds small shot .blend files for the batch tests: the demo room at 48x32, a camera that
looks away and back over 20 frames, and the extension's shot settings (two rounds).

Run as a script in a fresh process (`python shot_blends.py OUT NAME[:broken] ...`) so the
extension's property classes never stay registered in the test process.
"""

import subprocess
import sys
from pathlib import Path

FRAMES = 20
SIZE = (48, 32)
ROUNDS = (12, 10, 2)  # first round, later rounds, overlap: 12 + 8 = 20 frames in two rounds


def build(path: Path, *, broken: bool = False, seed: int = 0, yaw: float = 50.0) -> None:
    import bpy
    from spatia.demo.scene import build_demo_room, keyframe_camera, look_away_and_back

    from spatia_blender import properties

    room = build_demo_room(*SIZE)
    if "spatia" not in bpy.types.Scene.bl_rna.properties:
        properties.register()
    scene, camera = room.scene, room.camera
    scene.cycles.samples = 2
    keyframe_camera(scene, camera, look_away_and_back(FRAMES, yaw_degrees=yaw))
    settings = scene.spatia
    settings.prompts.add().text = "a sunlit room with a checkered floor"
    settings.generator, settings.quality, settings.vram = "preview", "draft", "auto"
    settings.use_seed, settings.seed = True, seed
    settings.first_round_frames, settings.round_frames, settings.overlap = ROUNDS
    settings.voxel_size = 0.05
    if broken:
        camera.data.type = "ORTHO"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), check_existing=False)


def build_blends(folder: Path, *specs: str) -> Path:
    """Build "name" or "name:broken" shots into `folder` in a fresh process."""
    subprocess.run([sys.executable, __file__, str(folder), *specs], check=True, capture_output=True, timeout=120)
    return Path(folder)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for i, spec in enumerate(sys.argv[2:]):
        name, _, flag = spec.partition(":")
        build(out / f"{name}.blend", broken=flag == "broken", seed=i, yaw=40.0 + 10 * i)
