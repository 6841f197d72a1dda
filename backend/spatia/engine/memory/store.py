"""Memory snapshots (safetensors) and an append-only store of numbered versions.

A file holds tensors and string metadata: schema name and version, kind ("full" or
"delta"), version, parent, voxel size, next_id, point count, the field names, creation
time, message, `sha256` (the content hash of the version's whole memory) and `meta_sha256`
(over every other metadata entry). A full snapshot holds every field of every point; a
delta (see delta.py) holds what changed against its parent and also records the parent's
`parent_sha256` and its `depth` (deltas since the last full snapshot). Loading checks every
hash, so a truncated or altered file raises MemoryIntegrityError and is never returned.
Files written before a field existed load with that field's default.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import safetensors.torch
import torch

from spatia.formats.atomic import fsync_dir, make_temp

from .cloud import FIELDS, SpatialMemory
from .delta import apply_delta, content_hash, delta_nbytes, make_delta
from .errors import MemoryFormatError, MemoryIntegrityError

SCHEMA = "spatia.memory"
SCHEMA_VERSION = 1
VERSION_FILE = re.compile(r"^v(\d{6,})\.safetensors$")
MAX_SAVE_ATTEMPTS = 1000
HASHED_META_EXCLUDED = {"meta_sha256"}
DEFAULT_FULL_EVERY = 10  # a full snapshot at least every this many versions along a chain
FULL_FOLDER = "full"  # standalone full snapshots built for delta versions
RECENT_STORES = 4  # stores (folders) whose last saved or loaded memory this process keeps


def _meta_hash(meta: dict[str, str]) -> str:
    items = sorted((k, v) for k, v in meta.items() if k not in HASHED_META_EXCLUDED)
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()


def _write_temp(directory: Path, data: bytes) -> Path:
    """Write data to a fresh, fsynced temporary file in `directory` (same filesystem as the target)."""
    fd, name = make_temp(directory, prefix=".tmp-", suffix=".safetensors")
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


def _finish_meta(meta: dict[str, str]) -> dict[str, str]:
    meta.update(schema=SCHEMA, schema_version=str(SCHEMA_VERSION))
    meta.setdefault("created", datetime.now(timezone.utc).isoformat())
    meta["meta_sha256"] = _meta_hash(meta)
    return meta


def _full_bytes(memory: SpatialMemory, meta: dict | None, sha256: str) -> bytes:
    meta = {str(k): str(v) for k, v in (meta or {}).items()}
    meta.update(kind="full", voxel_size=repr(memory.voxel_size), next_id=str(memory.next_id), sha256=sha256,
                points=str(len(memory)), fields=",".join(FIELDS))
    tensors = {name: getattr(memory, name).detach().cpu().contiguous() for name in FIELDS}
    return safetensors.torch.save(tensors, metadata=_finish_meta(meta))


def snapshot_bytes(memory: SpatialMemory, meta: dict | None = None) -> bytes:
    """The safetensors bytes of a full snapshot; `meta` values are stored as strings."""
    return _full_bytes(memory, meta, memory.sha256())


def _delta_bytes(tensors: dict[str, torch.Tensor], memory: SpatialMemory, meta: dict, sha256: str) -> bytes:
    meta = {str(k): str(v) for k, v in meta.items()}
    meta.update(kind="delta", voxel_size=repr(memory.voxel_size), next_id=str(memory.next_id), sha256=sha256,
                points=str(len(memory)), fields=",".join(FIELDS))
    return safetensors.torch.save(tensors, metadata=_finish_meta(meta))


def save_snapshot(path, memory: SpatialMemory, meta: dict | None = None) -> Path:
    """Write one full snapshot atomically (temp file in the same folder, fsync, os.replace, fsync folder)."""
    return _write_atomic(Path(path), snapshot_bytes(memory, meta))


def _write_atomic(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _write_temp(path.parent, data)
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


def _read_header_file(path: Path) -> dict:
    """The JSON header of a safetensors file, reading only the header's bytes."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else 0
        # never more than the file holds: a damaged length would otherwise ask for exabytes
        return _read_header(head + handle.read(min(size, os.fstat(handle.fileno()).st_size)), path.name)


