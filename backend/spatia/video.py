"""Frames on disk (PNG sequences) and H.264 video, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


class VideoError(ValueError):
    """Frames could not be read or written; the message names the file."""


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return frames


def write_frames(target, frames: np.ndarray, *, start: int = 0, single: bool = False) -> list[Path]:
    """Write frames as PNG: into folder `target` as NNNNNN.png from `start`, or, with
    single=True, the one frame to the file `target`. Each file appears whole or not at all."""
    frames = _check_frames(frames)
    target = Path(target)
    if single:
        paths = [target]
        target.parent.mkdir(parents=True, exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
        paths = [target / f"{start + i:06d}.png" for i in range(len(frames))]
    for frame, path in zip(frames, paths):
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(frame).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
    return paths


def read_image(path) -> np.ndarray:
    """An image file as uint8 [H, W, 3] (alpha dropped, grey expanded)."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise VideoError(f"cannot read image {path}: {exc}") from exc


def read_frames(paths) -> np.ndarray:
    paths = list(paths)
    if not paths:
        raise VideoError("no frames to read")
    return np.stack([read_image(p) for p in paths])


def write_video(path, frames: np.ndarray, fps: float, *, quality: int = 8) -> Path:
    """Write an H.264 mp4 (yuv420p, playable everywhere). Odd sizes are padded by one pixel."""
    import imageio.v3 as iio

    frames = _check_frames(frames)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    iio.imwrite(tmp, frames, extension=".mp4", plugin="FFMPEG", fps=float(fps), codec="libx264",
                quality=quality, pixelformat="yuv420p", macro_block_size=1)
    os.replace(tmp, path)
    return path


def read_video(path) -> np.ndarray:
    import imageio.v3 as iio

    try:
        return np.asarray(iio.imread(path, plugin="FFMPEG"))
    except Exception as exc:  # imageio raises several types for unreadable files
        raise VideoError(f"cannot read video {path}: {exc}") from exc
