"""Point clouds for the browser, with a level of detail that costs nothing to prepare.

A memory version's points are sent in a fixed order in which every prefix is an even sample of
the whole: the k-th point sent is point (a k) mod N, with a the integer nearest N / golden ratio
that is coprime with N. Such a Weyl sequence visits the index range evenly at every length and,
unlike every-S-th-point orders, has no short period that could line up with the rows of the
images the points came from. Nothing is shuffled or copied ahead: a chunk is one gather of its
own indices, so the first picture of a 5-million-point memory costs one chunk, not a pass over
the memory. The page draws the first chunk at once and refines as the rest arrives. Sent as
little-endian binary arrays, not JSON."""

from __future__ import annotations

import math
import struct

import numpy as np

MAGIC = b"SPC1"
HEADER = struct.Struct("<4sIII")  # magic, total points, offset, count
GOLDEN = (math.sqrt(5) - 1) / 2


def stride(total: int) -> int:
    """a: near total / golden ratio, coprime with total, so k -> a k mod total is a permutation."""
    if total <= 2:
        return 1
    a = max(1, round(total * GOLDEN))
    while math.gcd(a, total) != 1:
        a += 1
    return a


def lod_indices(total: int, offset: int, limit: int) -> np.ndarray:
    """The indices of points [offset, offset + limit) of the level-of-detail order."""
    end = min(total, offset + limit)
    if offset >= end:
        return np.zeros(0, np.int64)
    return (np.arange(offset, end, dtype=np.int64) * stride(total)) % total


def encode_chunk(xyz: np.ndarray, rgb: np.ndarray, offset: int, limit: int) -> bytes:
    """Points [offset, offset + limit) of the level-of-detail order as: header (magic, total,
    offset, count), xyz float32 [count*3], rgb uint8 [count*3]. The xyz block starts at byte 16,
    so a Float32Array can view it directly."""
    total = len(xyz)
    offset = min(max(int(offset), 0), total)
    index = lod_indices(total, offset, max(int(limit), 0))
    chunk_xyz = np.asarray(xyz[index], dtype="<f4")
    chunk_rgb = np.asarray(rgb[index], dtype=np.uint8)
    return b"".join((HEADER.pack(MAGIC, total, offset, len(chunk_xyz)), chunk_xyz.tobytes(), chunk_rgb.tobytes()))


def decode_chunk(data: bytes) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(total, offset, xyz float32 [n,3], rgb uint8 [n,3]) of `encode_chunk`'s bytes."""
    magic, total, offset, count = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not a point chunk")
    xyz = np.frombuffer(data, "<f4", count * 3, HEADER.size).reshape(count, 3)
    rgb = np.frombuffer(data, np.uint8, count * 3, HEADER.size + 12 * count).reshape(count, 3)
    return total, offset, xyz, rgb


__all__ = ["decode_chunk", "encode_chunk", "lod_indices", "stride"]
