"""Batch production: shots from .blend files, run here one after the other or as Ray tasks.

`spatia batch SHOTS... --out DIR` (spatia.batch.commands); the layout of DIR is described in
spatia.batch.runner and spatia.batch.worker.
"""

import importlib

# Names re-exported lazily, so that `spatia --help` (which imports this package's commands)
# does not import the engine.
_EXPORTS = {
    "BatchError": ".jobs",
    "BatchOptions": ".jobs",
    "BatchResult": ".runner",
    "run_batch": ".runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
