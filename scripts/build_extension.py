"""Build the Blender extension: dist/spatia-<version>.zip from spatia_blender/.

Runs Blender's own extension tool (blender_ext.py, shipped inside the `bpy` wheel and with
every Blender) with this Python: `validate` on the source folder, `build`, then `validate`
on the zip. Install the zip with Edit > Preferences > Get Extensions > Install from Disk,
or `blender --command extension install-file -r user_default dist/spatia-<version>.zip`.

    python scripts/build_extension.py [--out dist] [--blender-ext PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "spatia_blender"


def find_blender_ext() -> Path:
    """blender_ext.py inside the installed bpy module (bpy/<version>/scripts/addons_core/bl_pkg/cli/)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the bpy module is not installed (pip install bpy); or pass --blender-ext "
                         "<blender>/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    raise SystemExit("blender_ext.py not found in the bpy module; pass --blender-ext")


def run(tool: Path, *args: str) -> None:
    command = [sys.executable, str(tool), *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}")


def build(out: Path, tool: Path | None = None) -> Path:
    tool = tool or find_blender_ext()
    manifest = tomllib.loads((SOURCE / "blender_manifest.toml").read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{manifest['id']}-{manifest['version']}.zip"
    target.unlink(missing_ok=True)
    run(tool, "validate", str(SOURCE))
    run(tool, "build", "--source-dir", str(SOURCE), "--output-filepath", str(target))
    run(tool, "validate", str(target))
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--blender-ext", type=Path, default=None, help="path to Blender's blender_ext.py")
    args = parser.parse_args(argv)
    target = build(args.out.resolve(), args.blender_ext)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
