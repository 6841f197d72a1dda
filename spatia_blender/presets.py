"""Preset names (generator, quality, VRAM) and camera path presets, as data.

Names come from a presets folder when one is found (the repository's `presets/`, or one
set in the preferences), else from the built-in defaults below. A kind's presets may be a
folder of files (`presets/quality/high.json` -> "high") or one file (`presets/quality.json`
or `.toml`) whose top-level keys, or whose list of {"name": ...} entries, are the names.

Camera path presets move the camera relative to where it is at the first frame. Built in:
orbit, dolly in, pan, look away and back. A file in `presets/cameras/` (or `camera_paths/`)
is JSON: {"name", "description", "type": one of the built-ins with its parameters} or
{"name", "keys": [{"t": 0..1, "offset": [x, y, z], "yaw": deg, "pitch": deg, "roll": deg}]},
offsets in metres in the camera's own frame (x right, y up, z backwards), angles in degrees
(yaw turns left, pitch tilts up), interpolated linearly in t.
Nothing here imports bpy.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

BUILTIN = {
    "generator": [
        ("preview", "Preview", "Memory projection with classical hole filling; CPU, no weights, not generative"),
        ("spatia-5b", "Spatia 5B", "Wan2.2-TI2V-5B with the Spatia control branch (about 24 GB VRAM)"),
        ("wan-vace-1.3b", "Wan VACE 1.3B", "Wan2.1 VACE 1.3B (about 12 GB VRAM)"),
        ("wan-vace-14b", "Wan VACE 14B", "Wan2.1 VACE 14B (about 40 GB VRAM)"),
    ],
    "quality": [
        ("standard", "Standard", "The default balance of speed and quality"),
        ("draft", "Draft", "Few denoising steps, for blocking out"),
        ("final", "Final", "The Spatia reference settings: 40 steps, 1248x704, slower"),
    ],
    "vram": [
        ("auto", "Auto", "Choose from the free VRAM"),
        ("low", "Low", "Offload weights to system memory; slow, fits small GPUs"),
        ("high", "High", "Keep everything on the GPU"),
    ],
}
FOLDER_NAMES = {"generator": ("models", "generators", "generator"), "quality": ("quality",), "vram": ("vram",)}
CAMERA_FOLDERS = ("cameras", "camera_paths", "camera")
PRESET_SUFFIXES = (".json", ".toml")


def find_presets_dir(configured: str = "", module_file: str = __file__) -> Path | None:
    """The presets folder: the configured one, else `presets/` beside or above this package."""
    candidates = []
    if configured:
        candidates.append(Path(os.path.expanduser(configured)))
    here = Path(module_file).resolve().parent
    candidates += [here / "presets", here.parent / "presets"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def _load(path: Path):
    if path.suffix == ".toml":
        if tomllib is None:
            raise ValueError("TOML presets need Python 3.11")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    return json.loads(path.read_text(encoding="utf-8"))


def _title(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").title()


def _items_from(data) -> list[tuple[str, str, str]]:
    items = []
    if isinstance(data, dict):
        entries = data.get("presets", data)
        if isinstance(entries, dict):
            for name, value in entries.items():
                desc = value.get("description", "") if isinstance(value, dict) else ""
                label = value.get("label", _title(name)) if isinstance(value, dict) else _title(name)
                items.append((str(name), str(label), str(desc)))
            return items
        data = entries
    if isinstance(data, list):
        for entry in data:
            if isinstance(entry, dict) and "name" in entry:
                items.append((str(entry["name"]), str(entry.get("label", _title(entry["name"]))), str(entry.get("description", ""))))
            elif isinstance(entry, str):
                items.append((entry, _title(entry), ""))
    return items


def preset_items(kind: str, presets_dir: Path | None) -> list[tuple[str, str, str]]:
    """(identifier, label, description) of every preset of `kind`; built-ins if none are found.

    The backend's default (first built-in) comes first when present, so it is the enum default."""
    if kind not in BUILTIN:
        raise KeyError(f"unknown preset kind {kind!r}")
    items: list[tuple[str, str, str]] = []
    if presets_dir is not None:
        for folder_name in FOLDER_NAMES[kind]:
            folder = presets_dir / folder_name
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    if path.suffix in PRESET_SUFFIXES and not path.name.startswith("."):
                        desc = ""
                        try:
                            data = _load(path)
                            desc = str(data.get("description", "")) if isinstance(data, dict) else ""
                            label = str(data.get("label", _title(path.stem))) if isinstance(data, dict) else _title(path.stem)
                        except (OSError, ValueError):
                            label = _title(path.stem)
                        items.append((path.stem, label, desc))
            for suffix in PRESET_SUFFIXES:
                path = presets_dir / f"{folder_name}{suffix}"
                if path.is_file():
                    try:
                        items += _items_from(_load(path))
                    except (OSError, ValueError):
                        pass
    seen, unique = set(), []
    for item in items or BUILTIN[kind]:
        if item[0] and item[0] not in seen:
            seen.add(item[0])
            unique.append(item)
    default = BUILTIN[kind][0][0]
    unique.sort(key=lambda item: item[0] != default)  # stable: only moves the default first
    return unique


