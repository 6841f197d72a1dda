"""An append-only store of object-set versions, beside the memory's: one safetensors file per
version (`objects/vNNNNNN.safetensors`), written atomically, with the sha256 of its whole
content in its metadata. A file whose hash, shapes or dtypes do not check out is refused with
ObjectStoreError naming the file; nothing half-written is ever read (see docs/objects.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import safetensors.numpy

from spatia.io import write_atomic

from .model import CROP_SIZE, HIST_BINS, Crop, ObjectSet, ObjectTrack

SCHEMA = "spatia.objects"
SCHEMA_VERSION = 1
VERSION_FILE = re.compile(r"^v(\d{6,})\.safetensors$")
MAX_LABEL = 200

# name -> (dtype, trailing shape); the leading dimension is a count checked against the table
TENSORS = {
    "point_object": (np.int64, ()), "point_xyz": (np.float32, (3,)), "point_rgb": (np.uint8, (3,)),
    "key_object": (np.int64, ()), "key_frame": (np.int64, ()), "key_position": (np.float64, (3,)),
    "key_heading": (np.float64, ()),
    "crop_object": (np.int64, ()), "crop_frame": (np.int64, ()), "crop_score": (np.float32, ()),
    "crop_rgb": (np.uint8, (CROP_SIZE, CROP_SIZE, 3)), "crop_mask": (np.uint8, (CROP_SIZE, CROP_SIZE)),
    "seen_object": (np.int64, ()), "seen_run": (np.int64, (2,)),
    "appearance": (np.float32, (HIST_BINS ** 3,)),
}


class ObjectStoreError(ValueError):
    """An object-set file is missing, corrupt or not of this schema; the message names it."""


def _content_hash(tensors: dict[str, np.ndarray], table: str) -> str:
    h = hashlib.sha256(table.encode())
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _tensors(objects: ObjectSet) -> tuple[dict[str, np.ndarray], list[dict]]:
    tracks = objects.objects
    table = [{"id": t.id, "label": t.label, "spacing": t.spacing, "condition": t.condition,
              "reference": t.reference} for t in tracks]

    def cat(parts, name):
        dtype, tail = TENSORS[name]
        return np.concatenate([np.asarray(p, dtype).reshape(-1, *tail) for p in parts]) if parts else np.zeros((0, *tail), dtype)

    def ids(counts):
        return np.repeat(np.array([t.id for t in tracks], np.int64), counts) if tracks else np.zeros(0, np.int64)

    crops = [(t.id, c) for t in tracks for c in t.crops]
    tensors = {
        "point_object": ids([len(t.xyz) for t in tracks]), "point_xyz": cat([t.xyz for t in tracks], "point_xyz"),
        "point_rgb": cat([t.rgb for t in tracks], "point_rgb"),
        "key_object": ids([len(t.key_frame) for t in tracks]), "key_frame": cat([t.key_frame for t in tracks], "key_frame"),
        "key_position": cat([t.key_position for t in tracks], "key_position"),
        "key_heading": cat([t.key_heading for t in tracks], "key_heading"),
        "crop_object": np.array([i for i, _ in crops], np.int64), "crop_frame": np.array([c.frame for _, c in crops], np.int64),
        "crop_score": np.array([c.score for _, c in crops], np.float32),
        "crop_rgb": cat([c.rgb for _, c in crops], "crop_rgb"), "crop_mask": cat([c.mask for _, c in crops], "crop_mask"),
        "seen_object": ids([len(t.seen) for t in tracks]), "seen_run": cat([t.seen for t in tracks], "seen_run"),
        "appearance": cat([t.appearance for t in tracks], "appearance"),
    }
    return tensors, table


def snapshot_bytes(objects: ObjectSet, meta: dict | None = None) -> bytes:
    tensors, table = _tensors(objects)
    table_json = json.dumps(table, separators=(",", ":"))
    metadata = {str(k): str(v) for k, v in (meta or {}).items()}
    metadata.update(schema=SCHEMA, schema_version=str(SCHEMA_VERSION), objects=table_json,
                    up=json.dumps(np.asarray(objects.up, float).tolist()), next_id=str(objects.next_id),
                    created=metadata.get("created", datetime.now(timezone.utc).isoformat()))
    hashed = {k: v for k, v in sorted(metadata.items()) if k != "created"}
    metadata["sha256"] = _content_hash(tensors, json.dumps(hashed, separators=(",", ":")))
    return safetensors.numpy.save(tensors, metadata=metadata)


def parse_snapshot(data: bytes, source: str = "objects") -> tuple[ObjectSet, dict[str, str]]:
    """Bytes of an object-set file -> (objects, metadata), or ObjectStoreError naming `source`."""
    if len(data) < 8 or int.from_bytes(data[:8], "little") > len(data) - 8:
        raise ObjectStoreError(f"{source}: file is truncated")
    try:
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        tensors = safetensors.numpy.load(data)
    except Exception as err:  # safetensors and json report corruption with their own types
        raise ObjectStoreError(f"{source}: cannot be read ({err})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise ObjectStoreError(f"{source}: not a {SCHEMA} file")
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise ObjectStoreError(f"{source}: schema version {meta.get('schema_version')!r} is not supported")
    if set(tensors) != set(TENSORS):
        raise ObjectStoreError(f"{source}: tensors {sorted(tensors)} are not the schema's {sorted(TENSORS)}")
    for name, (dtype, tail) in TENSORS.items():
        a = tensors[name]
        if a.dtype != dtype or a.shape[1:] != tail:
            raise ObjectStoreError(f"{source}: {name} is {a.dtype} {list(a.shape)}, expected {np.dtype(dtype)} [N, {', '.join(map(str, tail))}]")
    hashed = {k: v for k, v in sorted(meta.items()) if k not in ("created", "sha256")}
    if meta.get("sha256") != _content_hash(tensors, json.dumps(hashed, separators=(",", ":"))):
        raise ObjectStoreError(f"{source}: content sha256 mismatch; the file was altered or truncated")
    try:
        return _from_tensors(tensors, meta), meta
    except (KeyError, TypeError, ValueError) as err:
        raise ObjectStoreError(f"{source}: content is invalid ({err})") from None


def _from_tensors(t: dict[str, np.ndarray], meta: dict[str, str]) -> ObjectSet:
    table = json.loads(meta["objects"])
    up = np.array(json.loads(meta["up"]), np.float64)
    if up.shape != (3,) or not np.isclose(np.linalg.norm(up), 1.0):
        raise ValueError(f"up must be a unit 3-vector, got {up.tolist()}")
    for name in ("point", "key", "crop", "seen"):
        lengths = {len(v) for k, v in t.items() if k.startswith(name + "_")}
        if len(lengths) != 1:
            raise ValueError(f"the {name} tensors have different lengths {sorted(lengths)}")
    if len(t["appearance"]) != len(table):
        raise ValueError(f"{len(t['appearance'])} appearance rows for {len(table)} objects")
    tracks = []
    for row, entry in enumerate(table):
        oid = int(entry["id"])
        label = str(entry["label"])[:MAX_LABEL]
        p, k, c, s = (t[f"{n}_object"] == oid for n in ("point", "key", "crop", "seen"))
        if not k.any():
            raise ValueError(f"object {oid} has no observed pose")
        if not (np.isfinite(t["point_xyz"][p]).all() and np.isfinite(t["key_position"][k]).all()
                and np.isfinite(t["key_heading"][k]).all()):
            raise ValueError(f"object {oid} has non-finite points or poses")
        frames = t["key_frame"][k]
        if (np.diff(frames) <= 0).any():
            raise ValueError(f"object {oid}'s observed frames do not increase")
        crops = tuple(Crop(int(f), float(sc), rgb, m.astype(bool)) for f, sc, rgb, m in
                      zip(t["crop_frame"][c], t["crop_score"][c], t["crop_rgb"][c], t["crop_mask"][c]))
        tracks.append(ObjectTrack(
            id=oid, label=label, xyz=t["point_xyz"][p], rgb=t["point_rgb"][p], key_frame=frames,
            key_position=t["key_position"][k], key_heading=t["key_heading"][k], appearance=t["appearance"][row],
            spacing=float(entry["spacing"]), crops=crops, seen=t["seen_run"][s],
            condition=bool(entry.get("condition", True)), reference=bool(entry.get("reference", True))))
    ids = [o.id for o in tracks]
    if len(set(ids)) != len(ids) or ids != sorted(ids):
        raise ValueError(f"object ids {ids} are not unique and ascending")
    next_id = int(meta["next_id"])
    if ids and next_id <= ids[-1]:
        raise ValueError(f"next_id {next_id} is not above every id")
    return ObjectSet(up=up, next_id=next_id, objects=tuple(tracks))


class ObjectStore:
    """Numbered object-set versions in a folder; `load` verifies every byte it returns."""

    def __init__(self, root):
        self.root = Path(root)
        self._cache: tuple[int, ObjectSet] | None = None

    def path(self, version: int) -> Path:
        return self.root / f"v{int(version):06d}.safetensors"

    def versions(self) -> list[int]:
        if not self.root.exists():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := VERSION_FILE.match(p.name)))

    def save(self, objects: ObjectSet, *, parent: int | None, memory_version: int | None, message: str = "") -> int:
        versions = self.versions()
        version = (versions[-1] + 1) if versions else 1
        data = snapshot_bytes(objects, {"version": version, "parent": "" if parent is None else parent,
                                        "memory_version": "" if memory_version is None else memory_version,
                                        "message": message[:500]})
        write_atomic(self.path(version), data)
        self._cache = (version, objects)
        return version

    def load(self, version: int) -> ObjectSet:
        if self._cache is not None and self._cache[0] == version:
            return self._cache[1]
        objects, _ = self.load_with_meta(version)
        self._cache = (version, objects)
        return objects

    def load_with_meta(self, version: int) -> tuple[ObjectSet, dict[str, str]]:
        path = self.path(version)
        if not path.exists():
            raise ObjectStoreError(f"{path.name}: object version {version} does not exist (versions: {self.versions()})")
        objects, meta = parse_snapshot(path.read_bytes(), path.name)
        if meta.get("version") != str(version):
            raise ObjectStoreError(f"{path.name}: holds version {meta.get('version')}, not {version}")
        return objects, meta
