"""A world's object memory made by hand (no generation): the objects the objects API and CLI
tests list, show, forget and look for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from spatia.engine.objects.model import CROP_SIZE, HIST_BINS, Crop, ObjectSet, ObjectTrack

FPS = 24.0
SEEN = (0, 10)  # both objects were seen in frames 0..9
PARKED_AT = (0.0, 0.0, 1.2)  # in front of the identity camera, before the service tests' wall (z >= 2)


def cube(n: int, half: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-half, half, (n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    return xyz, rgb


def crop(frame: int, score: float, colour) -> Crop:
    rgb = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)
    rgb[:] = colour
    mask = np.zeros((CROP_SIZE, CROP_SIZE), bool)
    mask[20:76, 30:66] = True
    return Crop(frame, score, rgb, mask)


def track(object_id: int, label: str, positions, frames, *, n: int, crops=()) -> ObjectTrack:
    xyz, rgb = cube(n, 0.15, object_id)
    appearance = np.full(HIST_BINS ** 3, 1.0 / HIST_BINS ** 3, np.float32)
    return ObjectTrack(
        id=object_id, label=label, xyz=xyz, rgb=rgb, key_frame=np.asarray(frames, np.int64),
        key_position=np.asarray(positions, np.float64).reshape(-1, 3), key_heading=np.zeros(len(frames)),
        appearance=appearance, spacing=0.02, crops=tuple(crops), seen=np.array([SEEN], np.int64))


def make_objects(up) -> ObjectSet:
    """Object 1, "car": parked at PARKED_AT, 300 points, two crops (the best from frame 7).
    Object 2, "person": walks +x at 0.5 m/s at z = 1, 200 points, no crop."""
    frames = np.arange(10)
    car = track(1, "car", [PARKED_AT] * 3, [0, 5, 9], n=300,
                crops=[crop(2, 10.0, (200, 30, 30)), crop(7, 50.0, (30, 200, 30))])
    walk = np.stack([-0.3 + 0.5 * frames / FPS, np.zeros(10), np.ones(10)], axis=1)
    person = track(2, "person", walk, frames, n=200)
    return ObjectSet(up=np.asarray(up, np.float64), next_id=3, objects=(car, person))


def flip_data_byte(path: Path, tensor: str = "key_position") -> None:
    """Alter one byte of a tensor's data in a safetensors file (the header stays valid)."""
    data = bytearray(path.read_bytes())
    header_size = int.from_bytes(data[:8], "little")
    start = json.loads(data[8:8 + header_size])[tensor]["data_offsets"][0]
    data[8 + header_size + start] ^= 0x01
    path.write_bytes(bytes(data))
