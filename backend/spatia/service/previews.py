"""The latest live preview of each running job, kept in memory (a preview is worth nothing once
the clip is done): one PNG contact sheet of the latent's frames, and when it was computed."""

from __future__ import annotations

import io
import threading
import time

import numpy as np

SHEET_COLUMNS = 7
KEEP_FINISHED = 64  # previews of finished jobs kept, newest first, so a page opened late still shows one


def contact_sheet(frames: np.ndarray, columns: int = SHEET_COLUMNS) -> np.ndarray:
    """uint8 [L, h, w, 3] -> one uint8 image, the frames left to right, top to bottom (black padding)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"preview frames must be uint8 [L, h, w, 3], got {frames.dtype} {list(frames.shape)}")
    count, h, w, _ = frames.shape
    columns = min(columns, count)
    rows = -(-count // columns)
    sheet = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, columns)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = frame
    return sheet


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class PreviewHub:
    """Thread-safe: workers publish, routes read."""

    def __init__(self):
        self._lock = threading.Lock()
        self._latest: dict[str, dict] = {}
        self._seq = 0

    def sink(self, job_id: str, every: int | None = None):
        """A preview function for `World.generate` that publishes under `job_id`."""

        def send(step: int, steps: int, frames: np.ndarray) -> None:
            self.publish(job_id, step, steps, frames)

        if every:
            send.every = int(every)
        return send

    def publish(self, job_id: str, step: int, steps: int, frames: np.ndarray) -> dict:
        computed = time.time()
        frames = np.asarray(frames)
        data = png_bytes(contact_sheet(frames))
        with self._lock:
            self._seq += 1
            info = {"seq": self._seq, "step": int(step), "steps": int(steps), "frames": int(frames.shape[0]),
                    "width": int(frames.shape[2]), "height": int(frames.shape[1]),
                    "columns": min(SHEET_COLUMNS, int(frames.shape[0])), "computed": computed}
            self._latest.pop(job_id, None)
            self._latest[job_id] = {"info": info, "png": data}
            while len(self._latest) > KEEP_FINISHED:
                self._latest.pop(next(iter(self._latest)))
        return info

    def info(self, job_id: str) -> dict | None:
        with self._lock:
            entry = self._latest.get(job_id)
        return None if entry is None else dict(entry["info"])

    def png(self, job_id: str) -> tuple[dict, bytes] | None:
        with self._lock:
            entry = self._latest.get(job_id)
        return None if entry is None else (dict(entry["info"]), entry["png"])


__all__ = ["PreviewHub", "contact_sheet", "png_bytes"]
