"""Health and models."""

from __future__ import annotations

import torch
from fastapi import Depends
from fastapi.concurrency import run_in_threadpool

from spatia import __version__

from ..config import API_VERSION
from ..schemas import HealthOut, ModelOut
from .common import service, v1_router

router = v1_router("system")


@router.get("/health", response_model=HealthOut)
async def health(svc=Depends(service)) -> dict:
    """On the event loop (every call here is brief), so health answers even when every worker
    thread is busy with heavy requests. Only the first GPU query, which starts CUDA, runs in a
    thread."""
    cuda = torch.cuda.is_available()
    gpu_name = vram_free = None
    if cuda:
        if torch.cuda.is_initialized():
            gpu_name, vram_free = _gpu()
        else:
            gpu_name, vram_free = await run_in_threadpool(_gpu)
    return {
        "version": __version__,
        "api_version": API_VERSION,
        "device": "cuda" if cuda else "cpu",
        "gpu_name": gpu_name,
        "vram_free_gb": vram_free,
        "loaded_models": svc.models.loaded(),
        "queue_depth": svc.jobs.queue_depth(),
    }


def _gpu() -> tuple[str, float]:
    free, _ = torch.cuda.mem_get_info()
    return torch.cuda.get_device_name(0), round(free / 2**30, 2)


@router.get("/models", response_model=list[ModelOut])
def models(svc=Depends(service)) -> list[dict]:
    from spatia.engine.models.registry import PRESETS, is_present

    listed = [
        {"name": p.name, "role": p.role, "present": not p.sources or is_present(p), "vram_gb": p.vram_gb,
         "weights": list(p.repo_ids), "description": p.description}
        for p in PRESETS.values()
    ]
    for name in sorted(svc.models.extra_generators):
        if name not in PRESETS:
            listed.append({"name": name, "role": "generator", "present": True, "vram_gb": 0.0, "weights": [],
                           "description": "generator added to this server"})
    return listed
