"""`spatia batch`: the command line of batch production."""

from __future__ import annotations

import json
from pathlib import Path

from spatia.formats.arguments import bounded_int


def _positive(text: str) -> int:
    return bounded_int(1, 100_000)(text)


def _cmd_batch(args) -> int:
    from spatia.engine.run import check_out_folder

    from .jobs import BatchOptions
    from .runner import run_batch

    check_out_folder(args.out)
    if args.blender is not None and not Path(args.blender).is_file():
        raise FileNotFoundError(f"--blender {args.blender}: no such file")
    options = BatchOptions(generator=args.generator, samples=args.samples, resolution=args.resolution,
                           worlds_dir=args.worlds, blender=args.blender)
    result = run_batch(args.shots, Path(args.out), options, force=args.force, ray=args.ray, ray_cpus=args.ray_cpus)
    width = max((len(entry["name"]) for entry in result.entries), default=4)
    for entry in result.entries:
        detail = entry.get("error", "") if entry["status"] == "failed" else ""
        where = f" [{entry['stage']}]" if entry["status"] == "failed" else ""
        print(f"{entry['name']:{width}}  {entry['status']:7}{where}  {detail}".rstrip())
    counts = {status: sum(e["status"] == status for e in result.entries) for status in ("ok", "skipped", "failed")}
    print(json.dumps(counts))
    print(f"wrote {Path(args.out) / 'summary.json'}")
    return result.exit_code


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch", help="generate shots from .blend files (the extension's shot settings), resumably, here or on Ray",
        description="Each .blend's scene holds a shot in the Spatia extension's settings (camera, prompts, "
                    "generator, quality, rounds). Every shot runs in a fresh process: the world is initialised "
                    "from a Cycles render of the active camera (or continues the world the settings name), all "
                    "rounds run, and DIR/shots/<name>/ receives frames, video.mp4, memory.ply, the updated .blend "
                    "and report.json; DIR/summary.json lists every shot. Finished shots (same .blend, options, "
                    "presets and code) are skipped. The exit status is the number of failed shots (at most 255).")
    p.add_argument("shots", nargs="+", metavar="SHOTS", help=".blend files, or folders of them")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--generator", default=None, help="generator for every shot (default: each shot's own)")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", dest="force", action="store_false",
                        help="skip shots already finished with the same inputs (the default)")
    resume.add_argument("--force", dest="force", action="store_true", help="run every shot again")
    p.set_defaults(force=False)
    p.add_argument("--samples", type=_positive, default=None,
                   help="Cycles samples of the first-frame render (default: the quality preset's)")
    p.add_argument("--resolution", choices=["scene", "quality"], default="scene",
                   help="frame size: the .blend's render size (default), or the quality preset's pixel count at "
                        "the scene's aspect")
    p.add_argument("--worlds", default=None, metavar="DIR",
                   help="where worlds named in shot settings live (e.g. a service's data_dir/worlds); paths "
                        "relative to the .blend's folder are found without it")
    p.add_argument("--blender", default=None, metavar="PATH",
                   help="run each shot in this Blender binary (its Python must match this one) instead of the bpy module")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run shots as Ray tasks: 'local' starts Ray here; else a cluster address ('auto', "
                        "'ray://head:10001')")
    p.add_argument("--ray-cpus", dest="ray_cpus", type=_positive, default=None, metavar="N",
                   help="ask Ray for N CPUs per shot instead of one GPU (CPU-only clusters are detected without it)")
    p.set_defaults(func=_cmd_batch)
