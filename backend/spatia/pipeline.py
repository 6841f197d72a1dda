"""Run a whole shot from files: a Spatia reference test case or our shot spec.

Everything the run needs is checked before anything is written (inputs parse, the round
plan has its prompts, the models are available), so bad input fails fast and leaves no
half-written output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cameras import Trajectory, read_reference_case
from .io import write_json
from .memory import MemoryStore, export_ply
from .models import get_depth_estimator, get_generator, get_segmenter
from .models.base import DepthEstimator, VideoGenerator
from .plan import plan_rounds
from .shot import load_shot
from .world import GenerateSettings, World, WorldError


def generator_for(name: str, vram: str = "auto") -> VideoGenerator:
    """The generator preset `name`, placed on the GPU as the `vram` setting says (a VRAM preset
    such as "24gb", a mode such as "model" offload, or "auto" from the free memory)."""
    from . import presets

    runtime = presets.runtime_settings(vram, name)
    return get_generator(name, **({"runtime": runtime.runtime_options()} if runtime else {}))


def _prepare_out(out: Path) -> Path:
    out = Path(out)
    if (out / "world" / "world.json").exists():
        raise WorldError(f"{out} already holds a run; choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_outputs(world: World, out: Path, records: list[dict], extra: dict) -> dict:
    video = world.export_video(out / "output.mp4")
    ply_dir = out / "memory"
    ply_dir.mkdir(exist_ok=True)
    store = MemoryStore(world.root / "memory")
    for version in store.versions():
        export_ply(store.load(version), ply_dir / f"v{version:04d}.ply")
    cams = world.cameras()
    write_json(out / "cameras.json", {
        "width": cams.width, "height": cams.height, "fps": world.fps,
        "intrinsics": cams.intrinsics, "w2c": cams.w2c,
    })
    summary = {
        "frames": world.frame_count,
        "rounds": len(records),
        "memory_versions": store.versions(),
        "memory_points": len(world.memory()),
        "coverage_per_round": [round(r["coverage"], 4) for r in records],
        "video": str(video),
    }
    report = {"summary": summary, "rounds": records, **extra}
    write_json(out / "report.json", report)
    return report


def run_case(case_dir, out, *, generator: str | VideoGenerator | None = None,
             depth: str | DepthEstimator = "depth-pro", seed: int = 0, steps: int | None = None,
             vram: str = "auto", settings: GenerateSettings | None = None, progress=None) -> dict:
    """Generate the video of a reference test case folder into `out`."""
    case = read_reference_case(case_dir)
    settings = settings or GenerateSettings(seed=seed, steps=steps)
    plan_rounds(len(case.trajectory), case.prompts, first_round_frames=settings.first_round_frames,
                round_frames=settings.round_frames, overlap=settings.overlap)
    gen = generator if isinstance(generator, VideoGenerator) else generator_for(generator or "preview", vram)
    gen.check_available()
    depth_estimator = get_depth_estimator(depth) if isinstance(depth, str) else depth
    depth_estimator.check_available()
    out = _prepare_out(out)

    cams = case.trajectory.cameras
    world = World.create(out / "world", width=cams.width, height=cams.height, fps=case.trajectory.fps)
    masks = case.mask
    first_mask = None if masks is None else masks[0]
    world.init_from_image(case.image, depth_estimator, intrinsics=cams.intrinsics[0], w2c=cams.w2c[0],
                          dynamic=first_mask)
    user_masks = masks if masks is not None and len(masks) == len(cams) else None
    records = world.generate(case.trajectory, case.prompts, gen, settings, depth_estimator=depth_estimator,
                             user_masks=user_masks, progress=progress)
    return _write_outputs(world, out, records, {"case": str(case_dir)})


def run_shot(shot_path, out, *, generator: str | VideoGenerator | None = None,
             depth: str | DepthEstimator | None = None, settings: GenerateSettings | None = None,
             progress=None) -> dict:
    """Generate a shot spec into `out` (a world given in the spec is continued)."""
    spec = load_shot(shot_path)
    trajectory: Trajectory = spec.trajectory()
    plan = spec.rounds
    settings = settings or GenerateSettings(
        seed=spec.seed, steps=spec.steps, guidance=spec.guidance, negative_prompt=spec.negative_prompt,
        dynamic_prompts=list(spec.dynamic_prompts), first_round_frames=plan.first_round_frames,
        round_frames=plan.round_frames, overlap=plan.overlap,
    )
    gen = generator if isinstance(generator, VideoGenerator) else generator_for(generator or spec.generator, spec.vram)
    gen.check_available()
    depth_estimator = depth if isinstance(depth, DepthEstimator) else (get_depth_estimator(depth) if depth else None)
    segmenter = None
    if spec.dynamic_prompts:  # people, cars...: masked out of the memory by SAM3 video
        segmenter = get_segmenter("sam3")
        segmenter.check_available()
    out = _prepare_out(out)
    world = _shot_world(spec, Path(shot_path).parent if not isinstance(shot_path, dict) else Path.cwd(), out,
                        trajectory, depth_estimator)
    records = world.generate(trajectory, list(spec.prompts), gen, settings, depth_estimator=depth_estimator,
                             segmenter=segmenter, progress=progress)
    return _write_outputs(world, out, records, {"shot": str(shot_path)})


def _shot_world(spec, base: Path, out: Path, trajectory: Trajectory, depth_estimator) -> World:
    """The world a shot runs in: the one it names, or a new one initialised as it says.
    Relative paths in the shot are relative to the shot file's folder."""
    from .video import read_image

    def resolve(path):
        return None if path is None else (base / path if not Path(path).is_absolute() else Path(path))

    cams = trajectory.cameras
    if spec.world:
        return World.open(resolve(spec.world))
    init = spec.init
    if init is None:
        raise WorldError("the shot names no world and no init: give `world` or `init`")
    world = World.create(out / "world", width=cams.width, height=cams.height, fps=trajectory.fps)
    if init.kind == "points":
        world.init_from_points(resolve(init.points))
    elif init.kind == "render":
        if not str(init.depth).endswith(".npy"):
            raise WorldError("init.depth must be a .npy depth map (metres, z along the optical axis)")
        depth = np.load(resolve(init.depth), allow_pickle=False)
        world.init_from_rgbd(read_image(resolve(init.image)), depth.astype(np.float32), cams[0])
    else:
        if depth_estimator is None:
            depth_estimator = get_depth_estimator("depth-pro")
        world.init_from_image(read_image(resolve(init.image)), depth_estimator, intrinsics=cams.intrinsics[0],
                              w2c=cams.w2c[0])
    return world
