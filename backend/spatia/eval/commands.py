"""`spatia eval`: the spatial-consistency evaluation from the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

from spatia.formats.arguments import MAX_SEED, bounded_float, bounded_int, non_empty


def _size(text: str) -> tuple[int, int]:
    import argparse

    match = re.fullmatch(r"\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like 256x144, got {text!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise argparse.ArgumentTypeError(f"width and height must be in [16, 4096], got {width}x{height}")
    return width, height


SCENE_SETS = ("all", "static", "objects", "scenarios")


def _scenes(text: str) -> list[str]:
    """Comma-separated scene names and sets (all, static: the closed loops, objects: the scenes
    with moving objects), in order, without repeats."""
    import argparse

    from .groundtruth import OBJECT_SCENES, SCENARIO_SCENES, SCENES, STATIC_SCENES

    sets = {"all": [n for n in SCENES if n not in SCENARIO_SCENES], "static": STATIC_SCENES,
            "objects": [n for n in OBJECT_SCENES if n not in SCENARIO_SCENES], "scenarios": SCENARIO_SCENES}
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if part in sets:
            names = sets[part]
        elif part in SCENES:
            names = [part]
        else:
            raise argparse.ArgumentTypeError(f"unknown scene {part!r}; choose from {', '.join([*SCENES, *SCENE_SETS])}")
        out += [n for n in names if n not in out]
    if not out:
        raise argparse.ArgumentTypeError("no scene given")
    return out


def _cmd_eval(args) -> int:
    from spatia.engine.run import check_out_folder

    from .runner import EvalOptions, run_eval

    check_out_folder(args.out)
    if args.cache:
        check_out_folder(args.cache, flag="--cache")
    scenes = args.scene
    overrides = {"scenes": scenes, "generator": args.generator, "out": Path(args.out), "seed": args.seed}
    if args.cache:
        overrides["cache_dir"] = Path(args.cache)
    if args.scenario_seed is not None:
        from .groundtruth import scenario_cache_dir, use_scenario_seed

        use_scenario_seed(args.scenario_seed)
        overrides["cache_dir"] = scenario_cache_dir(args.cache, args.scenario_seed)
    if args.no_align:
        overrides["align"] = False
    if args.depth:
        overrides["depth"] = args.depth
    for name in ("frames", "rounds", "samples", "voxel_size"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.size is not None:
        overrides["width"], overrides["height"] = args.size
    options = EvalOptions.quick(**overrides) if args.quick else EvalOptions(**overrides)
    report = run_eval(options)
    summaries = {name: scene["summary"] for name, scene in report["scenes"].items()}
    summaries.update({name: {**scene["summary"], "objects": scene["objects"]}
                      for name, scene in report.get("object_scenes", {}).items()})
    print(json.dumps(summaries, indent=2))
    for measures in sorted({s["measures"] for s in summaries.values() if s.get("measures")}):
        print(f"\nMeasured: {measures}.")
    print(f"\nWrote {options.out}/report.md and report.json")
    return 0


def register(subparsers) -> None:
    from .groundtruth import SCENES

    p = subparsers.add_parser(
        "eval", help="measure spatial consistency against Blender ground truth (closed-loop revisits, memory geometry)",
        description="Render evaluation scenes with Cycles along closed-loop camera paths, run the world loop with a "
                    "generator, and measure revisit consistency, memory accuracy and coverage against the renders; "
                    "scenes with moving objects are run with object memory on and off and measured per object "
                    "(position error, mask IoU and PSNR where it comes back into view, identity swaps).")
    p.add_argument("--scene", "--scenes", dest="scene", default=["room"], type=_scenes, metavar="SCENES",
                   help=f"comma-separated scenes ({', '.join(SCENES)}) or sets: all, static (closed loops), objects "
                        "(moving objects, each run with object memory on and off; oracle only) (default: room)")
    p.add_argument("--generator", default="oracle", type=non_empty("a generator"),
                   help="oracle, or a generator as `spatia generate` names it (preview, spatia-5b, wan-vace-1.3b, "
                        "wan-vace-14b) (default: oracle: the renders themselves, which measures the memory pipeline "
                        "alone; its generated frames are not scored)")
    p.add_argument("--size", type=_size, default=None, help="WxH (default 256x144; --quick 96x64)")
    p.add_argument("--frames", type=bounded_int(3, 10_000), default=None, help="frames along the loop (default 48; --quick 25)")
    p.add_argument("--rounds", type=bounded_int(1, 5_000), default=None, help="generation rounds (default 4; --quick 3)")
    p.add_argument("--samples", type=bounded_int(1, 4096), default=None, help="Cycles samples (default 16; --quick 4)")
    p.add_argument("--voxel-size", dest="voxel_size", type=bounded_float(1e-4, 10.0), default=None, help="memory voxel in metres (0.02)")
    p.add_argument("--no-align", action="store_true",
                   help="update the memory with the generated depth as is, without fitting it to the memory")
    p.add_argument("--depth", default=None, help="depth estimator for generators that return no depth (depth-pro)")
    p.add_argument("--out", default="out/eval", type=non_empty("a folder"), help="output folder (default: out/eval)")
    p.add_argument("--cache", default=None, help="ground-truth render cache (default: $SPATIA_EVAL_CACHE or "
                                                 "~/.cache/spatia/eval)")
    p.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0)
    p.add_argument("--scenario-seed", dest="scenario_seed", type=bounded_int(0, MAX_SEED), default=None,
                   help="the scenario scenes (scenario-00, ...) drawn with this seed instead of 2026: scenarios "
                        "nobody has looked at (their renders cached apart)")
    p.add_argument("--quick", action="store_true", help="tiny and fast: 96x64, 25 frames, 3 rounds, 4 samples")
    p.set_defaults(func=_cmd_eval)
