"""The job queue, persisted in SQLite (WAL): jobs survive restarts and crashes.

States: queued -> running -> succeeded | failed | cancelled | interrupted. A job found
`running` when the service starts was cut off by a crash and becomes `interrupted`;
/resume queues an interrupted or failed job again. Queued jobs simply stay queued.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import conflict, not_found
from .storage import check_id, new_id

FINAL = ("succeeded", "failed", "cancelled", "interrupted")
RESUMABLE = ("interrupted", "failed")
MAX_MESSAGES = 50
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    world_id TEXT NOT NULL,
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    fraction REAL NOT NULL DEFAULT 0,
    eta_s REAL,
    messages TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    result TEXT,
    shot TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    request_sha256 TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    first_frame INTEGER,
    first_round INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, seq);
CREATE INDEX IF NOT EXISTS jobs_by_world ON jobs(world_id, seq);
"""


def request_hash(world_id: str, shot: dict) -> str:
    return hashlib.sha256(json.dumps([world_id, shot], sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class JobStore:
    """Thread-safe: one connection, used under a lock (SQLite serialises writers anyway)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer version of the service (schema {version})")
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- reading -------------------------------------------------------------------------------
    @staticmethod
    def _public(row: sqlite3.Row) -> dict:
        return {
            "id": row["id"],
            "world_id": row["world_id"],
            "status": row["status"],
            "stage": row["stage"],
            "fraction": row["fraction"],
            "eta_s": row["eta_s"],
            "messages": json.loads(row["messages"]),
            "error": json.loads(row["error"]) if row["error"] else None,
            "created": row["created"],
            "started": row["started"],
            "finished": row["finished"],
            "result": json.loads(row["result"]) if row["result"] else None,
        }

    def _row(self, job_id: str) -> sqlite3.Row:
        check_id(job_id, "job")
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise not_found("job", job_id)
        return row

    def get(self, job_id: str) -> dict:
        return self._public(self._row(job_id))

    def internal(self, job_id: str) -> dict:
        """Every column, including the shot and where the job started in its world."""
        row = self._row(job_id)
        return dict(zip(row.keys(), row))

    def list(self, world_id: str | None = None) -> list[dict]:
        with self._lock:
            if world_id is None:
                rows = self._db.execute("SELECT * FROM jobs ORDER BY seq").fetchall()
            else:
                rows = self._db.execute("SELECT * FROM jobs WHERE world_id = ? ORDER BY seq", (world_id,)).fetchall()
        return [self._public(row) for row in rows]

    def rows(self) -> list[dict]:
        """Every job as a compact row for listings (no messages, no frame lists), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, world_id, status, stage, fraction, eta_s, created, started, finished, attempts, "
                "json_extract(shot, '$.name'), json_extract(shot, '$.generator'), "
                "json_extract(error, '$.message') FROM jobs ORDER BY seq").fetchall()
        keys = ("id", "world_id", "status", "stage", "fraction", "eta_s", "created", "started", "finished",
                "attempts", "shot", "generator", "error")
        return [dict(zip(keys, row)) for row in rows]

    def queue_depth(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]

    def count_on_world(self, world_id: str, statuses: tuple[str, ...]) -> int:
        marks = ",".join("?" * len(statuses))
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE world_id = ? AND status IN ({marks})",
                                    (world_id, *statuses)).fetchone()[0]

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    # --- writing -------------------------------------------------------------------------------
    def by_key(self, idempotency_key: str, world_id: str, shot: dict) -> dict | None:
        """The job an earlier request with this key created (None if none); a different request
        under the same key is a conflict."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
        if row is None:
            return None
        if row["request_sha256"] != request_hash(world_id, shot):
            raise conflict("this Idempotency-Key was already used for a different request", "Idempotency-Key")
        return self._public(row)

    def submit(self, world_id: str, shot: dict, idempotency_key: str | None) -> tuple[dict, bool]:
        """(job, created). The same idempotency key returns the job it first created, provided
        the request is the same; a different request under a used key is a conflict."""
        digest = request_hash(world_id, shot)
        with self._lock:
            if idempotency_key is not None:
                previous = self.by_key(idempotency_key, world_id, shot)
                if previous is not None:
                    return previous, False
            job_id = new_id("j")
            self._db.execute(
                "INSERT INTO jobs (id, world_id, status, stage, created, shot, idempotency_key, request_sha256) "
                "VALUES (?, ?, 'queued', 'queued', ?, ?, ?, ?)",
                (job_id, world_id, time.time(), json.dumps(shot), idempotency_key, digest),
            )
        return self.get(job_id), True

    def claim_next(self, mark_running: Callable[[str, Callable[[], bool]], bool]) -> dict | None:
        """The oldest queued job whose world runs no job, switched to running; None if there is none.

        `mark_running(world_id, switch)` holds the world's lock around `switch()`, so a memory
        write on that world and this switch never interleave. The store's own lock is not held
        while the world's lock is taken (the lock order is world, then store: see the package
        docstring); `switch` re-checks under the store's lock that the job is still queued and
        that its world still runs nothing, so two workers never start jobs on one world.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM jobs WHERE status = 'queued' AND world_id NOT IN "
                "(SELECT world_id FROM jobs WHERE status = 'running') ORDER BY seq LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        job_id, world_id = row["id"], row["world_id"]

        def switch() -> bool:
            now = time.time()
            with self._lock:
                changed = self._db.execute(
                    "UPDATE jobs SET status = 'running', stage = 'starting', started = COALESCE(started, ?), "
                    "finished = NULL, eta_s = NULL, attempts = attempts + 1 WHERE id = ? AND status = 'queued' "
                    "AND NOT EXISTS (SELECT 1 FROM jobs WHERE world_id = ? AND status = 'running')",
                    (now, job_id, world_id),
                ).rowcount
            return changed == 1

        if not mark_running(world_id, switch):
            return None
        return self.internal(job_id)

    def set_start_point(self, job_id: str, first_frame: int, first_round: int) -> None:
        """Where the job started in its world, kept across resumes (only the first call counts)."""
        with self._lock:
            self._db.execute("UPDATE jobs SET first_frame = COALESCE(first_frame, ?), "
                             "first_round = COALESCE(first_round, ?) WHERE id = ?", (first_frame, first_round, job_id))

    def progress(self, job_id: str, stage: str, fraction: float, eta_s: float | None, message: str | None = None) -> None:
        with self._lock:
            if message is not None:
                row = self._db.execute("SELECT messages FROM jobs WHERE id = ?", (job_id,)).fetchone()
                messages = (json.loads(row[0]) + [message])[-MAX_MESSAGES:]
                self._db.execute("UPDATE jobs SET stage = ?, fraction = ?, eta_s = ?, messages = ? WHERE id = ?",
                                 (stage, fraction, eta_s, json.dumps(messages), job_id))
            else:
                self._db.execute("UPDATE jobs SET stage = ?, fraction = ?, eta_s = ? WHERE id = ?",
                                 (stage, fraction, eta_s, job_id))

    def finish(self, job_id: str, status: str, *, error: dict | None = None, result: dict | None = None,
               message: str | None = None) -> dict:
        if status not in FINAL:
            raise ValueError(f"{status!r} is not a final job state ({', '.join(FINAL)})")
        with self._lock:
            row = self._db.execute("SELECT messages, fraction FROM jobs WHERE id = ?", (job_id,)).fetchone()
            messages = json.loads(row[0]) + ([message] if message else [])
            fraction = 1.0 if status == "succeeded" else row[1]
            self._db.execute(
                "UPDATE jobs SET status = ?, stage = ?, fraction = ?, eta_s = NULL, finished = ?, error = ?, "
                "result = ?, messages = ?, cancel_requested = 0 WHERE id = ?",
                (status, status, fraction, time.time(), json.dumps(error) if error else None,
                 json.dumps(result) if result else None, json.dumps(messages[-MAX_MESSAGES:]), job_id),
            )
        return self.get(job_id)

    def request_cancel(self, job_id: str) -> tuple[dict, bool]:
        """Cancel a queued job at once; flag a running one (its worker stops between steps).
        Returns (job, was_running). A finished job is left as it is."""
        row = self._row(job_id)
        with self._lock:
            if row["status"] == "queued":
                changed = self._db.execute(
                    "UPDATE jobs SET status = 'cancelled', stage = 'cancelled', finished = ? "
                    "WHERE id = ? AND status = 'queued'", (time.time(), job_id)).rowcount
                if changed:
                    return self.get(job_id), False
            changed = self._db.execute("UPDATE jobs SET cancel_requested = 1, stage = 'cancelling' "
                                       "WHERE id = ? AND status = 'running'", (job_id,)).rowcount
        return self.get(job_id), bool(changed)

    def resume(self, job_id: str) -> dict:
        row = self._row(job_id)
        if row["status"] not in RESUMABLE:
            raise conflict(f"job {job_id} is {row['status']}; only an interrupted or failed job can be resumed")
        with self._lock:
            changed = self._db.execute(
                "UPDATE jobs SET status = 'queued', stage = 'queued', error = NULL, finished = NULL, eta_s = NULL, "
                "cancel_requested = 0 WHERE id = ? AND status IN ('interrupted', 'failed')", (job_id,)).rowcount
        if not changed:
            raise conflict(f"job {job_id} changed state meanwhile; try again")
        return self.get(job_id)

    def recover(self) -> list[str]:
        """Mark jobs a crash left `running` as interrupted; returns their ids."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs WHERE status = 'running'").fetchall()
            self._db.execute(
                "UPDATE jobs SET status = 'interrupted', stage = 'interrupted', eta_s = NULL, cancel_requested = 0, "
                "error = ? WHERE status = 'running'",
                (json.dumps({"type": "interrupted", "message": "the service stopped while the job ran; POST .../resume "
                             "continues it from the world's last finished round"}),),
            )
        return [row[0] for row in rows]


def shot_of(job: dict[str, Any]) -> dict:
    return json.loads(job["shot"])
