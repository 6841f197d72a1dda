"""Point clouds for the browser: a memory version's points in a fixed shuffled order, so that any
prefix is an even sample of the whole (the level of detail: the page draws the first chunk at
once and refines as the rest arrives), sent as little-endian binary arrays, not JSON."""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict

import numpy as np

MAGIC = b"SPC1"
HEADER = struct.Struct("<4sIII")  # magic, total points, offset, count
ENTRIES = 2


def shuffled(xyz: np.ndarray, rgb: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 [N,3], uint8 [N,3] in one seeded random order (every prefix a uniform sample)."""
    order = np.random.default_rng(seed).permutation(len(xyz))
    return np.ascontiguousarray(xyz[order], dtype="<f4"), np.ascontiguousarray(rgb[order], dtype=np.uint8)


def encode_chunk(xyz: np.ndarray, rgb: np.ndarray, offset: int, limit: int) -> bytes:
    """Points [offset, offset + limit) as: header (magic, total, offset, count), xyz float32 [count*3],
    rgb uint8 [count*3]. The xyz block starts at byte 16, so a Float32Array can view it directly."""
    total = len(xyz)
    offset = min(max(int(offset), 0), total)
    end = min(total, offset + max(int(limit), 0))
    return b"".join((HEADER.pack(MAGIC, total, offset, end - offset), xyz[offset:end].tobytes(),
                     rgb[offset:end].tobytes()))


def decode_chunk(data: bytes) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(total, offset, xyz float32 [n,3], rgb uint8 [n,3]) of `encode_chunk`'s bytes."""
    magic, total, offset, count = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not a point chunk")
    xyz = np.frombuffer(data, "<f4", count * 3, HEADER.size).reshape(count, 3)
    rgb = np.frombuffer(data, np.uint8, count * 3, HEADER.size + 12 * count).reshape(count, 3)
    return total, offset, xyz, rgb


class PointOrderCache:
    """The shuffled arrays of the last few memory versions served (a version never changes)."""

    def __init__(self, entries: int = ENTRIES):
        self._entries = entries
        self._cache: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, load) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        xyz, rgb = load()
        arrays = shuffled(np.asarray(xyz, np.float32), np.asarray(rgb, np.uint8))
        with self._lock:
            self._cache[key] = arrays
            while len(self._cache) > self._entries:
                self._cache.popitem(last=False)
        return arrays


__all__ = ["PointOrderCache", "decode_chunk", "encode_chunk", "shuffled"]
