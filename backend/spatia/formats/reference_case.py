"""The Spatia reference test-case folder: first frame, cameras, prompts, dynamic mask.

Layout (one folder per case):
  img.jpg         the first frame; its size gives the cameras' width and height
  intrinsics.txt  one line `[fx fy cx cy]`, normalised (fx/W, fy/H, cx/W, cy/H), shared by all frames
  w2c.txt         one OpenCV world-to-camera 4x4 (or 3x4, the last row implied) nested list
                  per line, one line per frame
  prompt.txt      one prompt per generation round (blank lines ignored); with fewer prompts
                  than the rounds of the paper's plan (121 frames, then 81 with 9 overlapping)
                  the last one repeats, as the authors' script reads it
  mask.png        optional mask of dynamic pixels in the first frame: any nonzero pixel is dynamic
  mask.npy        optional alternative: bool or numeric [N, H, W] masks for the first N frames
                  (nonzero = dynamic)

The authors' script runs every round with seed 20917 (`REFERENCE_SEED`). Numbers are written
with Python's shortest round-tripping repr, so a case read and written again gives the same text.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from spatia.formats.atomic import write_atomic

from spatia.cameras.core import CameraError, Cameras, Trajectory, normalized_to_pixels, pixels_to_normalized

IMAGE_NAMES = ("img.jpg", "img.jpeg", "img.png")
REFERENCE_SEED = 20917  # the authors' default seed, used for every round
# The authors' default round plan, which decides how many prompts a case needs.
PAPER_FIRST_ROUND_FRAMES, PAPER_ROUND_FRAMES, PAPER_OVERLAP = 121, 81, 9
JPEG_QUALITY = 95

# Normalised intrinsics as read; written back verbatim while they still give the same
# pixel intrinsics, because (x * W) / W is not always x in floating point.
NORMALIZED_INTRINSICS_KEY = "normalized_intrinsics"

_MATRIX_ROW = re.compile(r"\[([^\[\]]*)\]")
_MATRIX_LINE = re.compile(r"^\[\s*(?:\[[^\[\]]*\]\s*,?\s*)+\]$")


class ReferenceCaseError(CameraError):
    """A reference test-case folder is incomplete or malformed; the message names the file and line."""


@dataclass(frozen=True, eq=False)
class ReferenceCase:
    """One Spatia test case.

    image: uint8 [H, W, 3] first frame. mask: bool [N, H, W] dynamic pixels of the first N
    frames (True = keep out of memory), or None. prompts: as read, extended to one per round
    of the paper's plan by repeating the last. seed: the authors' seed.
    """

    image: np.ndarray
    trajectory: Trajectory
    prompts: list[str]
    mask: np.ndarray | None = None
    folder: Path | None = None
    seed: int = REFERENCE_SEED

    @property
    def cameras(self) -> Cameras:
        return self.trajectory.cameras


# --- parsing ---------------------------------------------------------------------------------
def _parse_numbers(text: str, where: str) -> np.ndarray:
    tokens = [t for t in re.split(r"[\s,]+", text.strip()) if t]
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError as exc:
        raise ReferenceCaseError(f"{where}: not a number ({exc})") from None
    if not np.isfinite(values).all():
        raise ReferenceCaseError(f"{where}: non-finite value in {text.strip()!r}")
    return values


def parse_intrinsics_line(line: str, where: str) -> np.ndarray:
    """`[fx fy cx cy]` (spaces or commas) -> float64 [4]."""
    stripped = line.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")) or "[" in stripped[1:]:
        raise ReferenceCaseError(f"{where}: expected `[fx fy cx cy]`, got {stripped!r}")
    values = _parse_numbers(stripped[1:-1], where)
    if len(values) != 4:
        raise ReferenceCaseError(f"{where}: expected 4 intrinsics (fx fy cx cy), got {len(values)}")
    return values


def parse_matrix_line(line: str, where: str) -> np.ndarray:
    """`[[a, b, c, d], [...], [...], [...]]` -> float64 [4, 4]; three rows (a 3x4 [R | t], which
    the authors' reader accepts too) get the row [0, 0, 0, 1]."""
    stripped = line.strip()
    if not _MATRIX_LINE.match(stripped):
        raise ReferenceCaseError(f"{where}: expected a 4x4 (or 3x4) nested list `[[..], [..], [..], [..]]`, "
                                 f"got {stripped[:80]!r}")
    rows = [_parse_numbers(row, where) for row in _MATRIX_ROW.findall(stripped[1:-1])]
    if len(rows) not in (3, 4) or any(len(r) != 4 for r in rows):
        raise ReferenceCaseError(f"{where}: expected 4 (or 3) rows of 4 numbers, got row lengths {[len(r) for r in rows]}")
    if len(rows) == 3:
        rows.append(np.array([0.0, 0.0, 0.0, 1.0]))
    return np.stack(rows)


def _content_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, text) of the non-blank lines of a text file."""
    text = path.read_text(encoding="utf-8")
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _require(path: Path) -> Path:
    if not path.is_file():
        raise ReferenceCaseError(f"{path}: missing (required in a reference case folder)")
    return path


# --- reading ---------------------------------------------------------------------------------
def _read_image(folder: Path) -> np.ndarray:
    path = next((folder / n for n in IMAGE_NAMES if (folder / n).is_file()), None)
    if path is None:
        raise ReferenceCaseError(f"{folder / IMAGE_NAMES[0]}: missing (required in a reference case folder)")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise ReferenceCaseError(f"{path}: unreadable image ({exc})") from None


def _read_cameras(folder: Path, width: int, height: int) -> tuple[Cameras, np.ndarray]:
    k_path = _require(folder / "intrinsics.txt")
    k_lines = _content_lines(k_path)
    if len(k_lines) != 1:
        raise ReferenceCaseError(f"{k_path}: expected exactly one line `[fx fy cx cy]`, found {len(k_lines)}")
    n, line = k_lines[0]
    normalized = parse_intrinsics_line(line, f"{k_path}:{n}")
    if (normalized[:2] <= 0).any():
        raise ReferenceCaseError(f"{k_path}:{n}: focal lengths must be positive, got fx={normalized[0]}, fy={normalized[1]}")

    w2c_path = _require(folder / "w2c.txt")
    w2c_lines = _content_lines(w2c_path)
    if not w2c_lines:
        raise ReferenceCaseError(f"{w2c_path}: no poses (expected one 4x4 world-to-camera matrix per line)")
    w2c = np.stack([parse_matrix_line(line, f"{w2c_path}:{n}") for n, line in w2c_lines])
    try:
        cameras = Cameras.from_normalized(normalized, w2c, width, height)
    except CameraError as exc:
        # Intrinsics were checked above, so a per-frame error is about a pose: name its line.
        frame_error = re.match(r"frame (\d+): (.*)", str(exc), re.DOTALL)
        if frame_error is None:
            raise ReferenceCaseError(f"{folder}: {exc}") from None
        line_number = w2c_lines[int(frame_error[1])][0]
        raise ReferenceCaseError(f"{w2c_path}:{line_number}: {frame_error[2]}") from None
    return cameras, normalized


def _read_prompts(folder: Path) -> list[str]:
    path = _require(folder / "prompt.txt")
    prompts = [line.strip() for _, line in _content_lines(path)]
    if not prompts:
        raise ReferenceCaseError(f"{path}: no prompts (expected one prompt per line, one per generation round)")
    return prompts


def _read_mask(folder: Path, height: int, width: int) -> np.ndarray | None:
    png, npy = folder / "mask.png", folder / "mask.npy"
    if png.is_file():
        try:
            with Image.open(png) as img:
                mask = (np.asarray(img.convert("L")) > 0)[None]  # the authors: any nonzero pixel
        except (UnidentifiedImageError, OSError) as exc:
            raise ReferenceCaseError(f"{png}: unreadable mask image ({exc})") from None
        path = png
    elif npy.is_file():
        try:
            raw = np.load(npy, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ReferenceCaseError(f"{npy}: unreadable mask array ({exc})") from None
        if raw.ndim == 2:
            raw = raw[None]
        if raw.ndim != 3:
            raise ReferenceCaseError(f"{npy}: mask must be [N, H, W], got shape {list(raw.shape)}")
        mask = raw != 0
        path = npy
    else:
        return None
    if mask.shape[1:] != (height, width):
        raise ReferenceCaseError(f"{path}: mask is {mask.shape[2]}x{mask.shape[1]} but the image is {width}x{height}")
    return mask


def read_reference_case(folder: str | os.PathLike, fps: float = 24.0) -> ReferenceCase:
    """Read a reference test-case folder; width and height come from the first frame."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReferenceCaseError(f"{folder}: not a folder")
    image = _read_image(folder)
    height, width = image.shape[:2]
    cameras, normalized = _read_cameras(folder, width, height)
    trajectory = Trajectory(cameras, fps, {NORMALIZED_INTRINSICS_KEY: normalized.tolist()})
    prompts = prompts_for_paper_plan(_read_prompts(folder), len(cameras))
    return ReferenceCase(image, trajectory, prompts, _read_mask(folder, height, width), folder)