# --- camera paths ----------------------------------------------------------------------------
BUILTIN_CAMERA_PATHS = {
    "orbit": {"name": "Orbit", "type": "orbit", "degrees": 360.0, "distance": 3.0,
              "description": "Circle around the point 3 m in front of the camera, looking at it"},
    "dolly_in": {"name": "Dolly in", "type": "dolly", "distance": 2.0,
                 "description": "Move 2 m straight ahead"},
    "pan": {"name": "Pan", "type": "pan", "degrees": 60.0,
            "description": "Turn 60 degrees to the right in place"},
    "look_away_and_back": {"name": "Look away and back", "type": "look_away", "degrees": 70.0,
                           "description": "Turn away to one side, then the other, and come back to the start (a closed loop)"},
}


def _rotation(axis: str, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _local(base: np.ndarray, offset, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """base (Blender camera matrix_world, unit scale) moved by `offset` in its own frame and turned.

    Yaw turns about the world up axis (z), pitch about the camera's x, roll about its view axis.
    """
    m = base.copy()
    m[:3, 3] = base[:3, 3] + base[:3, :3] @ np.asarray(offset, dtype=np.float64)
    rot = _rotation("z", yaw) @ base[:3, :3] @ _rotation("x", pitch) @ _rotation("z", roll)
    m[:3, :3] = rot
    return m


def camera_path(preset: dict, base_matrix, frame_count: int) -> list[np.ndarray]:
    """Blender matrix_world per frame for `preset`, starting at `base_matrix`."""
    if frame_count < 1:
        raise ValueError("the frame range is empty")
    base = np.array(base_matrix, dtype=np.float64)
    base[:3, :3] /= np.linalg.norm(base[:3, :3], axis=0, keepdims=True)
    ts = [i / max(frame_count - 1, 1) for i in range(frame_count)]
    kind = preset.get("type", "keys" if "keys" in preset else None)
    if kind == "orbit":
        degrees, distance = float(preset.get("degrees", 360.0)), float(preset.get("distance", 3.0))
        pivot = base[:3, 3] - base[:3, 2] * distance  # the camera looks down its -z
        out = []
        for t in ts:
            rot = _rotation("z", degrees * t)
            m = base.copy()
            m[:3, :3] = rot @ base[:3, :3]
            m[:3, 3] = pivot + rot @ (base[:3, 3] - pivot)
            out.append(m)
        return out
    if kind == "dolly":
        distance = float(preset.get("distance", 2.0))
        return [_local(base, (0.0, 0.0, -distance * t)) for t in ts]
    if kind == "pan":
        degrees = float(preset.get("degrees", 60.0))
        return [_local(base, (0.0, 0.0, 0.0), yaw=-degrees * t) for t in ts]
    if kind == "look_away":
        degrees = float(preset.get("degrees", 70.0))
        return [_local(base, (0.0, 0.0, 0.0), yaw=degrees * math.sin(2 * math.pi * t)) for t in ts]
    if kind == "keys":
        keys = sorted(preset["keys"], key=lambda k: float(k.get("t", 0.0)))
        if not keys:
            raise ValueError(f"camera path {preset.get('name')!r} has no keys")
        key_t = np.array([float(k.get("t", 0.0)) for k in keys])
        table = np.array([[*map(float, k.get("offset", (0, 0, 0))), float(k.get("yaw", 0)), float(k.get("pitch", 0)),
                           float(k.get("roll", 0))] for k in keys])
        out = []
        for t in ts:
            v = [np.interp(t, key_t, table[:, i]) for i in range(6)]
            out.append(_local(base, v[:3], yaw=v[3], pitch=v[4], roll=v[5]))
        return out
    raise ValueError(f"camera path {preset.get('name')!r}: unknown type {kind!r} "
                     "(orbit, dolly, pan, look_away, or give keys)")


def camera_presets(presets_dir: Path | None) -> dict[str, dict]:
    """Built-in camera paths plus those in the presets folder (files override built-ins by id)."""
    found = dict(BUILTIN_CAMERA_PATHS)
    if presets_dir is not None:
        for folder_name in CAMERA_FOLDERS:
            folder = presets_dir / folder_name
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix not in PRESET_SUFFIXES:
                    continue
                try:
                    data = _load(path)
                except (OSError, ValueError):
                    continue
                if isinstance(data, dict) and ("type" in data or "keys" in data):
                    data.setdefault("name", _title(path.stem))
                    found[path.stem] = data
    return found
