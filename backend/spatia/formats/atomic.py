"""Atomic file writes: a file appears whole or not at all, even if the process dies."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import numpy as np


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_temp(directory, prefix: str = ".tmp-", suffix: str = ".tmp") -> tuple[int, Path]:
    """A new, uniquely named file in `directory`, opened for writing: (fd, path). Unlike
    tempfile.mkstemp (always 0600) it is created 0666 less the process's umask, as any file
    the user writes: shared studio folders stay shared, and the service (umask 077) keeps
    its data private."""
    directory = Path(directory)
    for _ in range(100):
        path = directory / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def write_atomic(path, data: bytes | str) -> Path:
    """Write to a temporary file beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "a folder is there, not a file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = make_temp(path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def json_default(value):
    """json.dump `default`: numpy arrays and scalars, paths."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path, data, *, indent: int | None = 2) -> Path:
    return write_atomic(path, json.dumps(data, indent=indent, default=json_default))
