"""Batch production: shots from .blend files, run here one after the other or as Ray tasks.

`spatia batch SHOTS... --out DIR` (spatia.batch.commands); the layout of DIR is described in
spatia.batch.runner and spatia.batch.worker.
"""

from .jobs import BatchError, BatchOptions
from .runner import BatchResult, run_batch

__all__ = ["BatchError", "BatchOptions", "BatchResult", "run_batch"]
