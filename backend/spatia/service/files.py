"""Which files a finished job serves, resolved from fixed patterns only.

A requested path is matched whole against FILE_PATTERNS; nothing else (no `..`, no
absolute path, no other name) ever reaches the file system, and the resolved path is
checked to lie inside the job's or world's folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ApiError, not_found

JOB_FILES = {"video.mp4", "cameras.json"}
FRAME_RE = re.compile(r"^frames/(\d{6})\.png$")
ROUND_RE = re.compile(r"^rounds/(\d{4})/(clip\.mp4|projection\.mp4|round\.json)$")
MEDIA_TYPES = {".mp4": "video/mp4", ".json": "application/json", ".png": "image/png"}


def _inside(path: Path, folder: Path) -> Path:
    resolved, root = path.resolve(), folder.resolve()
    if not resolved.is_relative_to(root):
        raise ApiError(400, "invalid_path", "path leaves the job's folder", "path")
    return resolved


def resolve_job_file(relative: str, job: dict, job_folder: Path, world_folder: Path) -> Path:
    """The file `relative` of a succeeded job, or a 400/404/409 error."""
    if "\\" in relative or relative.startswith("/") or ".." in relative.split("/") or "\x00" in relative:
        raise ApiError(400, "invalid_path", f"invalid file path {relative!r}: relative paths without '..' only", "path")
    result = job.get("result")
    if job["status"] != "succeeded" or not result:
        raise ApiError(409, "conflict", f"job {job['id']} is {job['status']}; its files exist once it succeeded")
    if relative in JOB_FILES:
        path = _inside(job_folder / relative, job_folder)
    elif match := FRAME_RE.match(relative):
        if int(match.group(1)) >= result["frames"][1]:
            raise not_found("file", relative)
        path = _inside(world_folder / relative, world_folder)
    elif match := ROUND_RE.match(relative):
        if int(match.group(1)) not in {r["round"] for r in result["rounds"]}:
            raise not_found("file", relative)
        path = _inside(world_folder / relative, world_folder)
    else:
        raise not_found("file", relative)
    if not path.is_file():
        raise not_found("file", relative)
    return path


def media_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix, "application/octet-stream")
