"""Run a whole shot from files: a Spatia reference test case or our shot spec.

Everything the run needs is checked before anything is written (inputs parse, the round
plan has its prompts, the models are available), so bad input fails fast and leaves no
half-written output.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spatia.cameras import Trajectory
from spatia.formats.reference_case import read_reference_case
from spatia.formats.atomic import write_json
from spatia.engine.memory import export_ply
from spatia.engine.models import get_depth_estimator, get_generator, get_segmenter
from spatia.engine.models.gpu import RuntimeOptions
from spatia.engine.models.base import DepthEstimator, VideoGenerator
from spatia.engine.plan import plan_rounds
from spatia.formats.shot import dump_shot, load_shot
from spatia.engine.settings import GenerateSettings, shot_settings
from spatia.engine.world import World, WorldError

MIN_IMAGE_SIDE = 16  # the smallest first image a run accepts, as the shot schema's width and height
MAX_RUN_FRAMES = 100_000  # cameras in one run (a reference case or a shot): over an hour at 24 fps


def generator_for(name: str, vram: str = "auto") -> VideoGenerator:
    """The generator preset `name`, placed on the GPU as the `vram` setting says (a VRAM preset
    such as "24gb", a mode such as "model" offload, or "auto" from the free memory)."""
    from spatia.formats import presets

    try:
        runtime = presets.runtime_settings(vram, name)
        return get_generator(name, **({"runtime": RuntimeOptions(**runtime.model_dump())} if runtime else {}))
    except KeyError as err:  # an unknown name: the message lists the known ones
        raise WorldError(str(err.args[0]) if err.args else f"unknown generator {name!r}") from None


def _check_frame_count(count: int, what: str) -> None:
    if count > MAX_RUN_FRAMES:
        raise WorldError(f"{what} has {count} cameras; a run holds at most {MAX_RUN_FRAMES}")


def _check_image(image: np.ndarray, what: str, width: int | None = None, height: int | None = None) -> np.ndarray:
    if image.ndim != 3 or image.shape[0] < MIN_IMAGE_SIDE or image.shape[1] < MIN_IMAGE_SIDE:
        raise WorldError(f"{what} is {image.shape[1] if image.ndim > 1 else 0}x{image.shape[0]}; images must be at "
                         f"least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    if width is not None and (image.shape[1], image.shape[0]) != (width, height):
        raise WorldError(f"{what} is {image.shape[1]}x{image.shape[0]} but the shot is {width}x{height}")
    return image


def check_out_folder(out, flag: str = "--out") -> Path:
    """`out` as a folder that can be made or is one: never a file, nor inside one."""
    out = Path(out)
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                named = "" if folder == out else f" ({folder} is a file)"
                raise WorldError(f"{flag} {out}: not a folder{named}; name a new or existing folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise WorldError(f"{flag} {out}: {folder} is not writable")
            break
    return out


def _prepare_out(out: Path) -> Path:
    out = check_out_folder(out)
    if (out / "world" / "world.json").exists():
        raise WorldError(f"{out} already holds a run; choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_outputs(world: World, out: Path, records: list[dict], extra: dict) -> dict:
    video = world.export_video(out / "video.mp4")
    store = world.store
    export_ply(world.memory(), out / "memory.ply")  # the final version (others: export on demand)
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
        # how well the world comes back to where it has been (see World._loop_closure)
        "memory_vs_first_psnr_per_round": [r["loop_closure"].get("memory_vs_first_psnr") for r in records],
        "revisit_psnr_per_round": [r["loop_closure"].get("revisit_psnr_mean") for r in records],  # exact returns
        "revisit_near_psnr_per_round": [r["loop_closure"].get("revisit_near_psnr_mean") for r in records],
        # the memory at the cameras of keyframes it fused, against them (see spatia.engine.recall)
        "recall_psnr_per_round": [(r["loop_closure"].get("recall") or {}).get("psnr") for r in records],
        "conflict_pixels_per_round": [(r["update"] or {}).get("conflict_pixels") for r in records],
        "video": str(video),
        "memory_ply": str(out / "memory.ply"),
    }
    report = {"summary": summary, "rounds": records, **extra}
    write_json(out / "report.json", report)
    return report


def run_case(case_dir, out, *, generator: str | VideoGenerator | None = None,
             depth: str | DepthEstimator = "depth-pro", seed: int | None = None, steps: int | None = None,
             vram: str = "auto", settings: GenerateSettings | None = None, progress=None,
             retrieval: str | None = None, update_mode: str = "incremental", quality: str | None = None,
             guidance: float | None = None) -> dict:
    """Generate the video of a reference test case folder into `out`: the quality preset's steps
    and guidance for the generator (`presets.generator_settings`) unless `steps` / `guidance` are
    given, the case's seed (the authors') unless `seed` is."""
    from spatia.formats.presets import generator_settings

    case = read_reference_case(case_dir)
    _check_frame_count(len(case.trajectory), f"{case_dir}")
    _check_image(np.asarray(case.image), f"{case_dir}/img.jpg")
    name = getattr(generator, "name", None) if isinstance(generator, VideoGenerator) else (generator or "preview")
    run = generator_settings(name or "preview", quality, steps=steps, guidance=guidance,
                             seed=case.seed if seed is None else seed)  # the authors' seed unless asked otherwise
    settings = settings or GenerateSettings(seed=run.seed, steps=run.steps, guidance=run.guidance, retrieval=retrieval,
                                            update_mode=update_mode)
    if settings.update_mode == "mapanything-rebuild" and depth == "depth-pro":
        depth = "map-anything"  # the paper's update rebuilds the memory with MapAnything
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
             progress=None, retrieval: str | None = None, update_mode: str = "incremental",
             quality: str | None = None, seed: int | None = None, steps: int | None = None) -> dict:
    """Generate a shot spec into `out` (a world given in the spec is continued). Every input
    (the plan's prompts, the models, the init's files) is checked before anything is written.
    `generator`, `quality`, `seed` and `steps` override the shot's; its steps and guidance follow
    the quality preset as that generator runs it unless the shot sets them."""
    spec = load_shot(shot_path)
    overrides = {k: v for k, v in (("quality", quality), ("seed", seed), ("steps", steps)) if v is not None}
    if overrides:
        spec = load_shot({**dump_shot(spec), **overrides})  # validated like the file
    trajectory: Trajectory = spec.trajectory()
    _check_frame_count(len(trajectory), "the shot")
    name = getattr(generator, "name", None) if isinstance(generator, VideoGenerator) else generator
    settings = settings or shot_settings(spec, name or spec.generator, retrieval=retrieval, update_mode=update_mode)
    if settings.update_mode == "mapanything-rebuild" and depth is None:
        depth = "map-anything"  # the paper's update rebuilds the memory with MapAnything
    base = Path(shot_path).parent if not isinstance(shot_path, dict) else Path.cwd()
    start = 0
    if spec.world:
        start = World.open(_resolve(base, spec.world)).frame_count
    plan_rounds(len(trajectory), list(spec.prompts), first_round_frames=settings.first_round_frames,
                round_frames=settings.round_frames, overlap=settings.overlap, start_frame=start)
    gen = generator if isinstance(generator, VideoGenerator) else generator_for(generator or spec.generator, spec.vram)
    gen.check_available()
    depth_estimator = depth if isinstance(depth, DepthEstimator) else (get_depth_estimator(depth) if depth else None)
    if spec.init is not None and spec.init.kind == "image" and not spec.world and depth_estimator is None:
        depth_estimator = get_depth_estimator("depth-pro")  # the image start needs depth weights: checked now
    if depth_estimator is not None and ((spec.init is not None and spec.init.kind == "image")
                                        or settings.update_mode == "mapanything-rebuild"):
        depth_estimator.check_available()
    segmenter = None
    if spec.dynamic_prompts:  # people, cars...: masked out of the memory by SAM3 video
        segmenter = get_segmenter("sam3")
        segmenter.check_available()
    if spec.objects or spec.forget_objects:  # the objects named must exist: checked before anything is written
        if spec.world:
            World.open(_resolve(base, spec.world)).directed_objects(settings)
        else:
            raise WorldError(f"the shot directs objects {sorted({o.id for o in spec.objects} | set(spec.forget_objects))} "
                             "but starts a new world, which remembers none; name the world it continues (world)")
    init = None if spec.world else _load_init(spec, base, trajectory)
    out = _prepare_out(out)
    world = _shot_world(spec, base, out, trajectory, depth_estimator, init)
    records = world.generate(trajectory, list(spec.prompts), gen, settings, depth_estimator=depth_estimator,
                             segmenter=segmenter, progress=progress)
    return _write_outputs(world, out, records, {"shot": str(shot_path)})


def _resolve(base: Path, path) -> Path | None:
    """Relative paths in a shot are relative to the shot file's folder."""
    return None if path is None else (base / path if not Path(path).is_absolute() else Path(path))


