"""Build the Blender extension: dist/spatia-<version>.zip from spatia_blender/.

The camera math the extension shares with the backend (the package spatia_geometry, numpy
only) travels inside the zip as a wheel, which Blender installs with the extension; the
presets (every camera path, quality, model and VRAM preset) travel as the folder presets/.

Runs Blender's own extension tool (blender_ext.py, shipped inside the `bpy` wheel and with
every Blender) with this Python: `validate` on the source folder, `build`, then `validate`
on the zip. Install the zip with Edit > Preferences > Get Extensions > Install from Disk,
or `blender --command extension install-file -r user_default dist/spatia-<version>.zip`.

    python scripts/build_extension.py [--out dist] [--blender-ext PATH]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "spatia_blender"
SHARED = ROOT / "spatia_geometry"
PRESETS = ROOT / "presets"  # camera paths, quality, models, VRAM: the extension reads them from presets/ beside it
SHARED_VERSION = "0.1.0"


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


def write_wheel(package: Path, version: str, folder: Path) -> Path:
    """A pure-Python wheel of one package (PEP 427), written directly: no build backend needed."""
    name = package.name
    dist_info = f"{name}-{version}.dist-info"
    files = {f"{name}/{p.relative_to(package).as_posix()}": p.read_bytes()
             for p in sorted(package.rglob("*.py")) if "__pycache__" not in p.parts}
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: spatia build_extension\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for arcname, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in files.items():
            archive.writestr(zipfile.ZipInfo(arcname, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return wheel


def stage(folder: Path) -> Path:
    """The extension's source plus the shared package's wheel, named in the manifest."""
    staged = folder / "spatia"
    shutil.copytree(SOURCE, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(PRESETS, staged / "presets", ignore=shutil.ignore_patterns(".*", "*.md"))
    (staged / "wheels").mkdir()
    wheel = write_wheel(SHARED, SHARED_VERSION, staged / "wheels")
    manifest = staged / "blender_manifest.toml"
    text = manifest.read_text(encoding="utf-8").replace(
        "\n[permissions]", f'\nwheels = ["./wheels/{wheel.name}"]\n\n[permissions]', 1)
    manifest.write_text(text, encoding="utf-8")
    return staged


def build(out: Path, tool: Path | None = None) -> Path:
    tool = tool or find_blender_ext()
    manifest = tomllib.loads((SOURCE / "blender_manifest.toml").read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{manifest['id']}-{manifest['version']}.zip"
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        staged = stage(Path(temp))
        run(tool, "validate", str(staged))
        run(tool, "build", "--source-dir", str(staged), "--output-filepath", str(target))
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
