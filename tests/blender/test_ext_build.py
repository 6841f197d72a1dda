"""The extension package: built with Blender's own tool, valid, and holding only the extension."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpy

ROOT = Path(__file__).resolve().parents[2]


def test_build_extension_zip(tmp_path):
    pytest.importorskip("bpy")
    out = tmp_path / "dist"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_extension.py"), "--out", str(out)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = tomllib.loads((ROOT / "spatia_blender" / "blender_manifest.toml").read_text())
    assert manifest["id"] == "spatia" and manifest["type"] == "add-on" and manifest["license"] == ["SPDX:Apache-2.0"]
    assert manifest["blender_version_min"] == "4.2.0" and set(manifest["permissions"]) == {"network", "files"}
    target = out / f"spatia-{manifest['version']}.zip"
    assert target.is_file()
    with zipfile.ZipFile(target) as archive:
        names = set(archive.namelist())
    source = ROOT / "spatia_blender"
    expected = {p.relative_to(source).as_posix() for p in source.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    # plus the shared camera math as a wheel, named in the zip's manifest
    wheels = {name for name in names if name.startswith("wheels/")}
    assert len(wheels) == 1 and next(iter(wheels)).startswith("wheels/spatia_geometry-")
    # and every preset, so the installed extension offers all camera paths (not only its built-in ones)
    presets = {name for name in names if name.startswith("presets/")}
    shipped = {f"presets/{p.relative_to(ROOT / 'presets').as_posix()}" for p in (ROOT / "presets").rglob("*")
               if p.is_file() and p.suffix != ".md"}
    assert presets == shipped and len([n for n in presets if n.startswith("presets/cameras/")]) == 9
    assert names - wheels - presets == expected
    with zipfile.ZipFile(target) as archive:
        with zipfile.ZipFile(__import__("io").BytesIO(archive.read(next(iter(wheels))))) as wheel:
            assert "spatia_geometry/camera_math.py" in wheel.namelist()
        assert b"wheels = [" in archive.read("blender_manifest.toml")
    assert {"__init__.py", "blender_manifest.toml", "operators/__init__.py", "operators/memory.py", "client.py"} <= names
    assert not any(name.startswith(("tests/", "backend/")) or name.endswith(".pyc") for name in names)
    # the zip validates on its own
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from build_extension import find_blender_ext
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    check = subprocess.run([sys.executable, str(find_blender_ext()), "validate", str(target)], capture_output=True, text=True)
    assert check.returncode == 0 and "Success" in check.stdout, check.stdout + check.stderr


@pytest.mark.bpy
def test_zip_installs_and_enables_as_an_extension(tmp_path):
    """Installed through Blender's extension system the package is bl_ext.user_default.spatia:
    it registers, finds its preferences and keeps user data in the extension's user folder."""
    pytest.importorskip("bpy")
    out = tmp_path / "dist"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_extension.py"), "--out", str(out)], check=True,
                   capture_output=True)
    (target,) = out.glob("spatia-*.zip")
    code = f"""
import importlib, sys, bpy
result = bpy.ops.extensions.package_install_files(filepath={str(target)!r}, repo="user_default", enable_on_install=True)
assert result == {{"FINISHED"}}, result
assert "bl_ext.user_default.spatia" in [a.module for a in bpy.context.preferences.addons]
assert hasattr(bpy.types.Scene, "spatia") and hasattr(bpy.types, "SPATIA_PT_main")
runtime = importlib.import_module("bl_ext.user_default.spatia.runtime")
import glob, os
# Blender installed the bundled wheel of the shared camera math beside the extension
assert glob.glob(os.path.join({str(tmp_path / "blender")!r}, "**", "site-packages", "spatia_geometry", "camera_math.py"),
                 recursive=True, include_hidden=True)
assert type(runtime.prefs()).__name__ == "SpatiaPreferences"
presets = importlib.import_module("bl_ext.user_default.spatia.presets")
paths = presets.camera_presets(presets.find_presets_dir())
assert len(paths) >= 9, sorted(paths)  # every camera path of presets/, shipped in the zip
print("USERDIR", runtime.user_dir())
# what the artist made is not in the extension's folders, so uninstalling keeps it
bpy.ops.wm.save_as_mainfile(filepath={str(tmp_path / "shot" / "shot.blend")!r})
clip = runtime.shot_dir(bpy.context.scene, "worlds", "w", "clips")
open(clip + "/video.mp4", "wb").write(b"frames")
print("DATADIR", runtime.data_dir())
repo = [r.module for r in bpy.context.preferences.extensions.repos].index("user_default")
result = bpy.ops.extensions.package_uninstall(repo_index=repo, pkg_id="spatia")
assert result == {{"FINISHED"}}, result
assert "bl_ext.user_default.spatia" not in [a.module for a in bpy.context.preferences.addons]
print("UNINSTALLED", flush=True)
import os
os._exit(0)  # bpy 4.2 as a module can crash in its own teardown after an uninstall; the checks are done
"""
    (tmp_path / "shot").mkdir()
    env = {**__import__("os").environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender")}
    env.pop("SPATIA_BLENDER_USER_DIR", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    user_dir = next(line.split(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("USERDIR "))
    assert user_dir.startswith(str(tmp_path / "blender")) and "/.user/" in user_dir
    assert not user_dir.startswith(str(tmp_path / "blender" / "extensions" / "user_default" / "spatia"))
    assert "UNINSTALLED" in result.stdout
    data_dir = next(line.split(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("DATADIR "))
    assert not data_dir.startswith(str(tmp_path / "blender"))  # the local backend's worlds and token
    assert (tmp_path / "shot" / "spatia" / "worlds" / "w" / "clips" / "video.mp4").read_bytes() == b"frames"
