"""Run records: how runs that do not go through a service (`spatia generate` without --server,
`spatia batch`, its Ray tasks, the Flamenco job type, which runs `spatia batch`) become visible
to the dashboard. Each run keeps one small JSON file in a runs folder on its machine, rewritten
atomically as it progresses (at most once a second, and on every stage change); a service on the
same machine reads the folder and lists the runs beside its own jobs, read-only.

The folder: $SPATIA_RUNS_DIR, else ~/.spatia/runs (created 0700). SPATIA_RUNS_DIR="" turns
records off. $SPATIA_RUN_ORIGIN names the origin when a caller wants another than the default
(a farm's job type, for instance). Writing a record never stops a run: a folder that cannot be
written turns records off for that run.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from .atomic import write_json

SCHEMA = "spatia.formats.run"
RUNS_ENV = "SPATIA_RUNS_DIR"
ORIGIN_ENV = "SPATIA_RUN_ORIGIN"
DEFAULT_RUNS_DIR = Path("~/.spatia/runs")
WRITE_INTERVAL_S = 1.0
MIN_FRACTION_FOR_ETA = 0.02
FINAL = ("succeeded", "failed", "cancelled", "interrupted")


def runs_dir() -> Path | None:
    """The runs folder of this machine, or None when records are turned off."""
    value = os.environ.get(RUNS_ENV)
    if value is not None:
        return Path(value).expanduser() if value.strip() else None
    return DEFAULT_RUNS_DIR.expanduser()


class RunRecord:
    """One run's record. `progress(fraction, stage)` fits the engine's progress callbacks."""

    def __init__(self, origin: str, name: str, *, world: str | None = None, status: str = "running",
                 folder: Path | None = None):
        self.folder = runs_dir() if folder is None else Path(folder)
        origin = os.environ.get(ORIGIN_ENV) or origin
        now = time.time()
        self.record = {"schema": SCHEMA, "version": 1, "id": f"r-{uuid.uuid4().hex[:12]}", "origin": origin,
                       "name": name, "world": world, "status": status, "stage": status, "fraction": 0.0,
                       "eta_s": None, "created": now, "started": now if status == "running" else None,
                       "finished": None, "host": socket.gethostname(), "pid": os.getpid(), "error": None}
        self._last_write = 0.0
        self._started = time.monotonic()
        self._write(force=True)

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / f"{self.record['id']}.json"

    def _write(self, force: bool = False) -> None:
        if self.folder is None:
            return
        now = time.monotonic()
        if not force and now - self._last_write < WRITE_INTERVAL_S:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_json(self.path, self.record)
        except OSError:
            self.folder = None  # a record is a convenience: the run goes on without one
        self._last_write = now

    def start(self) -> None:
        self.record.update(status="running", stage="starting", started=time.time())
        self._started = time.monotonic()
        self._write(force=True)

    def progress(self, fraction: float, stage: str) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        changed = stage != self.record["stage"]
        elapsed = time.monotonic() - self._started
        eta = elapsed / fraction * (1 - fraction) if fraction >= MIN_FRACTION_FOR_ETA else None
        self.record.update(status="running", stage=stage, fraction=fraction, eta_s=eta)
        self._write(force=changed)

    def finish(self, status: str, error: str | None = None) -> None:
        if status not in FINAL:
            raise ValueError(f"{status!r} is not a final run state ({', '.join(FINAL)})")
        fraction = 1.0 if status == "succeeded" else self.record["fraction"]
        self.record.update(status=status, stage=status, fraction=fraction, eta_s=None, finished=time.time(),
                           error=error)
        self._write(force=True)

    def __enter__(self) -> "RunRecord":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.finish("succeeded")
        elif issubclass(kind, KeyboardInterrupt):
            self.finish("interrupted", "interrupted")
        else:
            self.finish("failed", f"{kind.__name__}: {error}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_runs(folder: Path | None, limit: int = 1000) -> list[dict]:
    """The newest `limit` records of a runs folder, oldest first. A run still marked running whose
    process on this machine is gone is reported `interrupted`. Unreadable files are skipped."""
    if folder is None or not Path(folder).is_dir():
        return []
    files = sorted(Path(folder).glob("r-*.json"), key=lambda p: p.stat().st_mtime)[-limit:]
    host = socket.gethostname()
    records = []
    for path in files:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            continue
        if record.get("status") in ("running", "queued") and record.get("host") == host \
                and isinstance(record.get("pid"), int) and not _alive(record["pid"]):
            record = {**record, "status": "interrupted", "stage": "interrupted (its process is gone)", "eta_s": None}
        records.append(record)
    return records


__all__ = ["DEFAULT_RUNS_DIR", "RunRecord", "read_runs", "runs_dir"]
