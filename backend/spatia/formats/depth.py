"""Depth maps from files: metric Z depth along the optical axis, float32 [H, W].

`.npy` (numpy) and `.exr` (OpenEXR, as Blender's compositor and most renderers write it) are
read; both are checked before anything uses them, so a wrong file stops a run up front:
integer maps (pixel units, millimetres, disparity: not metres), negative values, maps with no
usable pixel at all (all NaN, inf or 0) and maps of the wrong size are refused with a message
naming the file and the problem. 0, NaN and inf pixels mean "no depth" (renderers write inf
or a huge value where nothing was hit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEPTH_SUFFIXES = (".npy", ".exr")
# channels that hold depth in an EXR, in order of preference (Blender's Z pass, common names,
# then the first colour channel: Blender's own depth render writes it to R)
EXR_DEPTH_CHANNELS = ("Z", "Depth.Z", "depth", "Depth.V", "V", "Y", "R")
MAX_DEPTH_M = 1e7  # larger values are a renderer's "nothing hit" (Blender writes 1e10): no depth


class DepthFileError(ValueError):
    """A depth map cannot be used; the message names the file and the problem."""


def check_depth(depth: np.ndarray, what: str, width: int | None = None, height: int | None = None) -> np.ndarray:
    """`depth` as float32 [H, W] metres with 0 where there is no depth, or DepthFileError."""
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.dtype.kind != "f":
        kind = "integers" if depth.dtype.kind in "iub" else str(depth.dtype)
        raise DepthFileError(f"{what} holds {kind} ({depth.dtype}); depth must be floating-point metres "
                             "(an integer map is pixels, millimetres or disparity, not metres)")
    if depth.ndim != 2:
        raise DepthFileError(f"{what} must be one value per pixel [H, W], got shape {list(depth.shape)}")
    if height is not None and depth.shape != (height, width):
        raise DepthFileError(f"{what} is {depth.shape[1]}x{depth.shape[0]} but the shot is {width}x{height}")
    finite = np.isfinite(depth)
    negative = int((depth[finite] < 0).sum())
    if negative:
        raise DepthFileError(f"{what} has {negative} negative value(s) (min {float(depth[finite].min()):.4g}); "
                             "depth is the distance along the optical axis in metres, 0 meaning no depth")
    depth = np.where(finite & (depth < MAX_DEPTH_M), depth, 0.0).astype(np.float32)
    if not (depth > 0).any():
        raise DepthFileError(f"{what} has no usable pixel: every value is NaN, inf, 0 or beyond {MAX_DEPTH_M:g} m")
    return depth


def _read_exr(path: Path) -> np.ndarray:
    try:
        import OpenEXR
    except ImportError:  # pragma: no cover - a dependency of the package
        raise DepthFileError(f"{path.name}: reading .exr needs the OpenEXR package (pip install OpenEXR)") from None
    try:
        with OpenEXR.File(str(path), separate_channels=True) as exr:
            channels = {name: channel.pixels for name, channel in exr.channels().items()}
    except Exception as err:  # the bindings raise plain RuntimeError/OSError for damaged files
        raise DepthFileError(f"cannot read {path.name} as OpenEXR ({err})") from None
    for name in EXR_DEPTH_CHANNELS:
        if name in channels:
            return np.asarray(channels[name])
    if len(channels) == 1:
        return np.asarray(next(iter(channels.values())))
    raise DepthFileError(f"{path.name} has no depth channel: it holds {sorted(channels)}, expected one of "
                         f"{list(EXR_DEPTH_CHANNELS)}")


def read_depth(path, width: int | None = None, height: int | None = None, what: str | None = None) -> np.ndarray:
    """A checked depth map from a `.npy` or `.exr` file (see the module's docstring)."""
    path = Path(path)
    what = what or path.name
    suffix = path.suffix.lower()
    if suffix not in DEPTH_SUFFIXES:
        raise DepthFileError(f"{what}: {path.name} must be a .npy or .exr depth map (metres)")
    if not path.is_file():
        raise DepthFileError(f"{what}: {path} does not exist")
    if suffix == ".exr":
        raw = _read_exr(path)
    else:
        try:
            raw = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DepthFileError(f"{what}: cannot read {path.name} ({err})") from None
        if not isinstance(raw, np.ndarray):
            raise DepthFileError(f"{what}: {path.name} holds several arrays (.npz); save one array with np.save")
    return check_depth(raw, what, width, height)
