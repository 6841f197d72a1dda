"""The Blender side of a batch shot: open the .blend, read the shot from the extension's scene
settings, initialise or continue the world, run it, and save the .blend with the results.

The shot is built by the extension's own code (`spatia_blender.operators.shot_for_scene`),
so a batch run generates exactly what the Generate button would submit for the same scene.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from spatia.formats import presets
from spatia.engine.settings import shot_settings
from spatia.engine.world import World, WorldError
from .jobs import sha256_file


@dataclass
class Shot:
    spec: dict  # spatia.shot v1, validated
    generator: str
    quality: str
    samples: int
    world_id: str
    voxel_size: float
    point_radius: float
    depth: str = "depth-pro"
    models: dict = field(default_factory=dict)


def register_settings(bpy) -> None:
    """Make `scene.spatia` readable: the extension's property classes, registered once."""
    if "spatia" in bpy.types.Scene.bl_rna.properties:
        return
    from spatia_blender import properties

    properties.register()


def open_blend(path: str):
    import bpy

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such .blend file")
    register_settings(bpy)
    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    return bpy


def check_active_camera(scene) -> None:
    from spatia_blender.camera_export import check_camera

    check_camera(scene.camera)


def _apply_quality_size(scene, quality: presets.QualityPreset) -> None:
    render = scene.render
    scale = render.resolution_percentage / 100.0
    width, height = presets.fit_resolution(round(render.resolution_x * scale), round(render.resolution_y * scale), quality)
    render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100


def read_shot(scene, options: dict) -> Shot:
    """The shot the scene's settings describe, with the batch's overrides and the quality preset."""
    from spatia_blender.operators import shot_for_scene

    from spatia.formats.shot import dump_shot, load_shot

    settings = scene.spatia
    generator = options.get("generator") or settings.generator
    quality = presets.quality(settings.quality or "standard", generator=generator)  # spatia-5b keeps its trained size
    if options.get("resolution") == "quality":
        _apply_quality_size(scene, quality)
    shot, _ = shot_for_scene(scene)
    shot["generator"] = generator
    shot["quality"] = quality.name  # its steps and guidance reach the generator through shot_settings,
    spec = load_shot(shot)          # as on every other path; the scene's own steps/guidance win when set
    return Shot(spec=dump_shot(spec), generator=generator, quality=quality.name,
                samples=int(options.get("samples") or quality.init_samples), world_id=settings.world_id.strip(),
                voxel_size=float(settings.voxel_size), point_radius=float(settings.point_radius),
                depth=options.get("depth") or "depth-pro")


def prepare_models(shot: Shot) -> dict:
    """The generator (and the depth and segmentation models it needs), checked before any work."""
    from spatia.engine.models import get_depth_estimator, get_segmenter
    from spatia.engine.run import generator_for

    runtime = presets.runtime_settings(shot.spec["vram"], shot.generator)
    generator = generator_for(shot.generator, shot.spec["vram"])
    generator.check_available()
    models = {"generator": generator, "depth": None, "segmenter": None,
              "runtime": None if runtime is None else runtime.model_dump()}
    if shot.generator != "preview":  # the preview's depth comes from the memory; generated frames need an estimate
        models["depth"] = get_depth_estimator(shot.depth)
        models["depth"].check_available()
    if shot.spec["dynamic_prompts"]:
        models["segmenter"] = get_segmenter("sam3")
        models["segmenter"].check_available()
    return models


def find_world(world_id: str, blend_dir: Path, worlds_dir: str | None) -> Path:
    """A world named in the settings: a path (absolute, or relative to the .blend's folder),
    or a world id in the worlds folder (e.g. a service's data_dir/worlds)."""
    candidates = [Path(world_id).expanduser()]
    if not candidates[0].is_absolute():
        candidates = [blend_dir / world_id]
        if worlds_dir:
            candidates.append(Path(worlds_dir).expanduser() / world_id)
    for candidate in candidates:
        if (candidate / "world.json").is_file():
            return candidate
    hint = "" if worlds_dir else " (give --worlds DIR to look in a service's worlds folder)"
    raise WorldError(f"the scene continues world {world_id!r}, which is not at {', '.join(map(str, candidates))}{hint}")


def init_world(scene, shot: Shot, root: Path, job) -> tuple[World, dict | None]:
    """A copy of the world the settings name, or a new world seeded from a Cycles render of the
    active camera at the shot's first frame."""
    from spatia.formats.shot import load_shot

    if root.exists():
        shutil.rmtree(root)
    if shot.world_id:
        source = find_world(shot.world_id, Path(job.source).parent, job.options.get("worlds_dir"))
        shutil.copytree(source, root)  # continue a copy: the original world stays as it was
        return World.open(root), {"id": shot.world_id, "path": str(source),
                                  "world_json_sha256": sha256_file(source / "world.json")}

    from spatia_blender.render_rgbd import render_rgbd

    spec = load_shot(shot.spec)
    first = int(spec.frames[0].frame)
    scene.frame_set(first)
    rgbd = render_rgbd(scene, scene.camera, samples=shot.samples)
    camera = spec.trajectory().cameras[0]
    world = World.create(root, width=spec.width, height=spec.height, fps=spec.fps, voxel_size=shot.voxel_size)
    world.init_from_rgbd(rgbd["rgb"], rgbd["depth"], camera,
                         message=f"initialised from a Cycles render of frame {first} ({shot.samples} samples)")
    return world, None


def generate(world: World, shot: Shot, models: dict, progress) -> list[dict]:
    from spatia.formats.shot import load_shot

    spec = load_shot(shot.spec)
    return world.generate(spec.trajectory(), list(spec.prompts), models["generator"], shot_settings(spec),
                          depth_estimator=models["depth"], segmenter=models["segmenter"], progress=progress)


def save_blend(bpy, scene, world: World, shot: Shot, records: list[dict], path: Path) -> Path:
    """The scene with the memory as a point object and every clip as a camera background and a
    sequencer strip (as the extension imports them), saved with paths relative to the file."""
    from spatia_blender.clip_import import import_clip, round_frames
    from spatia_blender.memory_object import import_memory

    arrays = world.memory().arrays()
    import_memory(scene, arrays["xyz"], arrays["rgb"], arrays["point_id"], arrays.get("conf"),
                  radius=shot.voxel_size * shot.point_radius, version=world.memory_version,
                  world=shot.world_id or "world")
    first = int(shot.spec["frames"][0]["frame"])
    for record in records:
        import_clip(scene, scene.camera, round_frames(world.root.resolve(), record, first))
    path = Path(path).resolve()
    # Save first so the file has a folder to be relative to, then make the clips' paths relative:
    # the shot folder can move (or come back from another machine) and the .blend still finds them.
    filepaths = bpy.context.preferences.filepaths
    versions, filepaths.save_version = filepaths.save_version, 0  # no .blend1 backup beside the output
    try:
        bpy.ops.wm.save_as_mainfile(filepath=str(path), check_existing=False, relative_remap=True)
        bpy.ops.file.make_paths_relative()
        bpy.ops.wm.save_mainfile(filepath=str(path), check_existing=False)
    finally:
        filepaths.save_version = versions
    return path
