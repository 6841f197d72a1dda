"""Service settings and the data folder's layout."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 1024
DEFAULT_MAX_HEAVY_QUERIES = 2
DEFAULT_MAX_JSON_MB = 64
DEFAULT_HEAVY_WAIT_S = 5.0
DEFAULT_PREVIEW_EVERY = 2
API_VERSION = 1


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True)
class ServiceConfig:
    """How a service instance runs. `data_dir` holds everything it keeps:

        worlds/<id>/    one World folder per world (+ service.json: its name)
        jobs/<id>/      each finished job's video and cameras
        jobs.sqlite     the job queue (WAL)
        token           the API token (mode 0600)
        logs/           service.log
        cache/renders/  rendered query frames, the most recent few
        tmp/            request bodies being received (emptied at every start)

    Folders are created 0700 and files 0600: only the user running the service reads them.
    """

    data_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    require_token: bool = False
    workers: int = 1
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_heavy_queries: int = DEFAULT_MAX_HEAVY_QUERIES
    max_json_mb: float = DEFAULT_MAX_JSON_MB
    heavy_wait_s: float = DEFAULT_HEAVY_WAIT_S
    preview_every: int = DEFAULT_PREVIEW_EVERY  # live previews every this many denoising steps (0: none)

    def __post_init__(self):
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if not 0 <= self.heavy_wait_s <= 600:
            raise ValueError(f"heavy_wait_s must be in 0..600, got {self.heavy_wait_s}")
        if not self.max_json_mb > 0:
            raise ValueError(f"max_json_mb must be positive, got {self.max_json_mb}")
        if not self.max_upload_mb > 0:
            raise ValueError(f"max_upload_mb must be positive, got {self.max_upload_mb}")
        object.__setattr__(self, "allowed_hosts", tuple(h.strip().lower() for h in self.allowed_hosts if h.strip()))
        object.__setattr__(self, "allowed_origins",
                           tuple(o.strip().rstrip("/").lower() for o in self.allowed_origins if o.strip()))
        if self.preview_every < 0:
            raise ValueError(f"preview_every must be 0 (no previews) or more, got {self.preview_every}")
        if self.max_heavy_queries < 1:
            raise ValueError(f"max_heavy_queries must be at least 1, got {self.max_heavy_queries}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")

    @property
    def token_required(self) -> bool:
        """A token is needed when the service is reachable from other machines, or when asked for."""
        return self.require_token or not is_loopback(self.host)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_json_bytes(self) -> int:
        return min(int(self.max_json_mb * 2**20), self.max_upload_bytes)

    @property
    def worlds_dir(self) -> Path:
        return self.data_dir / "worlds"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "jobs.sqlite"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "token"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def render_cache_dir(self) -> Path:
        return self.data_dir / "cache" / "renders"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    def make_dirs(self) -> None:
        for folder in (self.data_dir, self.worlds_dir, self.jobs_dir, self.logs_dir, self.render_cache_dir.parent,
                       self.render_cache_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(folder, 0o700)
