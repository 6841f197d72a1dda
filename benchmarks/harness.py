"""Tiny benchmark harness: wall time, peak memory and a JSON record per case.

Benchmarks are not tests: they measure and write JSON; they assert nothing about speed.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

import torch

RESULTS_DIR = Path(os.environ.get("SPATIA_BENCH_DIR", Path(__file__).parent / "results"))


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, *, repeat: int = 3, warmup: int = 1, sync: bool = False) -> dict:
    """Best and median wall time of fn() over `repeat` runs after `warmup` runs."""
    def once():
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(warmup):
        once()
    times = sorted(once() for _ in range(repeat))
    return {"best_s": times[0], "median_s": times[len(times) // 2], "runs": repeat}


def cuda_peak_mb() -> float | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def add_device_options(parser) -> None:
    parser.add_argument("--device", choices=["cpu", "cuda"], help="only this device (default: CPU, and CUDA if present)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def devices_from(args) -> list[str]:
    """Apply --threads and return the devices to measure on."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def write(name: str, record: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "machine": machine(), "unix_time": time.time(), **record}
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))
    return path
