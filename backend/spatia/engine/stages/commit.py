"""Commit: a finished round goes to disk, behind the next round.

A CommitWriter writes one round at a time on a background thread, in order, while the next round
renders and generates: the clip's frames and videos, the keyframes' depth, the view index's
record, the loop-closure figures, the round record, the cameras appended to the world's camera
file, and last the world's state. The state is replaced atomically once everything else of the
round is on disk, so a crash at any moment leaves the world at its last committed round (the
round's own files go to rounds/NNNN.partial/ first and are renamed into place). The memory and
object versions are written before the round is handed over (their numbers are the next round's
inputs); a version the state does not name yet is simply not current.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from spatia.cameras import Cameras
from spatia.formats.atomic import fsync_dir, write_json
from spatia.formats.video import write_frames, write_video

CAMERAS_FILE = "cameras.jsonl"  # one camera per line, appended round by round


@dataclass(eq=False)
class RoundFiles:
    """Everything a round leaves on disk. `record` is completed here (loop closure by `measure`,
    commit seconds) before it is written; `state` is the world's state once the round is in."""

    root: Path
    index: int
    clip: np.ndarray
    new_from: int  # clip frames [new_from:] are new video frames, starting at video frame `new_start`
    new_start: int
    fps: float
    projection: np.ndarray
    camera_lines: bytes  # the new frames' cameras (camera_lines()), appended to the camera file
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    aligned: np.ndarray | None = None
    dynamic: np.ndarray | None = None
    confidence: np.ndarray | None = None
    views: dict | None = None
    object_ids: np.ndarray | None = None
    record: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    measure: Callable[[], dict] | None = None  # the loop-closure figures, computed here, off the critical path


def camera_lines(cameras: Cameras) -> bytes:
    """The camera file's lines for `cameras`: one JSON object per camera."""
    return "".join(json.dumps({"intrinsics": k, "w2c": w}) + "\n"
                   for k, w in zip(cameras.intrinsics.tolist(), cameras.w2c.tolist())).encode()


def append_cameras(root: Path, lines: bytes, committed_bytes: int) -> int:
    """Append `lines` to the camera file after its first `committed_bytes` (what an interrupted
    commit wrote past them is cut); returns the file's committed size."""
    path = root / CAMERAS_FILE
    with open(path, "ab") as handle:
        handle.truncate(committed_bytes)
        handle.write(lines)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(root)
    return committed_bytes + len(lines)


def read_cameras(root: Path, count: int, committed_bytes: int | None, width: int, height: int) -> Cameras | None:
    """The first `count` cameras of the world's camera file (or of a world's older cameras.json)."""
    path = root / CAMERAS_FILE
    if count == 0:
        return None
    if not committed_bytes or not path.exists():
        legacy = root / "cameras.json"
        if not legacy.exists():
            return None
        data = json.loads(legacy.read_text())
        return Cameras(data["intrinsics"][:count], data["w2c"][:count], width, height)
    with open(path, "rb") as handle:
        rows = [json.loads(line) for line in handle.read(committed_bytes).decode().splitlines()[:count]]
    return Cameras([r["intrinsics"] for r in rows], [r["w2c"] for r in rows], width, height)


def write_round(files: RoundFiles) -> dict:
    """Write one round (see the module's docstring); returns its completed record."""
    started = time.perf_counter()
    root, rounds = files.root, files.root / "rounds"
    partial, final = rounds / f"{files.index:04d}.partial", rounds / f"{files.index:04d}"
    shutil.rmtree(partial, ignore_errors=True)  # left by a commit that was interrupted
    partial.mkdir(parents=True)
    try:
        if files.object_ids is not None:
            np.savez_compressed(partial / "object_layer.npz", ids=files.object_ids)
        if files.views is not None:
            np.savez_compressed(partial / "views.npz", **files.views)
        for j, g in enumerate(files.keys.tolist()):
            depth = files.aligned[j]
            conf = np.ones(depth.shape) if files.confidence is None else files.confidence[j]
            np.savez_compressed(root / "keyframes" / f"{g:06d}.npz", depth=depth.astype(np.float16),
                                dynamic=files.dynamic[j], confidence=conf.astype(np.float16))
        with ThreadPoolExecutor(max_workers=2) as pool:  # the encoders run in ffmpeg processes alongside
            videos = [pool.submit(write_video, partial / "clip.mp4", files.clip, files.fps),
                      pool.submit(write_video, partial / "projection.mp4", files.projection, files.fps)]
            write_frames(root / "frames", files.clip[files.new_from:], start=files.new_start)
            for video in videos:
                video.result()
        append_cameras(root, files.camera_lines, files.state["camera_bytes"] - len(files.camera_lines))
        timings = files.record.setdefault("timings", {})
        if files.measure is not None:
            t = time.perf_counter()
            files.record["loop_closure"] = files.measure()
            timings["loop_closure_s"] = time.perf_counter() - t
        timings["commit_s"] = time.perf_counter() - started
        write_json(partial / "round.json", files.record)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        fsync_dir(rounds)
        write_json(root / "world.json", files.state)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # renamed away on success
    return files.record


class CommitWriter:
    """Commits rounds on one background thread, in order, at most one round behind: handing over
    a round first waits for the previous one. Frames handed over and not yet on disk are served
    from memory (`frame`). A commit's error is raised by the next `submit` or `wait`."""

    def __init__(self, write: Callable[[RoundFiles], dict] = write_round):
        self._write = write
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spatia-commit")
        self._pending: Future | None = None
        self._frames: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def submit(self, files: RoundFiles) -> float:
        """Hand a round over; returns the seconds spent waiting for the previous commit."""
        waited = self.wait()
        with self._lock:
            self._frames = {files.new_start + i: frame for i, frame in enumerate(files.clip[files.new_from:])}
        self._pending = self._pool.submit(self._write, files)
        return waited

    def wait(self) -> float:
        """Block until every round handed over is on disk (raising a commit's error)."""
        started = time.perf_counter()
        pending, self._pending = self._pending, None
        try:
            if pending is not None:
                pending.result()
        finally:
            with self._lock:
                self._frames = {}
        return time.perf_counter() - started

    def frame(self, index: int) -> np.ndarray | None:
        with self._lock:
            return self._frames.get(int(index))

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
