"""An append-only store of object-set versions, beside the memory's: one safetensors file per
version (`objects/vNNNNNN.safetensors`: poses, frames seen, appearance and the table), each
object's points and crops in blobs named by their sha256 (`objects/blobs/`, written once and
shared by every version that keeps them), all written atomically, the version's sha256 over its
content and the names of its blobs. A file whose hash, shapes or dtypes do not check out, or a
missing blob, is refused with ObjectStoreError naming the file; nothing half-written is ever read
(see docs/objects.md). `snapshot_bytes` makes a standalone file (for downloads).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import safetensors.numpy

from spatia.formats.atomic import write_atomic

from .model import CROP_SIZE, HIST_BINS, REGIONS, STATUSES, Crop, ObjectSet, ObjectTrack
from .motion import MotionState

SCHEMA = "spatia.objects"
SCHEMA_VERSION = 1
VERSION_FILE = re.compile(r"^v(\d{6,})\.safetensors$")
BLOB_FOLDER = "blobs"
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
              "reference": t.reference, "status": t.status,
              "motion": t.motion.as_dict() if t.motion is not None else None,
              "regions": np.round(np.asarray(t.regions, np.float64), 6).tolist() if t.regions is not None else None}
             for t in tracks]

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
    """A standalone file of the whole object set (what a download gets)."""
    tensors, table = _tensors(objects)
    return _file_bytes(objects, tensors, table, meta)


def _file_bytes(objects: ObjectSet, tensors: dict, table: list[dict], meta: dict | None) -> bytes:
    table_json = json.dumps(table, separators=(",", ":"))
    metadata = {str(k): str(v) for k, v in (meta or {}).items()}
    metadata.update(schema=SCHEMA, schema_version=str(SCHEMA_VERSION), objects=table_json,
                    up=json.dumps(np.asarray(objects.up, float).tolist()), next_id=str(objects.next_id),
                    created=metadata.get("created", datetime.now(timezone.utc).isoformat()))
    hashed = {k: v for k, v in sorted(metadata.items()) if k != "created"}
    metadata["sha256"] = _content_hash(tensors, json.dumps(hashed, separators=(",", ":")))
    return safetensors.numpy.save(tensors, metadata=metadata)


def _read(data: bytes, source: str, schema: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) of a safetensors file of `schema`, or ObjectStoreError naming `source`."""
    if len(data) < 8 or int.from_bytes(data[:8], "little") > len(data) - 8:
        raise ObjectStoreError(f"{source}: file is truncated")
    try:
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        tensors = safetensors.numpy.load(data)
    except Exception as err:  # safetensors and json report corruption with their own types
        raise ObjectStoreError(f"{source}: cannot be read ({err})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("schema") != schema:
        raise ObjectStoreError(f"{source}: not a {schema} file")
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise ObjectStoreError(f"{source}: schema version {meta.get('schema_version')!r} is not supported")
    return tensors, meta


def _check_tensors(tensors: dict[str, np.ndarray], names, source: str) -> None:
    if set(tensors) != set(names):
        raise ObjectStoreError(f"{source}: tensors {sorted(tensors)} are not the schema's {sorted(names)}")
    for name in names:
        dtype, tail = TENSORS[name]
        a = tensors[name]
        if a.dtype != dtype or a.shape[1:] != tail:
            raise ObjectStoreError(f"{source}: {name} is {a.dtype} {list(a.shape)}, expected {np.dtype(dtype)} [N, {', '.join(map(str, tail))}]")


def parse_snapshot(data: bytes, source: str = "objects", blobs=None) -> tuple[ObjectSet, dict[str, str]]:
    """Bytes of an object-set file -> (objects, metadata), or ObjectStoreError naming `source`.
    A store's version file keeps each object's points and crops in blobs: `blobs(name)` reads one
    (verified); a standalone file (a download) holds everything itself."""
    tensors, meta = _read(data, source, SCHEMA)
    split = meta.get("layout") == "blobs"
    _check_tensors(tensors, [n for n in TENSORS if not (split and n.split("_")[0] in ("point", "crop"))], source)
    hashed = {k: v for k, v in sorted(meta.items()) if k not in ("created", "sha256")}
    if meta.get("sha256") != _content_hash(tensors, json.dumps(hashed, separators=(",", ":"))):
        raise ObjectStoreError(f"{source}: content sha256 mismatch; the file was altered or truncated")
    try:
        if split:
            if blobs is None:
                raise ValueError("its points and crops are in the store's blobs; load it through its store")
            tensors = {**tensors, **_joined_blobs(json.loads(meta["objects"]), blobs)}
        return _from_tensors(tensors, meta), meta
    except (KeyError, TypeError, ValueError) as err:
        raise ObjectStoreError(f"{source}: content is invalid ({err})") from None


# --- blobs: each object's points and crops, written once and shared by the versions that keep them ---
POINT_TENSORS = ("point_xyz", "point_rgb")
CROP_TENSORS = ("crop_frame", "crop_score", "crop_rgb", "crop_mask")
BLOB_SCHEMA = "spatia.objects.blob"
BLOB_NAME = re.compile(r"^[0-9a-f]{64}$")


def _blob_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    return safetensors.numpy.save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                                  metadata={"schema": BLOB_SCHEMA, "schema_version": str(SCHEMA_VERSION)})


