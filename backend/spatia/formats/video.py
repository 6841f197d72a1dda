"""Frames on disk (PNG sequences) and H.264 video, written atomically."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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
    def save(item):
        frame, path = item
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(frame).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)

    # PNG encoding releases the GIL: a few threads keep every core busy.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(save, zip(frames, paths)))
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


def write_video(path, frames, fps: float, *, quality: int = 8) -> Path:
    """Write an H.264 mp4 (yuv420p, playable everywhere) from an array [F,H,W,3] or any
    iterable of uint8 [H,W,3] frames, streamed so a long video never sits in memory whole.
    Odd sizes are padded by one pixel."""
    import imageio_ffmpeg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer, size, count = None, None, 0
    try:
        for frame in frames:
            frame = np.asarray(frame)
            if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
                raise VideoError(f"frame {count} must be uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}")
            if writer is None:
                size = frame.shape[:2]
                padded = (size[1] + size[1] % 2, size[0] + size[0] % 2)
                writer = imageio_ffmpeg.write_frames(str(tmp), padded, fps=float(fps), codec="libx264",
                                                     quality=quality, pix_fmt_out="yuv420p", macro_block_size=1)
                writer.send(None)
            elif frame.shape[:2] != size:
                raise VideoError(f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, the video is {size[1]}x{size[0]}")
            if size[0] % 2 or size[1] % 2:
                frame = np.pad(frame, ((0, size[0] % 2), (0, size[1] % 2), (0, 0)), mode="edge")
            writer.send(np.ascontiguousarray(frame))
            count += 1
        if writer is None:
            raise VideoError(f"no frames to write to {path}")
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return path


def iter_frames(paths):
    """Frames read one at a time (for streaming into write_video)."""
    for p in paths:
        yield read_image(p)


def read_video(path) -> np.ndarray:
    import imageio.v3 as iio

    try:
        return np.asarray(iio.imread(path, plugin="FFMPEG"))
    except Exception as exc:  # imageio raises several types for unreadable files
        raise VideoError(f"cannot read video {path}: {exc}") from exc


# The reference writes its control and score videos with diffusers' export_to_video (imageio's
# ffmpeg writer: libx264, yuv420p, quality 5 = CRF 25, sizes padded up to multiples of 16 by
# ffmpeg's scaler) and reads them back with imageio's ffmpeg reader (rgb24).
ROUND_TRIP_CRF_QUALITY = 5
ROUND_TRIP_FPS = 24
ROUND_TRIP_MACRO_BLOCK = 16


def h264_round_trip(frames: np.ndarray, *, fps: float = ROUND_TRIP_FPS, quality: float = ROUND_TRIP_CRF_QUALITY,
                    macro_block_size: int = ROUND_TRIP_MACRO_BLOCK) -> np.ndarray:
    """uint8 frames [F,H,W,3] after the reference's lossy video round trip: encoded to an H.264
    mp4 with exactly its settings and decoded again. A size that is not a multiple of 16 comes
    back at the padded size ffmpeg scaled it to, resized to the original with PIL's bilinear
    filter (the reference's reader resizes to the size it asks for)."""
    import tempfile

    import imageio_ffmpeg

    frames = _check_frames(frames)
    count, height, width = frames.shape[:3]
    with tempfile.TemporaryDirectory(prefix="spatia-h264-") as folder:
        path = os.path.join(folder, "video.mp4")
        writer = imageio_ffmpeg.write_frames(path, (width, height), fps=fps, codec="libx264", pix_fmt_in="rgb24",
                                             pix_fmt_out="yuv420p", quality=quality,
                                             macro_block_size=macro_block_size, ffmpeg_log_level="error")
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        reader = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
        meta = next(reader)
        out_width, out_height = meta["size"]
        decoded = [np.frombuffer(b, np.uint8).reshape(out_height, out_width, 3) for b in reader]
    if len(decoded) != count:
        raise VideoError(f"the video round trip returned {len(decoded)} frames for {count}")
    if (out_height, out_width) != (height, width):
        decoded = [np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in decoded]
    return np.stack(decoded)
