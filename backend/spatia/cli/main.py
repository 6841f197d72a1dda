"""`spatia`: the command line.

    spatia demo [--out DIR]                       the built-in demo (CPU, no weights)
    spatia generate --case DIR | --shot FILE      generate a video along a camera path
    spatia serve                                  the local backend service (HTTP API)
    spatia cameras convert IN OUT --to FORMAT     convert camera files
    spatia models list | download NAME | verify   model weights
    spatia objects list | show | forget WORLD     a world's remembered moving objects
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from spatia import __version__
from spatia.engine.errors import ModelUnavailable


COMMAND_MODULES = [name for name in ("spatia.service.commands", "spatia.eval.commands", "spatia.batch.commands",
                                     "spatia.cli.objects")
                   if importlib.util.find_spec(name.rsplit(".", 1)[0]) and importlib.util.find_spec(name)]


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _cmd_demo(args) -> int:
    from spatia.demo.run import DemoOptions, run_demo

    options = DemoOptions(out=Path(args.out), width=args.width, height=args.height, rounds=args.rounds,
                          seed=args.seed, samples=args.samples)
    report = run_demo(options)
    print(json.dumps(report["summary"], indent=2))
    print(f"\nWrote {options.out}/ (video.mp4, memory.ply, demo.blend, report.json)")
    return 0


def _cmd_generate(args) -> int:
    from spatia.engine.progress import progress_bar
    from spatia.engine.run import run_case, run_shot

    update, close = progress_bar(desc="generating")
    try:
        if args.server:
            if not args.shot:
                raise CliError("--server needs --shot (a reference case runs locally)")
            from spatia.service.client import SpatiaClientError, generate_remote

            try:
                report = generate_remote(args.server, Path(args.shot), Path(args.out), token=args.token,
                                         progress=update)
            except SpatiaClientError as exc:
                raise CliError(str(exc)) from exc
        else:
            from spatia.formats.runs import RunRecord

            # a record the dashboard of a service on this machine shows (docs/dashboard.md)
            name = Path(args.shot).stem if args.shot else Path(args.case).name
            with RunRecord("cli", name, world=str(Path(args.out).resolve())) as run:
                def both(fraction: float, stage: str) -> None:
                    update(fraction, stage)
                    run.progress(fraction, stage)

                if args.case:
                    report = run_case(Path(args.case), Path(args.out), generator=args.generator, seed=args.seed,
                                      steps=args.steps, vram=args.vram, progress=both, retrieval=args.retrieval,
                                      update_mode=args.update_mode)
                else:
                    report = run_shot(Path(args.shot), Path(args.out), generator=args.generator, progress=both,
                                      retrieval=args.retrieval, update_mode=args.update_mode)
    finally:
        close()
    print(json.dumps(report["summary"], indent=2))
    return 0


def _cmd_cameras_convert(args) -> int:
    from spatia.formats.camera_convert import convert

    out = convert(Path(args.input), Path(args.output), args.to, fps=args.fps)
    print(f"wrote {out}")
    return 0


def _cmd_models(args) -> int:
    from spatia.engine.models.registry import PRESETS, download, find_weights, get_preset
    from spatia.engine.models.verify import verify_preset

    if args.models_command == "list":
        print(f"{'preset':34} {'role':10} {'VRAM GB':>7}  {'present':8} weights")
        for preset in PRESETS.values():
            present = "yes" if not preset.sources or find_weights(preset) else "no"
            weights = ", ".join(preset.repo_ids) or "(none)"
            print(f"{preset.name:34} {preset.role:10} {preset.vram_gb:7.1f}  {present:8} {weights}")
        return 0
    if args.models_command == "download":
        for name in args.names:
            for folder in download(get_preset(name)):
                print(f"{name}: {folder}")
        return 0
    names = args.names or list(PRESETS)
    failed = 0
    for name in names:
        report = verify_preset(name)
        status = "ok" if report.ok else ("missing" if not report.present else "BAD")
        print(f"{name}: {status} ({report.files} files)")
        for problem in report.problems:
            print(f"  {problem}")
        damaged = report.present and report.problems
        missing_but_asked_for = bool(args.names) and not report.present
        failed += bool(damaged or missing_but_asked_for)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spatia", description="Video generation with an updatable 3D spatial memory.")
    parser.add_argument("--version", action="version", version=f"spatia {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the built-in demo: a Blender room, a camera that looks away and back (CPU, no weights)")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--width", type=int, default=320)
    demo.add_argument("--height", type=int, default=176)
    demo.add_argument("--rounds", type=int, default=4, help="generation rounds (default 4)")
    demo.add_argument("--samples", type=int, default=16, help="Cycles samples for the first frame")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)

    gen = sub.add_parser("generate", help="generate a video along a camera path")
    src = gen.add_mutually_exclusive_group(required=True)
    src.add_argument("--case", help="a folder in the Spatia reference test-case format")
    src.add_argument("--shot", help="a shot spec JSON file")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--generator", default=None, help="generator preset (default: the shot's, else preview)")
    gen.add_argument("--seed", type=int, default=None,
                     help="the seed of every round (default: a case's own, the authors' 20917; a shot's seed)")
    gen.add_argument("--steps", type=int, default=None)
    gen.add_argument("--retrieval", choices=["reference", "iou"], default=None,
                     help="how reference frames are scored (default: the generator's; spatia-5b: reference)")
    gen.add_argument("--update-mode", choices=["incremental", "mapanything-rebuild"], default="incremental",
                     help="memory update: incremental (default) or the paper's MapAnything rebuild")
    gen.add_argument("--vram", default="auto", help="VRAM preset (8gb ... 80gb, see presets/vram.json), a mode "
                     "(gpu, model, group, sequential) or auto (default); a shot file's own setting wins")
    gen.add_argument("--server", help="run on a Spatia service at this URL (with --shot), e.g. http://127.0.0.1:8765")
    gen.add_argument("--token", default=os.environ.get("SPATIA_TOKEN"), help="the service's token (default: $SPATIA_TOKEN)")
    gen.set_defaults(func=_cmd_generate)

    models = sub.add_parser("models", help="model weights: list presets, download, verify")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="presets and whether their weights are present")
    dl = models_sub.add_parser("download", help="fetch presets' weights into the Hugging Face cache (needs internet)")
    dl.add_argument("names", nargs="+")
    ver = models_sub.add_parser("verify", help="check downloaded weights (sha256, safetensors headers)")
    ver.add_argument("names", nargs="*")
    models.set_defaults(func=_cmd_models)

    cams = sub.add_parser("cameras", help="camera file tools")
    cams_sub = cams.add_subparsers(dest="cameras_command", required=True)
    conv = cams_sub.add_parser("convert", help="convert between camera formats")
    conv.add_argument("input", help="a reference-case folder, shot JSON, COLMAP text folder or transforms.json")
    conv.add_argument("output")
    conv.add_argument("--to", required=True, choices=["case", "shot", "colmap", "nerfstudio"])
    conv.add_argument("--fps", type=float, default=24.0)
    conv.set_defaults(func=_cmd_cameras_convert)

    # Command groups that live with their packages: each module's register(subparsers) adds them.
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CliError, ValueError, FileNotFoundError, ModelUnavailable) as exc:
        print(f"spatia {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
