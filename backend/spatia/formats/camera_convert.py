"""Convert camera paths between the formats we read and write (`spatia cameras convert`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spatia.cameras import CameraError, Trajectory
from spatia.formats.colmap import read_colmap_text, write_colmap_text
from spatia.formats.nerfstudio import read_nerfstudio, write_nerfstudio
from spatia.formats.reference_case import ReferenceCase, read_reference_case, write_reference_case
from spatia.formats.shot import ShotSpec, load_shot, save_shot

FORMATS = ("case", "shot", "colmap", "nerfstudio")


def detect_format(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        if (path / "w2c.txt").exists():
            return "case"
        if (path / "images.txt").exists() and (path / "cameras.txt").exists():
            return "colmap"
        if (path / "transforms.json").exists():
            return "nerfstudio"
        raise CameraError(f"{path}: not a reference case (w2c.txt), COLMAP text model (images.txt) or nerfstudio folder")
    if path.suffix == ".json" and path.exists():
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CameraError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("spatia.shot"):
            return "shot"
        if isinstance(doc, dict) and "frames" in doc:
            return "nerfstudio"
    raise CameraError(f"{path}: cannot tell its camera format (or it does not exist)")


def read_any(path: Path, fps: float = 24.0) -> tuple[Trajectory, list[str], ReferenceCase | None]:
    """A trajectory (and prompts, and the whole case when there is one) from any format."""
    kind = detect_format(path)
    if kind == "case":
        case = read_reference_case(path, fps=fps)
        return case.trajectory, case.prompts, case
    if kind == "shot":
        spec = load_shot(path)
        return spec.trajectory(), list(spec.prompts), None
    if kind == "colmap":
        return Trajectory(read_colmap_text(path).cameras, fps), [], None
    return Trajectory(read_nerfstudio(path).cameras, fps), [], None


def convert(src: Path, dst: Path, to: str, *, fps: float = 24.0, prompt: str = "a scene") -> Path:
    if to not in FORMATS:
        raise CameraError(f"unknown format {to!r}; choose one of {', '.join(FORMATS)}")
    trajectory, prompts, case = read_any(src, fps)
    if to == "shot":
        fields = _case_start(case, Path(dst)) if case is not None else {}
        return save_shot(dst, ShotSpec.from_trajectory(trajectory, prompts or [prompt], **fields))
    if to == "colmap":
        return write_colmap_text(dst, trajectory.cameras)
    if to == "nerfstudio":
        return write_nerfstudio(dst, trajectory.cameras)
    if case is None and detect_format(src) == "shot":
        case = _shot_case(Path(src), trajectory, prompts)
    if case is None:
        raise CameraError("a reference case needs its first image: convert from a reference case or from a shot "
                          "whose init names an image, or use --to shot")
    return write_reference_case(dst, case)


def _case_start(case: ReferenceCase, dst: Path) -> dict:
    """The shot fields that keep a case's first image (and first mask, and seed): the image is
    written beside the shot as `<shot name>.first.png` and named by `init`, relative to the shot."""
    from spatia.formats.video import write_frames

    dst.parent.mkdir(parents=True, exist_ok=True)
    image = write_frames(dst.parent / f"{dst.stem}.first.png", np.asarray(case.image)[None], single=True)[0]
    init = {"kind": "image", "image": image.name}
    if case.mask is not None:
        mask = (np.asarray(case.mask[0], dtype=bool)[..., None] * np.uint8(255)).repeat(3, axis=-1)
        init["mask"] = write_frames(dst.parent / f"{dst.stem}.mask.png", mask[None], single=True)[0].name
    return {"init": init, "seed": int(case.seed)}


def _shot_case(path: Path, trajectory: Trajectory, prompts: list[str]) -> ReferenceCase | None:
    """A reference case from a shot whose init names the first image (kinds image and render)."""
    from spatia.formats.video import read_image

    spec = load_shot(path)
    if spec.init is None or spec.init.image is None:
        return None
    image_path = Path(spec.init.image)
    image_path = image_path if image_path.is_absolute() else path.parent / image_path
    image = read_image(image_path)
    cams = trajectory.cameras
    if image.shape[:2] != (cams.height, cams.width):
        raise CameraError(f"init.image {image_path.name} is {image.shape[1]}x{image.shape[0]} but the shot is "
                          f"{cams.width}x{cams.height}")
    return ReferenceCase(image, trajectory, prompts, seed=spec.seed)


__all__ = ["FORMATS", "convert", "detect_format", "read_any"]