def _load_init(spec, base: Path, trajectory: Trajectory) -> dict:
    """The init's files, read and checked (sizes, dtypes, the mask) before the output folder exists."""
    from spatia.engine.memory.checks import check_ply, check_snapshot_layout
    from spatia.formats.video import read_image

    init = spec.init
    if init is None:
        raise WorldError("the shot names no world and no init: give `world` or `init`")
    cams = trajectory.cameras
    width, height = cams.width, cams.height
    loaded: dict = {"kind": init.kind}
    if init.kind == "points":
        if init.mask is not None:
            raise WorldError("init.mask marks dynamic pixels of an image; kind 'points' has no image to mask")
        path = _resolve(base, init.points)
        if not path.is_file():
            raise WorldError(f"init.points: {path} does not exist")
        data = path.read_bytes()
        if path.suffix.lower() == ".ply":
            check_ply(data, f"init.points ({path.name})")
        elif path.suffix.lower() == ".safetensors":
            check_snapshot_layout(data, f"init.points ({path.name})")
        else:
            raise WorldError(f"init.points: {path.name} must be a .ply or .safetensors point cloud")
        loaded["points"] = path
        return loaded
    image_path = _resolve(base, init.image)
    if not image_path.is_file():
        raise WorldError(f"init.image: {image_path} does not exist")
    if image_path.stat().st_size == 0:
        raise WorldError(f"init.image: {image_path} is empty")
    loaded["image"] = _check_image(read_image(image_path), f"init.image ({image_path.name})", width, height)
    if init.kind == "render":
        from spatia.formats.depth import DepthFileError, read_depth

        try:
            loaded["depth"] = read_depth(_resolve(base, init.depth), width, height, what="init.depth")
        except DepthFileError as err:
            raise WorldError(str(err)) from None
    if init.mask is not None:
        loaded["mask"] = _load_mask(_resolve(base, init.mask), width, height)
    return loaded


