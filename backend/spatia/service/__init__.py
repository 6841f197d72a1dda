"""The local backend service: HTTP API (FastAPI), persistent job queue, auth and storage.

A thin layer over `spatia.world` and `spatia.memory`; docs/http-api.md is its contract.
Importing this package does not import FastAPI; `create_app` does.
"""

from .config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]


def create_app(config: ServiceConfig, **kwargs):
    from .app import create_app as _create_app

    return _create_app(config, **kwargs)
