"""Shots as Ray tasks: each asks for one GPU (or CPUs on a CPU-only cluster) and runs the
shot exactly as the local path does, in a fresh process, in a temporary folder on its node.
The task returns the shot's report and its folder as a tar archive, which the driver
unpacks into the output folder, so nothing needs a shared filesystem: the .blend's bytes
travel with the task (a node that sees the same file at the same path uses it in place).
Every node needs this package and its dependencies installed.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from .jobs import BatchError, ShotJob, sha256_file, stage_dir
from .execute import execute_shot, failure_report


def tar_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(Path(folder).rglob("*")):
            archive.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def untar_folder(data: bytes, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
        archive.extractall(folder, filter="data")  # "data": no absolute paths, links out or devices


def shot_task(job: dict, blend_bytes: bytes, blend_sha256: str) -> tuple[dict, bytes]:
    """Runs on a Ray worker: the shot in a temporary folder; (report, tar of the shot folder)."""
    job = ShotJob(**job)
    with tempfile.TemporaryDirectory(prefix="spatia-batch-") as tmp:
        blend = Path(job.source)
        if not (blend.is_file() and sha256_file(blend) == blend_sha256):
            blend = Path(tmp) / "input" / blend.name
            blend.parent.mkdir()
            blend.write_bytes(blend_bytes)
        local = replace(job, blend=str(blend), stage_dir=str(Path(tmp) / "stage"))
        report = execute_shot(local)
        return report, tar_folder(Path(local.stage_dir))


def _connect(address: str):
    import ray

    if ray.is_initialized():
        return ray, False
    if address == "local":
        ray.init(include_dashboard=False)
    else:
        ray.init(address=address)
    return ray, True


def task_resources(cluster: dict, cpus_per_shot: int | None) -> dict:
    """One GPU per shot on a cluster with GPUs; CPUs otherwise or when asked for."""
    if cpus_per_shot is None and cluster.get("GPU", 0) >= 1:
        return {"num_gpus": 1}
    return {"num_cpus": cpus_per_shot or 1}


def run_on_ray(jobs: list[ShotJob], out: Path, address: str, record, *, cpus_per_shot: int | None = None) -> None:
    """Run `jobs` as Ray tasks; `record(job, report)` is called as each finishes, after its
    folder has been unpacked into the job's stage folder under `out`."""
    if not jobs:
        return
    try:
        ray, started = _connect(address)
    except ImportError:
        raise BatchError("--ray needs Ray on this machine and every node: pip install ray") from None
    try:
        resources = task_resources(ray.cluster_resources(), cpus_per_shot)
        task = ray.remote(shot_task).options(max_retries=0, **resources)
        pending = {}
        for job in jobs:
            data = Path(job.source).read_bytes()
            pending[task.remote(asdict(job), data, sha256_file(job.source))] = job
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            stage = stage_dir(out, job.name)
            try:
                report, archive = ray.get(done[0])
            except Exception as exc:
                report = failure_report(job, "ray", type(exc).__name__, f"the Ray task failed: {exc}")
                stage.mkdir(parents=True, exist_ok=True)
            else:
                if stage.exists():
                    shutil.rmtree(stage)
                untar_folder(archive, stage)
            record(job, report)
    finally:
        if started:
            ray.shutdown()