def _load_mask(path: Path, width: int, height: int) -> np.ndarray:
    """init.mask as bool [H, W]: a .npy (non-zero = dynamic) or an image (bright = dynamic)."""
    from spatia.formats.video import read_image

    if not path.is_file():
        raise WorldError(f"init.mask: {path} does not exist")
    if path.suffix.lower() == ".npy":
        try:
            mask = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise WorldError(f"init.mask: cannot read {path.name} ({err})") from None
        if mask.ndim == 3 and mask.shape[0] == 1:
            mask = mask[0]
        mask = mask != 0
    else:
        mask = read_image(path).mean(axis=-1) > 127
    if mask.shape != (height, width):
        raise WorldError(f"init.mask is {list(mask.shape)} but the shot needs [{height}, {width}]")
    return mask


def _shot_world(spec, base: Path, out: Path, trajectory: Trajectory, depth_estimator, init: dict | None) -> World:
    """The world a shot runs in: the one it names, or a new one initialised from the checked init."""
    cams = trajectory.cameras
    if spec.world:
        return World.open(_resolve(base, spec.world))
    world = World.create(out / "world", width=cams.width, height=cams.height, fps=trajectory.fps)
    mask = init.get("mask")
    if init["kind"] == "points":
        world.init_from_points(init["points"])
    elif init["kind"] == "render":
        world.init_from_rgbd(init["image"], init["depth"], cams[0], dynamic=mask)
    else:
        world.init_from_image(init["image"], depth_estimator, intrinsics=cams.intrinsics[0], w2c=cams.w2c[0],
                              dynamic=mask)
    return world
