"""The local backend service: HTTP API (FastAPI), persistent job queue, auth and storage.

A thin layer over `spatia.engine.world` and `spatia.engine.memory`; docs/http-api.md is its contract.
Importing this package does not import FastAPI; `create_app` does.

Lock order. Locks are only ever taken in this order, never the other way round:

1. a world's lock (`WorldStorage.lock(world_id)`): memory writes (push, edit, revert), world
   deletion, job submission on the world and the worker's switch of a job to running;
2. the job store's lock (`JobStore._lock`, around each SQLite statement);
3. leaf locks that guard one dictionary and call nothing while held: the memory cache, the
   world-lock table, the worker pool's cancel table, the render cache, the heavy-query slots.

`JobStore.claim_next` picks a job under the store's lock, releases it, and only then takes the
world's lock to switch the job to running (re-checking the job under the store's lock), so a
worker and a memory write on the same world cannot wait on each other. Generation itself runs
without the world's lock: memory writes are refused while a job runs on the world.
"""

from .config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]


def create_app(config: ServiceConfig, **kwargs):
    from .app import create_app as _create_app

    return _create_app(config, **kwargs)
