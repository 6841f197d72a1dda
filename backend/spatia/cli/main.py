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
from spatia.formats.arguments import MAX_SEED, bounded_float, bounded_int, non_empty


COMMAND_MODULES = [name for name in ("spatia.service.commands", "spatia.eval.commands", "spatia.batch.commands",
                                     "spatia.cli.objects")
                   if importlib.util.find_spec(name.rsplit(".", 1)[0]) and importlib.util.find_spec(name)]


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""



def _cmd_demo(args) -> int:
    from spatia.demo.run import DemoOptions, run_demo

    from spatia.engine.run import check_out_folder

    options = DemoOptions(out=check_out_folder(args.out), width=args.width, height=args.height, rounds=args.rounds,
                          seed=args.seed, samples=args.samples)
    report = run_demo(options)
    print(json.dumps(report["summary"], indent=2))
    print(f"\nWrote {options.out}/ (video.mp4, memory.ply, cameras.json, report.json, demo.blend, world/)")
    return 0


def _cmd_generate(args) -> int:
    from spatia.engine.progress import progress_bar
    from spatia.engine.run import run_case, run_shot

    for flag, value in (("--shot", args.shot), ("--case", args.case), ("--out", args.out)):
        if value is not None and not value.strip():
            raise CliError(f"{flag} is empty: name a {'folder' if flag != '--shot' else 'shot JSON file'}")
    if args.generator is not None and not args.generator.strip():
        raise CliError("--generator is empty: name a generator (preview, spatia-5b, wan-vace-1.3b, wan-vace-14b)")
    if args.server:
        _check_server_url(args.server)
    if args.vram != "auto":
        from spatia.formats import presets

        if args.vram not in presets.VRAM_MODES:
            presets.vram_preset(args.vram)  # an unknown name: PresetError lists the known ones
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
                                      update_mode=args.update_mode, quality=args.quality)
                else:
                    report = run_shot(Path(args.shot), Path(args.out), generator=args.generator, progress=both,
                                      retrieval=args.retrieval, update_mode=args.update_mode, quality=args.quality,
                                      seed=args.seed, steps=args.steps)
    finally:
        close()
    print(json.dumps(report["summary"], indent=2))
    return 0


def _check_server_url(url: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as err:
        raise CliError(f"--server {url!r} is not a URL ({err}); e.g. http://127.0.0.1:8765") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"--server {url!r} is not an http(s) URL; e.g. http://127.0.0.1:8765")


def _cmd_cameras_convert(args) -> int:
    from spatia.formats.camera_convert import convert

    out = convert(Path(args.input), Path(args.output), args.to, fps=args.fps)
    print(f"wrote {out}")
    return 0


def _cmd_models(args) -> int:
    from spatia.engine.models.registry import PRESETS, download, find_weights, get_preset
    from spatia.engine.models.verify import verify_preset

    unknown = [name for name in getattr(args, "names", []) if name not in PRESETS]
    if unknown:
        raise CliError(f"unknown model preset {', '.join(map(repr, unknown))}; known: {', '.join(sorted(PRESETS))}")
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
    demo.add_argument("--width", type=bounded_int(16, 4096), default=320)
    demo.add_argument("--height", type=bounded_int(16, 4096), default=176)
    demo.add_argument("--rounds", type=bounded_int(1, 100), default=4, help="generation rounds (default 4)")
    demo.add_argument("--samples", type=bounded_int(1, 4096), default=16, help="Cycles samples for the first frame")
    demo.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0)
    demo.set_defaults(func=_cmd_demo)

    gen = sub.add_parser("generate", help="generate a video along a camera path")
    src = gen.add_mutually_exclusive_group(required=True)
    src.add_argument("--case", help="a folder in the Spatia reference test-case format")
    src.add_argument("--shot", help="a shot spec JSON file")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--generator", default=None, help="generator preset (default: the shot's, else preview)")
    gen.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=None,
                     help="the seed of every round (default: a shot's own, else the generator's; a case's own, the authors' 20917)")
    gen.add_argument("--quality", default=None,
                     help="quality preset (draft, standard, final; see presets/README.md): its steps and guidance "
                          "as the generator runs them (default: a shot's own, else standard)")
    gen.add_argument("--steps", type=bounded_int(1, 1000), default=None,
                     help="denoising steps (default: the shot's own, else the quality preset's)")
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
    conv.add_argument("input", type=non_empty("a camera file or folder"), help="a reference-case folder, shot JSON, COLMAP text folder or transforms.json")
    conv.add_argument("output", type=non_empty("the file or folder to write"))
    conv.add_argument("--to", required=True, choices=["case", "shot", "colmap", "nerfstudio"])
    conv.add_argument("--fps", type=bounded_float(0, 1000, low_open=True), default=24.0)
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
    except OSError as exc:  # a file the command was pointed at: named, without a traceback
        if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename and Path(exc.filename).is_file():
            message = f"{exc.filename} is a file where a folder is needed"
        else:
            message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        print(f"spatia {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