def _checked_meta(header: dict, source: str) -> dict[str, str]:
    """The header's metadata after checking its schema and its hash."""
    meta = header.get("__metadata__")
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
    if meta.get("kind", "full") not in ("full", "delta"):
        raise MemoryIntegrityError(f"{source}: unknown kind {meta.get('kind')!r}")
    return meta


def _load_tensors(data: bytes, source: str) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load(data)
    except Exception as err:  # safetensors reports corruption with its own error types
        raise MemoryIntegrityError(f"{source}: tensors cannot be read ({err})") from None


def _field_names(meta: dict[str, str], held, source: str) -> list[str]:
    """The fields a file was written with (in hash order): its `fields` entry, else the ones it holds."""
    names = meta["fields"].split(",") if meta.get("fields") else [name for name in FIELDS if name in held]
    unknown = sorted(set(names) - set(FIELDS)) or sorted(set(held) - set(FIELDS))
    if unknown:
        raise MemoryIntegrityError(f"{source}: fields {unknown} are not part of this schema ({list(FIELDS)})")
    return names


def _parse_full(data: bytes, source: str, device) -> tuple[SpatialMemory, dict[str, str], str]:
    """(memory, metadata, the memory's sha256 today) of a verified full snapshot."""
    meta = _checked_meta(_read_header(data, source), source)
    if meta.get("kind") == "delta":
        raise MemoryIntegrityError(
            f"{source}: a delta of version {meta.get('version')} against version {meta.get('parent')}, "
            "not a full snapshot; load it through its store"
        )
    tensors = _load_tensors(data, source)
    names = _field_names(meta, tensors, source)
    if set(tensors) != set(names):
        raise MemoryIntegrityError(f"{source}: tensors {sorted(tensors)} do not match the fields {names}")
    try:
        memory = SpatialMemory.from_arrays(
            tensors, voxel_size=float(meta["voxel_size"]), next_id=int(meta["next_id"]), device=device
        )
    except (KeyError, ValueError) as err:
        raise MemoryIntegrityError(f"{source}: content is invalid ({err})") from None
    sha256 = memory.sha256()
    if not _hash_matches(meta.get("sha256"), memory, sha256, names):
        raise MemoryIntegrityError(f"{source}: content sha256 mismatch; the point data was altered or truncated")
    _check_points(memory, meta, source)
    return memory, meta, sha256


def _check_points(memory: SpatialMemory, meta: dict[str, str], source: str) -> None:
    if meta.get("points", str(len(memory))) != str(len(memory)):
        raise MemoryIntegrityError(f"{source}: metadata says {meta['points']} points, the content holds {len(memory)}")


def parse_snapshot(data: bytes, source: str = "snapshot", device: torch.device | str = "cpu") -> tuple[SpatialMemory, dict[str, str]]:
    """Bytes of a full snapshot -> (memory, metadata), verifying schema, metadata hash and content hash.

    Fields the snapshot was written without get their defaults; a delta is refused.
    """
    memory, meta, _ = _parse_full(data, source, device)
    return memory, meta


def load_snapshot(path, device: torch.device | str = "cpu") -> tuple[SpatialMemory, dict[str, str]]:
    """Read and verify one snapshot file -> (memory, metadata)."""
    path = Path(path)
    return parse_snapshot(path.read_bytes(), str(path.name), device)


def _hash_matches(recorded: str | None, memory: SpatialMemory, sha256: str, names: list[str]) -> bool:
    """Whether a file written with the fields `names` recorded `memory`'s content hash: its hash
    today (`sha256`) or, for a file from before some fields existed, the hash over its own fields."""
    return recorded == sha256 or (names != list(FIELDS) and recorded == content_hash(memory, names))


