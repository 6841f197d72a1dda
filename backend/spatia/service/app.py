"""The FastAPI application: a Service (storage, job store, models, workers) behind /v1 routes."""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import threading
from collections import OrderedDict
from contextlib import asynccontextmanager

from spatia import __version__
from spatia.engine.memory import SpatialMemory
from spatia.engine.world import World

from .auth import SignInCodes, TokenCheck, load_or_create_token
from .config import ServiceConfig
from .errors import install_handlers
from .jobstore import JobStore
from .models import GeneratorFactory, ModelCache
from .guard import HostOriginGuard
from .previews import PreviewHub
from .queries import HeavySlots, RenderCache
from .runner import WorkerPool
from .storage import WorldStorage
from .uploads import BodyLimit

log = logging.getLogger("spatia.service")
MEMORY_CACHE_ENTRIES = 4


class DataDirBusy(RuntimeError):
    """Another service instance already uses the data folder."""


class Service:
    """Everything one running service holds. Routes reach it as `request.app.state.service`."""

    def __init__(self, config: ServiceConfig, extra_generators: dict[str, GeneratorFactory] | None = None):
        self.config = config
        config.make_dirs()
        self._lock_file = self._claim_data_dir()
        self._log_handler = self._start_log()
        self.token = load_or_create_token(config.token_path)
        self.auth = TokenCheck(self.token, config.token_required)
        self.sign_in_codes = SignInCodes()
        removed = remove_temp_files(config)
        self.storage = WorldStorage(config.worlds_dir)
        self.jobs = JobStore(config.db_path)
        for path in (config.db_path, config.data_dir / ".lock", *config.logs_dir.glob("service.log*")):
            if path.is_file():
                os.chmod(path, 0o600)
        if removed:
            log.warning("removed %d temporary file(s) left by an interrupted write", removed)
        interrupted = self.jobs.recover()
        if interrupted:
            log.warning("jobs interrupted by the previous shutdown: %s", ", ".join(interrupted))
        self._recover_worlds()
        self.models = ModelCache(extra_generators)
        self.renders = RenderCache(config.render_cache_dir)
        self.previews = PreviewHub()
        self.pool = WorkerPool(self.storage, self.jobs, self.models, config.jobs_dir, config.workers,
                               previews=self.previews, preview_every=config.preview_every)

        self._memories: OrderedDict[tuple, SpatialMemory] = OrderedDict()
        self._memories_lock = threading.Lock()
        self.heavy = HeavySlots(config.max_heavy_queries, config.heavy_wait_s)

    def _recover_worlds(self) -> None:
        """No job runs yet: remove what rounds cut off by a crash left in every world."""
        for world_id in self.storage.ids():
            try:
                self.storage.open(world_id, recover=True)
            except Exception as err:  # one unreadable world must not keep the service down
                log.error("world %s cannot be opened: %s", world_id, err)

    def _claim_data_dir(self):
        handle = open(os.open(self.config.data_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DataDirBusy(f"another spatia service is using {self.config.data_dir}") from None
        return handle

    def _start_log(self) -> logging.Handler:
        handler = logging.handlers.RotatingFileHandler(self.config.logs_dir / "service.log", maxBytes=10 * 2**20,
                                                       backupCount=3)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        return handler

    def start(self) -> None:
        self.pool.start()
        log.info("service %s started on %s:%d (token %s)", __version__, self.config.host, self.config.port,
                 "required" if self.config.token_required else "optional")

    def stop(self) -> None:
        self.pool.stop()
        self.jobs.close()
        log.info("service stopped")
        log.removeHandler(self._log_handler)
        self._log_handler.close()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()

    def memory(self, world: World, version: int | None) -> tuple[int, SpatialMemory]:
        """(version, memory) of a world, verified when read from disk and kept for a few reuses
        (versions never change once written)."""
        from spatia.engine.memory.errors import MemoryIntegrityError

        from .errors import invalid, not_found, stored_damage

        if version is None:
            version = world.memory_version
            if version is None:
                raise invalid("the world has no memory yet")
        path = world.store.path(version)
        if not path.is_file():
            raise not_found("memory version", version)
        key = (str(world.root), version, path.stat().st_mtime_ns)
        with self._memories_lock:
            if key in self._memories:
                self._memories.move_to_end(key)
                return version, self._memories[key]
        try:
            memory = world.store.load(version)
        except MemoryIntegrityError as err:  # the server's own file: a conflict with its state, not a bad request
            raise stored_damage(version, err) from None
        with self._memories_lock:
            self._memories[key] = memory
            while len(self._memories) > MEMORY_CACHE_ENTRIES:
                self._memories.popitem(last=False)
        return version, memory


def create_app(config: ServiceConfig, *, extra_generators: dict[str, GeneratorFactory] | None = None):
    """The ASGI app. Workers start with the app's lifespan and stop (jobs -> interrupted) with it."""
    from fastapi import FastAPI

    from .routes import dashboard, jobs, memory, objects, queries, system, worlds
    from .web import install_fallback, install_web

    service = Service(config, extra_generators)

    @asynccontextmanager
    async def lifespan(app):
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="Spatia backend",
        version=__version__,
        description="Spatial memory, worlds and generation jobs. See docs/http-api.md.",
        lifespan=lifespan,
        docs_url=None,  # /docs is served from the package's own files (web.py), never from a CDN
        redoc_url=None,
    )
    app.state.service = service
    install_handlers(app)
    modules = (system, worlds, memory, objects, queries, jobs, dashboard)
    for module in modules:
        app.include_router(module.router)
    install_web(app, service)
    routes = [route for module in modules for route in module.router.routes]
    routes += [route for route in app.router.routes if getattr(route, "methods", None)]  # the pages, /openapi.json
    add_options_route(app, routes)
    install_fallback(app, routes)
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes, json_limit=config.max_json_bytes)
    app.add_middleware(HostOriginGuard, bound_host=config.host, allowed_hosts=config.allowed_hosts,
                       allowed_origins=config.allowed_origins)  # outermost: runs before anything else
    return app


def add_options_route(app, routes: list) -> None:
    """OPTIONS on any path answers 204 with every method its routes accept (404 if none)."""
    from starlette.responses import Response
    from starlette.routing import Match

    from .errors import ApiError

    async def options(request):
        methods = set()
        for route in routes:
            for method in getattr(route, "methods", None) or ():
                match, _ = route.matches({**request.scope, "method": method})
                if match == Match.FULL:
                    methods.add(method)
        if not methods:
            raise ApiError(404, "not_found", f"no route {request.url.path!r}")
        allow = ", ".join(sorted(methods | {"OPTIONS"}))
        return Response(status_code=204, headers={"Allow": allow})

    app.router.add_route("/{path:path}", options, methods=["OPTIONS"], include_in_schema=False)


TEMP_PATTERNS = (".*.tmp", ".tmp-*")


def remove_temp_files(config: ServiceConfig) -> int:
    """Temporary files a crash left mid-write (`memory/.tmp-*`, `.world.json.*.tmp`,
    `.cameras.json.*.tmp`, request bodies under tmp/): nothing runs yet, so none is in use."""
    removed = 0
    for root in (config.worlds_dir, config.jobs_dir, config.tmp_dir):
        if not root.is_dir():
            continue
        for pattern in TEMP_PATTERNS:
            for path in root.rglob(pattern):
                if path.is_file() and not path.is_symlink():
                    path.unlink(missing_ok=True)
                    removed += 1
    for path in config.tmp_dir.iterdir() if config.tmp_dir.is_dir() else ():
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


__all__ = ["DataDirBusy", "Service", "create_app"]