def _split(tensors: dict[str, np.ndarray], table: list[dict]) -> tuple[dict, list[dict], dict[str, bytes]]:
    """The version's own tensors, its table naming each object's blobs, and the blobs by name."""
    blobs, rows = {}, []
    for entry in table:
        row = dict(entry)
        for kind, names in (("points", POINT_TENSORS), ("crops", CROP_TENSORS)):
            mine = tensors[f"{kind[:-1]}_object"] == entry["id"]
            part = {n: tensors[n][mine] for n in names}
            name = _content_hash(part, BLOB_SCHEMA)  # of the content: a file's header order may vary
            blobs[name] = _blob_bytes(part)
            row[kind] = name
        rows.append(row)
    own = {k: v for k, v in tensors.items() if k.split("_")[0] not in ("point", "crop")}
    return own, rows, blobs


def _joined_blobs(table: list[dict], blobs) -> dict[str, np.ndarray]:
    """The point and crop tensors of every object of `table`, read from their blobs."""
    parts = {n: [] for n in (*POINT_TENSORS, *CROP_TENSORS, "point_object", "crop_object")}
    for entry in table:
        for kind, names in (("points", POINT_TENSORS), ("crops", CROP_TENSORS)):
            blob = blobs(str(entry[kind]))
            for n in names:
                parts[n].append(blob[n])
            parts[f"{kind[:-1]}_object"].append(np.full(len(blob[names[0]]), int(entry["id"]), np.int64))
    return {n: np.concatenate(v) if v else np.zeros((0, *TENSORS[n][1]), TENSORS[n][0]) for n, v in parts.items()}


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
        status = str(entry.get("status", "confirmed"))
        if status not in STATUSES:
            raise ValueError(f"object {oid}'s status {status!r} is not one of {list(STATUSES)}")
        regions = entry.get("regions")
        if regions is not None:
            regions = np.asarray(regions, np.float32)
            if regions.shape != (REGIONS, HIST_BINS ** 3) or not np.isfinite(regions).all():
                raise ValueError(f"object {oid}'s regions are not {REGIONS} finite histograms")
        motion = MotionState.from_dict(entry["motion"]) if entry.get("motion") is not None else None
        tracks.append(ObjectTrack(
            id=oid, label=label, xyz=t["point_xyz"][p], rgb=t["point_rgb"][p], key_frame=frames,
            key_position=t["key_position"][k], key_heading=t["key_heading"][k], appearance=t["appearance"][row],
            spacing=float(entry["spacing"]), crops=crops, seen=t["seen_run"][s],
            condition=bool(entry.get("condition", True)), reference=bool(entry.get("reference", True)),
            motion=motion, status=status, regions=regions))
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

    def blob_path(self, name: str) -> Path:
        return self.root / BLOB_FOLDER / f"{name}.safetensors"

    def save(self, objects: ObjectSet, *, parent: int | None, memory_version: int | None, message: str = "") -> int:
        """A new version. Each object's points and crops go to blobs named by their sha256, written
        once: a version that keeps an object as it was costs its poses and table alone."""
        versions = self.versions()
        version = (versions[-1] + 1) if versions else 1
        tensors, table = _tensors(objects)
        own, rows, blobs = _split(tensors, table)
        for name, data in blobs.items():
            if not self.blob_path(name).exists():
                write_atomic(self.blob_path(name), data)
        data = _file_bytes(objects, own, rows, {
            "version": version, "parent": "" if parent is None else parent, "layout": "blobs",
            "memory_version": "" if memory_version is None else memory_version, "message": message[:500]})
        write_atomic(self.path(version), data)  # after its blobs: a version on disk is whole
        self._cache = (version, objects)
        return version

    def _blob(self, name: str) -> dict[str, np.ndarray]:
        if not BLOB_NAME.match(name):
            raise ValueError(f"blob name {name!r} is not a sha256")
        path = self.blob_path(name)
        if not path.exists():
            raise ValueError(f"blob {path.parent.name}/{path.name} is missing")
        source = f"{path.parent.name}/{path.name}"
        tensors, _ = _read(path.read_bytes(), source, BLOB_SCHEMA)
        _check_tensors(tensors, POINT_TENSORS if "point_xyz" in tensors else CROP_TENSORS, source)
        if _content_hash(tensors, BLOB_SCHEMA) != name:
            raise ValueError(f"blob {source}: content sha256 mismatch; the file was altered")
        return tensors

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
        objects, meta = parse_snapshot(path.read_bytes(), path.name, blobs=self._blob)
        if meta.get("version") != str(version):
            raise ObjectStoreError(f"{path.name}: holds version {meta.get('version')}, not {version}")
        return objects, meta