@dataclass(frozen=True)
class _Loaded:
    """A verified memory of one version: its metadata and its sha256 over the current FIELDS."""

    version: int
    memory: SpatialMemory
    sha256: str
    meta: dict[str, str]
    stamp: tuple[int, int, int]  # the file's (inode, size, mtime) when it was read or written


_recent: OrderedDict[Path, _Loaded] = OrderedDict()  # folder -> its last saved or loaded version
_recent_lock = threading.Lock()


class MemoryStore:
    """Append-only versions 1, 2, 3... of a memory, one file each, in folder `root`.

    A version's file is a full snapshot or a delta against its parent (see delta.py). The
    first version, every version whose parent is `full_every - 1` deltas away from a full
    snapshot, a save with full=True, and a memory the delta cannot express in order are
    written as full snapshots; the rest as deltas. Loading walks back to the nearest full
    snapshot (or to the version this store last saved or loaded, kept in memory) and applies
    the deltas forward, checking each file's metadata hash, that each delta's parent hash is
    the hash of the memory rebuilt so far, and each rebuilt memory's content hash.

    A version is published with os.link(temp, vNNNNNN.safetensors), which fails if the name
    exists (the same exclusivity as O_CREAT|O_EXCL) and never exposes a half-written file;
    on filesystems without hard links the name is reserved with O_EXCL and then replaced.
    A save that loses the race to another thread or process retries with the next number.

    The memory last saved or loaded in a folder is kept in this process (for the last
    RECENT_STORES folders, shared by every MemoryStore of that folder) while its file is
    unchanged (same inode, size and mtime), so loading the version just saved, or the next
    one, costs no replay. Memories are immutable: the kept one is handed out again.
    """

    def __init__(self, root, full_every: int = DEFAULT_FULL_EVERY):
        if int(full_every) < 1:
            raise ValueError(f"full_every must be at least 1, got {full_every}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.full_every = int(full_every)
        self._key = self.root.resolve()

    def path(self, version: int) -> Path:
        """The file of `version`: a full snapshot or a delta (see snapshot_file for a standalone one)."""
        return self.root / f"v{int(version):06d}.safetensors"

    def versions(self) -> list[int]:
        found = (VERSION_FILE.match(entry.name) for entry in os.scandir(self.root))
        return sorted(int(m.group(1)) for m in found if m)

    def latest(self) -> int | None:
        versions = self.versions()
        return versions[-1] if versions else None

    # --- writing ------------------------------------------------------------------------
    def save(self, memory: SpatialMemory, parent: int | None = None, message: str = "", *, full: bool = False) -> int:
        """Store a new version and return its number.

        `parent` is the version this one was derived from; None means the latest version at
        the time of the call (nothing for the first version). full=True writes a full snapshot.
        When the parent is the version last saved or loaded in this folder, the bytes written
        follow the size of the change; the CPU cost is one hash of `memory` and one pass
        comparing it with the parent.
        """
        if parent is None:
            parent = self.latest()
        elif parent not in self.versions():
            raise MemoryFormatError(f"parent version {parent} does not exist in {self.root.name}")
        sha256 = memory.sha256()
        delta = None if parent is None or full else self._delta_from(parent, memory)
        for _ in range(MAX_SAVE_ATTEMPTS):
            version = (self.latest() or 0) + 1
            meta = {"version": str(version), "parent": "" if parent is None else str(parent), "message": message}
            if delta is None:
                data = _full_bytes(memory, meta, sha256)
            else:
                tensors, depth, parent_sha256 = delta
                data = _delta_bytes(tensors, memory, {**meta, "depth": depth, "parent_sha256": parent_sha256}, sha256)
            temp = _write_temp(self.root, data)
            try:
                published = _publish_exclusive(temp, self.path(version))
            finally:
                temp.unlink(missing_ok=True)
            if published:
                fsync_dir(self.root)
                meta = _checked_meta(_read_header(data, ""), "")
                self._remember(_Loaded(version, memory, sha256, meta, self._stamp(version)))
                return version
        raise RuntimeError(f"could not claim a version number in {self.root} after {MAX_SAVE_ATTEMPTS} attempts")

    def _delta_from(self, parent: int, memory: SpatialMemory) -> tuple[dict, int, str] | None:
        """(tensors, chain depth, parent sha256) of a delta from `parent`, or None where a full snapshot is due."""
        try:
            meta = self._meta(parent)
            depth = int(meta.get("depth", 0)) + 1 if meta.get("kind") == "delta" else 1
            if depth >= self.full_every:
                return None
            base = self._load(parent, memory.device)
        except MemoryIntegrityError:  # a damaged parent: the new version stands alone
            return None
        tensors = make_delta(base.memory, memory)
        if tensors is None or delta_nbytes(tensors) >= memory.nbytes:
            return None
        return tensors, depth, base.sha256

    def _stamp(self, version: int) -> tuple[int, int, int]:
        stat = self.path(version).stat()
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def _remember(self, loaded: _Loaded) -> None:
        with _recent_lock:
            _recent[self._key] = loaded
            _recent.move_to_end(self._key)
            while len(_recent) > RECENT_STORES:
                _recent.popitem(last=False)

    def _recalled(self) -> _Loaded | None:
        with _recent_lock:
            last = _recent.get(self._key)
        if last is not None and (not self.path(last.version).exists() or self._stamp(last.version) != last.stamp):
            return None  # its file was replaced or removed since: read everything again
        return last

    def forget(self) -> None:
        """Drop the memory kept for this folder, so the next load reads and verifies every file it needs."""
        with _recent_lock:
            _recent.pop(self._key, None)

    # --- reading ------------------------------------------------------------------------
    def _meta(self, version: int) -> dict[str, str]:
        """The verified metadata of one version's file (header only)."""
        path = self.path(version)
        meta = _checked_meta(_read_header_file(path), path.name)
        if meta.get("version") != str(version):
            raise MemoryIntegrityError(f"{path.name}: metadata says version {meta.get('version')!r}")
        return meta

    def _load(self, version: int, device) -> _Loaded:
        last = self._recalled()
        chain: list[int] = []  # the deltas to apply, newest first
        current = version
        while last is None or last.version != current:
            path = self.path(current)
            if not path.exists():
                if chain:
                    raise MemoryIntegrityError(
                        f"{self.path(chain[-1]).name}: its parent version {current} ({path.name}) is missing, "
                        "so this delta cannot be rebuilt"
                    )
                raise FileNotFoundError(f"memory store {self.root} has no version {version}")
            meta = self._meta(current)
            if meta.get("kind") != "delta":
                memory, meta, sha256 = _parse_full(path.read_bytes(), path.name, device)
                if meta.get("version") != str(current):
                    raise MemoryIntegrityError(f"{path.name}: metadata says version {meta.get('version')!r}")
                last = _Loaded(current, memory, sha256, meta, self._stamp(current))
                break
            parent = meta.get("parent", "")
            if not parent.isdigit() or not 0 < int(parent) < current:
                raise MemoryIntegrityError(f"{path.name}: a delta with parent {parent!r}")
            chain.append(current)
            current = int(parent)
        for number in reversed(chain):
            last = self._apply(last, number)
        self._remember(last)
        return last

    def _apply(self, parent: _Loaded, version: int) -> _Loaded:
        """Version `version` (a delta) rebuilt on its verified parent, verified in turn."""
        path = self.path(version)
        data = path.read_bytes()
        meta = _checked_meta(_read_header(data, path.name), path.name)
        if (meta.get("kind"), meta.get("version"), meta.get("parent")) != ("delta", str(version), str(parent.version)):
            raise MemoryIntegrityError(f"{path.name}: not the delta of version {version} on version {parent.version}")
        tensors = _load_tensors(data, path.name)
        names = _field_names(meta, {key.partition(".")[2] for key in tensors if "." in key}, path.name)
        if not _hash_matches(meta.get("parent_sha256"), parent.memory, parent.sha256, names):
            raise MemoryIntegrityError(
                f"{path.name}: parent sha256 mismatch; version {parent.version} is not the memory it was made from"
            )
        try:
            voxel_size, next_id = float(meta["voxel_size"]), int(meta["next_id"])
        except (KeyError, ValueError) as err:
            raise MemoryIntegrityError(f"{path.name}: metadata is invalid ({err})") from None
        memory = apply_delta(parent.memory, tensors, voxel_size=voxel_size, next_id=next_id, source=path.name)
        sha256 = memory.sha256()
        if not _hash_matches(meta.get("sha256"), memory, sha256, names):
            raise MemoryIntegrityError(f"{path.name}: content sha256 mismatch; the delta was altered or truncated")
        _check_points(memory, meta, path.name)
        return _Loaded(version, memory, sha256, meta, self._stamp(version))

    def load(self, version: int | None = None, device: torch.device | str = "cpu") -> SpatialMemory:
        """The memory of `version` (default: latest); raises MemoryIntegrityError if a file it needs is damaged."""
        return self.load_with_meta(version, device)[0]

    def load_with_meta(self, version: int | None = None, device: torch.device | str = "cpu") -> tuple[SpatialMemory, dict]:
        if version is None:
            version = self.latest()
            if version is None:
                raise FileNotFoundError(f"memory store {self.root} holds no versions")
        loaded = self._load(int(version), device)
        memory = loaded.memory if loaded.memory.device == torch.device(device) else loaded.memory.to(device)
        return memory, dict(loaded.meta)

    def snapshot_bytes(self, version: int) -> bytes:
        """A standalone full snapshot of `version`, built from its verified memory (version, parent,
        message and creation time kept)."""
        loaded = self._load(int(version), "cpu")
        kept = {key: loaded.meta[key] for key in ("version", "parent", "message", "created") if key in loaded.meta}
        return _full_bytes(loaded.memory.to("cpu"), kept, loaded.sha256)

    def snapshot_file(self, version: int) -> Path:
        """A standalone full snapshot file of `version`: its own file if it is one, else one
        built once (verified) and kept under full/ (written atomically)."""
        meta = self._meta(version)
        if meta.get("kind") != "delta":
            return self.path(version)
        target = self.root / FULL_FOLDER / self.path(version).name
        try:  # a file kept from before is served only if its content still checks out, not just its header
            _, cached, _ = _parse_full(target.read_bytes(), target.name, "cpu")
            if (cached.get("sha256"), cached.get("version")) == (meta["sha256"], str(version)):
                return target
        except (OSError, MemoryIntegrityError):
            pass
        return _write_atomic(target, self.snapshot_bytes(version))

    # --- describing ---------------------------------------------------------------------
    def points(self, version: int) -> int:
        """The point count of `version`, from its header."""
        return self.metadata(version)["points"]

    def nbytes_on_disk(self, version: int) -> int:
        """The size of `version`'s own file (a delta's, for a delta)."""
        return self.path(version).stat().st_size

    def metadata(self, version: int) -> dict:
        """Metadata of one version from its header (its hash checked; the content is not)."""
        path = self.path(version)
        header = _read_header_file(path)
        meta = _checked_meta(header, path.name)
        try:
            points = int(meta["points"]) if "points" in meta else int(header["xyz"]["shape"][0])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise MemoryIntegrityError(f"{path.name}: no point count ({err})") from None
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
            "kind": meta.get("kind", "full"),
            "points": points,
            "bytes": path.stat().st_size,
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