def paper_round_count(frames: int) -> int:
    """Rounds of the paper's plan for `frames` poses (the authors' compute_total_rounds)."""
    if frames <= PAPER_FIRST_ROUND_FRAMES:
        return 1
    new_per_round = PAPER_ROUND_FRAMES - PAPER_OVERLAP
    return 1 + -(-(frames - PAPER_FIRST_ROUND_FRAMES) // new_per_round)


def prompts_for_paper_plan(prompts: list[str], frames: int) -> list[str]:
    """The prompts extended to one per round of the paper's plan by repeating the last, as the
    authors' script does (one prompt stays one: it serves every round; extra prompts are kept)."""
    rounds = paper_round_count(frames)
    if 1 < len(prompts) < rounds:
        return prompts + [prompts[-1]] * (rounds - len(prompts))
    return prompts


# --- writing ---------------------------------------------------------------------------------
def format_intrinsics_line(normalized) -> str:
    return "[" + " ".join(repr(float(v)) for v in normalized) + "]"


def format_matrix_line(matrix) -> str:
    return "[" + ", ".join("[" + ", ".join(repr(float(v)) for v in row) + "]" for row in np.asarray(matrix)) + "]"


def _normalized_for_writing(trajectory: Trajectory) -> np.ndarray:
    cams = trajectory.cameras
    if not np.array_equal(cams.intrinsics, np.broadcast_to(cams.intrinsics[0], cams.intrinsics.shape)):
        raise ReferenceCaseError("a reference case holds one intrinsics line for all frames, but the intrinsics vary per frame")
    source = trajectory.metadata.get(NORMALIZED_INTRINSICS_KEY)
    if source is not None and np.array_equal(normalized_to_pixels(source, cams.width, cams.height), cams.intrinsics[0]):
        return np.asarray(source, dtype=np.float64)
    return pixels_to_normalized(cams.intrinsics[0], cams.width, cams.height)


def write_reference_case(folder: str | os.PathLike, case: ReferenceCase) -> Path:
    """Write `case` into `folder` (created if needed); each file is replaced atomically."""
    folder = Path(folder)
    image = np.asarray(case.image)
    cams = case.cameras
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ReferenceCaseError(f"image must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
    if image.shape[:2] != (cams.height, cams.width):
        raise ReferenceCaseError(f"image is {image.shape[1]}x{image.shape[0]} but the cameras are {cams.width}x{cams.height}")
    prompts = [p.strip() for p in case.prompts]
    if not prompts or any(not p or "\n" in p for p in prompts):
        raise ReferenceCaseError("prompts must be a non-empty list of non-empty single-line strings")
    if case.mask is not None:
        mask = np.asarray(case.mask)
        if mask.ndim == 2:
            mask = mask[None]
        if mask.ndim != 3 or mask.shape[1:] != image.shape[:2]:
            raise ReferenceCaseError(f"mask must be [N, {cams.height}, {cams.width}], got {list(mask.shape)}")
    normalized = _normalized_for_writing(case.trajectory)

    folder.mkdir(parents=True, exist_ok=True)
    buffer = _encode_image(Image.fromarray(image), "JPEG", quality=JPEG_QUALITY)
    write_atomic(folder / "img.jpg", buffer)
    write_atomic(folder / "intrinsics.txt", format_intrinsics_line(normalized) + "\n")
    write_atomic(folder / "w2c.txt", "".join(format_matrix_line(m) + "\n" for m in cams.w2c))
    write_atomic(folder / "prompt.txt", "".join(p + "\n" for p in prompts))
    for stale in ("mask.png", "mask.npy"):
        (folder / stale).unlink(missing_ok=True)
    if case.mask is not None:
        mask = mask > 0.5
        if len(mask) == 1:
            write_atomic(folder / "mask.png", _encode_image(Image.fromarray(mask[0].astype(np.uint8) * 255), "PNG"))
        else:
            write_atomic(folder / "mask.npy", _encode_npy(mask))
    return folder


def _encode_image(img, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
