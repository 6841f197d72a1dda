"""Worlds on disk, by server-generated id.

A client's id string is matched against ID_PATTERN before it is joined to a path, and file
paths inside a world or job folder are only ever built from fixed patterns (see files.py).
A world appears under its id only once fully initialised (it is built in a hidden folder
and renamed into place) and disappears by an atomic rename before it is removed.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spatia.formats.atomic import write_json
from spatia.engine.world import SCHEMA as WORLD_SCHEMA
from spatia.engine.world import SCHEMA_VERSION as WORLD_SCHEMA_VERSION
from spatia.engine.world import World

from .errors import ApiError, not_found

ID_RE = re.compile(r"^[a-z0-9-]{1,64}$")
SERVICE_FILE = "service.json"
HIDDEN_PREFIX = "."
STALE_CREATION_S = 24 * 3600


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise ApiError(404, "not_found", f"{what} {value!r} does not exist (ids match [a-z0-9-]{{1,64}})")
    return value


class WorldStorage:
    """The `worlds/` folder: one World folder per id, plus a lock per world for writers."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # weak: a lock lives while someone holds or waits on it, so unknown ids leave nothing behind
        self._locks: weakref.WeakValueDictionary[str, threading.RLock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Hidden folders are half-created or half-deleted worlds from a previous run."""
        for entry in self.root.iterdir():
            if entry.name.startswith(HIDDEN_PREFIX) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    def lock(self, world_id: str) -> threading.RLock:
        """Held while a world's memory is written or a job is marked running on it."""
        with self._guard:
            lock = self._locks.get(world_id)
            if lock is None:
                lock = self._locks[world_id] = threading.RLock()
            return lock

    def path(self, world_id: str) -> Path:
        check_id(world_id, "world")
        path = self.root / world_id
        if not (path / "world.json").is_file():
            raise not_found("world", world_id)
        return path

    def exists(self, world_id: str) -> bool:
        return bool(ID_RE.match(world_id)) and (self.root / world_id / "world.json").is_file()

    def open(self, world_id: str, *, recover: bool = False) -> World:
        """The world, read from its world.json. `recover=True` (only for the job about to run
        on it, or at start-up) also removes folders a crashed round left; readers must not do
        that, as a running round's folder looks the same."""
        # under the world's lock, so a deletion cannot slip between the check and World(), whose
        # MemoryStore would otherwise re-create `memory/` under the deleted world's name
        with self.lock(world_id):
            path = self.path(world_id)
            if recover:
                return World.open(path).recover()
            try:
                state = json.loads((path / "world.json").read_text())
            except FileNotFoundError:
                raise not_found("world", world_id) from None
            except (OSError, ValueError) as err:
                raise ApiError(500, "internal_error", f"world {world_id} is unreadable: {err}") from None
            if state.get("schema") != WORLD_SCHEMA or state.get("version") != WORLD_SCHEMA_VERSION:
                raise ApiError(500, "internal_error",
                               f"world {world_id} is not a {WORLD_SCHEMA} v{WORLD_SCHEMA_VERSION} world")
            return World(path, state)

    def ids(self) -> list[str]:
        found = [entry for entry in self.root.iterdir()
                 if ID_RE.match(entry.name) and (entry / "world.json").is_file()]
        return [entry.name for entry in sorted(found, key=lambda e: (e.stat().st_mtime, e.name))]

    def record(self, world_id: str, world: World | None = None) -> dict:
        """The World object of the API."""
        world = world or self.open(world_id)
        info_path = world.root / SERVICE_FILE
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        state = world.state
        return {
            "id": world_id,
            "name": info.get("name", world_id),
            "width": state["width"],
            "height": state["height"],
            "fps": state["fps"],
            "voxel_size": state["voxel_size"],
            "frames": state["frames"],
            "memory_version": state["memory_version"],
            "rounds": state["rounds"],
            "created": info.get("created", state.get("created", 0.0)),
        }

    @contextmanager
    def creating(self, name: str) -> Iterator[tuple[str, Path]]:
        """Yields (id, folder to build the world in); publishes it under its id on success,
        removes it on failure."""
        world_id = new_id("w")
        building = self.root / f"{HIDDEN_PREFIX}creating-{world_id}"
        building.mkdir()
        try:
            yield world_id, building
            write_json(building / SERVICE_FILE, {"name": name, "created": time.time()})
            building.rename(self.root / world_id)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise

    def delete(self, world_id: str) -> None:
        """Rename the world away (atomic), then remove it. The caller holds the world's lock; its
        lock stays in the table, so a request waiting on it sees the world gone (404)."""
        path = self.path(world_id)
        trash = self.root / f"{HIDDEN_PREFIX}deleted-{world_id}-{secrets.token_hex(4)}"
        path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
