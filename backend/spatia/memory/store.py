"""Memory snapshots (safetensors) and an append-only store of numbered versions.

A snapshot holds the per-point tensors and string metadata: schema name and version,
version, parent, voxel size, next_id, creation time, message, `sha256` (the memory's
content hash) and `meta_sha256` (over every other metadata entry). Loading checks both, so
a truncated or altered file raises MemoryIntegrityError and is never returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import safetensors.torch
import torch

from spatia.io import fsync_dir

from .cloud import FIELDS, SpatialMemory
from .errors import MemoryFormatError, MemoryIntegrityError

SCHEMA = "spatia.memory"
SCHEMA_VERSION = 1
VERSION_FILE = re.compile(r"^v(\d{6,})\.safetensors$")
MAX_SAVE_ATTEMPTS = 1000
HASHED_META_EXCLUDED = {"meta_sha256"}


def _meta_hash(meta: dict[str, str]) -> str:
    items = sorted((k, v) for k, v in meta.items() if k not in HASHED_META_EXCLUDED)
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()


def _write_temp(directory: Path, data: bytes) -> Path:
    """Write data to a fresh, fsynced temporary file in `directory` (same filesystem as the target)."""
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _publish_exclusive(temp: Path, target: Path) -> bool:
    """Give the complete file `temp` the name `target` unless that name exists; False if it does."""
    try:
        os.link(temp, target)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this filesystem: reserve the name with O_EXCL, then replace it
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        os.replace(temp, target)
        return True


def snapshot_bytes(memory: SpatialMemory, meta: dict | None = None) -> bytes:
    """The safetensors bytes of a snapshot; `meta` values are stored as strings."""
    meta = {str(k): str(v) for k, v in (meta or {}).items()}
    meta.update(
        schema=SCHEMA,
        schema_version=str(SCHEMA_VERSION),
        voxel_size=repr(memory.voxel_size),
        next_id=str(memory.next_id),
        sha256=memory.sha256(),
    )
    meta.setdefault("created", datetime.now(timezone.utc).isoformat())
    meta["meta_sha256"] = _meta_hash(meta)
    tensors = {name: getattr(memory, name).detach().cpu().contiguous() for name in FIELDS}
    return safetensors.torch.save(tensors, metadata=meta)


def save_snapshot(path, memory: SpatialMemory, meta: dict | None = None) -> Path:
    """Write one snapshot atomically (temp file in the same folder, fsync, os.replace, fsync folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _write_temp(path.parent, snapshot_bytes(memory, meta))
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def _read_header(data: bytes, source: str) -> dict:
    if len(data) < 8:
        raise MemoryIntegrityError(f"{source}: file is truncated ({len(data)} bytes)")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise MemoryIntegrityError(f"{source}: header claims {size} bytes but only {len(data) - 8} follow; file is truncated")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MemoryIntegrityError(f"{source}: header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise MemoryIntegrityError(f"{source}: header is not a JSON object")
    return header


def parse_snapshot(data: bytes, source: str = "snapshot", device: torch.device | str = "cpu") -> tuple[SpatialMemory, dict[str, str]]:
    """Bytes -> (memory, metadata), verifying schema, metadata hash and content hash."""
    meta = _read_header(data, source).get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise MemoryIntegrityError(f"{source}: metadata is missing or malformed")
    if meta.get("schema") != SCHEMA:
        raise MemoryIntegrityError(f"{source}: schema is {meta.get('schema')!r}, expected {SCHEMA!r}")
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise MemoryIntegrityError(
            f"{source}: schema version {meta.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION})"
        )
    if meta.get("meta_sha256") != _meta_hash(meta):
        raise MemoryIntegrityError(f"{source}: metadata hash mismatch; the header was altered")
    try:
        tensors = safetensors.torch.load(data)
    except Exception as err:  # safetensors reports corruption with its own error types
        raise MemoryIntegrityError(f"{source}: tensors cannot be read ({err})") from None
    if set(tensors) != set(FIELDS):
        raise MemoryIntegrityError(f"{source}: tensors {sorted(tensors)} do not match the schema fields {list(FIELDS)}")
    try:
        memory = SpatialMemory.from_arrays(
            tensors, voxel_size=float(meta["voxel_size"]), next_id=int(meta["next_id"]), device=device
        )
    except (KeyError, ValueError) as err:
        raise MemoryIntegrityError(f"{source}: content is invalid ({err})") from None
    if memory.sha256() != meta.get("sha256"):
        raise MemoryIntegrityError(f"{source}: content sha256 mismatch; the point data was altered or truncated")
    return memory, meta


def load_snapshot(path, device: torch.device | str = "cpu") -> tuple[SpatialMemory, dict[str, str]]:
    """Read and verify one snapshot file -> (memory, metadata)."""
    path = Path(path)
    return parse_snapshot(path.read_bytes(), str(path.name), device)


class MemoryStore:
    """Append-only versions 1, 2, 3... of a memory, one snapshot file each, in folder `root`.

    A version is published with os.link(temp, vNNNNNN.safetensors), which fails if the name
    exists (the same exclusivity as O_CREAT|O_EXCL) and never exposes a half-written file;
    on filesystems without hard links the name is reserved with O_EXCL and then replaced.
    A save that loses the race to another thread or process retries with the next number.
    """

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, version: int) -> Path:
        return self.root / f"v{int(version):06d}.safetensors"

    def versions(self) -> list[int]:
        found = (VERSION_FILE.match(entry.name) for entry in os.scandir(self.root))
        return sorted(int(m.group(1)) for m in found if m)

    def latest(self) -> int | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def save(self, memory: SpatialMemory, parent: int | None = None, message: str = "") -> int:
        """Store a new version and return its number.

        `parent` is the version this one was derived from; None means the latest version at
        the time of the call (nothing for the first version).
        """
        if parent is None:
            parent = self.latest()
        elif parent not in self.versions():
            raise MemoryFormatError(f"parent version {parent} does not exist in {self.root.name}")
        for _ in range(MAX_SAVE_ATTEMPTS):
            version = (self.latest() or 0) + 1
            meta = {
                "version": str(version),
                "parent": "" if parent is None else str(parent),
                "message": message,
            }
            temp = _write_temp(self.root, snapshot_bytes(memory, meta))
            try:
                published = _publish_exclusive(temp, self.path(version))
            finally:
                temp.unlink(missing_ok=True)
            if published:
                fsync_dir(self.root)
                return version
        raise RuntimeError(f"could not claim a version number in {self.root} after {MAX_SAVE_ATTEMPTS} attempts")

    def load(self, version: int | None = None, device: torch.device | str = "cpu") -> SpatialMemory:
        """The memory of `version` (default: latest); raises MemoryIntegrityError if the file is damaged."""
        return self.load_with_meta(version, device)[0]

    def load_with_meta(self, version: int | None = None, device: torch.device | str = "cpu") -> tuple[SpatialMemory, dict]:
        if version is None:
            version = self.latest()
            if version is None:
                raise FileNotFoundError(f"memory store {self.root} holds no versions")
        path = self.path(version)
        if not path.exists():
            raise FileNotFoundError(f"memory store {self.root} has no version {version}")
        memory, meta = load_snapshot(path, device)
        if meta.get("version") != str(version):
            raise MemoryIntegrityError(f"{path.name}: metadata says version {meta.get('version')!r}")
        return memory, meta

    def metadata(self, version: int) -> dict:
        """Metadata of one version from its header (not verified against the content)."""
        with open(self.path(version), "rb") as handle:
            head = handle.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else 0
            header = _read_header(head + handle.read(size), self.path(version).name)
        meta = dict(header.get("__metadata__") or {})
        return {
            "version": version,
            "parent": int(meta["parent"]) if meta.get("parent") else None,
            "message": meta.get("message", ""),
            "created": meta.get("created"),
            "sha256": meta.get("sha256"),
            "voxel_size": float(meta["voxel_size"]) if "voxel_size" in meta else None,
            "next_id": int(meta["next_id"]) if "next_id" in meta else None,
            "schema": meta.get("schema"),
            "schema_version": meta.get("schema_version"),
        }

    def history(self) -> list[dict]:
        """Metadata of every version, oldest first; a version whose header is unreadable gets an "error" entry."""
        entries = []
        for version in self.versions():
            try:
                entries.append(self.metadata(version))
            except (MemoryIntegrityError, ValueError, OSError) as err:
                entries.append({"version": version, "error": str(err)})
        return entries
