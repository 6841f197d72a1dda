"""`spatia batch`: run shots from .blend files, each in a fresh process, into one output folder.

Output folder:

    summary.json            one entry per shot ever run here: ok / failed / skipped (by the last run)
    shots/<name>/           a shot's outputs (see spatia.batch.worker) and report.json, log.txt

A shot runs in `shots/.<name>.partial/` and replaces `shots/<name>/` only when it succeeded,
so a failure never destroys earlier outputs; its report.json and log.txt then describe the
failed attempt. A shot whose report says ok for the same content key is skipped. Shots run
one after the other here, or as Ray tasks (spatia.batch.ray_runner); either way the outputs
are gathered here in the same form.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from spatia.formats.atomic import write_json
from spatia.formats.runs import RunRecord
from .jobs import (
    LOG,
    REPORT,
    SUMMARY,
    BatchOptions,
    ShotJob,
    code_version,
    find_shots,
    presets_digest,
    sha256_file,
    shot_dir,
    shot_key,
    shot_names,
    stage_dir,
)
from .execute import execute_shot, worker_command

SUMMARY_SCHEMA = "spatia.batch"


@dataclass
class BatchResult:
    entries: list[dict]

    @property
    def failed(self) -> int:
        return sum(entry["status"] == "failed" for entry in self.entries)

    @property
    def exit_code(self) -> int:
        return min(self.failed, 255)


# --- outputs ---------------------------------------------------------------------------------
def finalise(out: Path, job: ShotJob, report: dict) -> dict:
    """Move a finished shot's stage folder into place (success) or keep its report and log
    beside the earlier outputs (failure). Returns the summary entry."""
    stage, final = stage_dir(out, job.name), shot_dir(out, job.name)
    if report.get("status") == "ok":
        old = final.with_name(f".{job.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        final.mkdir(parents=True, exist_ok=True)
        if (stage / LOG).exists():
            shutil.copyfile(stage / LOG, final / LOG)
        write_json(final / REPORT, report)
        shutil.rmtree(stage, ignore_errors=True)
    return summary_entry(report, report.get("status", "failed"))


def summary_entry(report: dict, status: str) -> dict:
    error = report.get("error")
    entry = {"name": report["name"], "source": report["source"], "status": status, "key": report["key"],
             "stage": report.get("stage"), "report": f"shots/{report['name']}/{REPORT}",
             "duration_s": report.get("duration_s")}
    if error:
        entry["error"] = f"{error['type']}: {error['message']}"
    if status != "failed":
        entry["hashes"] = report.get("hashes")
    return entry


def finished_report(out: Path, job: ShotJob) -> dict | None:
    """The earlier report of `job` when it succeeded with the same inputs and its outputs are there."""
    folder = shot_dir(out, job.name)
    try:
        report = json.loads((folder / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if report.get("status") != "ok" or report.get("key") != job.key:
        return None
    if not all((folder / path).exists() for path in (report.get("outputs") or {}).values()):
        return None
    world = report.get("world_source")
    if world:  # a continued world must still be the one the outputs grew from
        path = Path(world["path"]) / "world.json"
        if not path.is_file() or sha256_file(path) != world["world_json_sha256"]:
            return None
    return report


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` (several batch processes may share one output folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: one batch per folder at a time
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge_summary(out: Path, entries: list[dict], code: str) -> dict:
    """summary.json with this run's entries replacing earlier ones of the same shot."""
    path = Path(out) / SUMMARY
    with _locked(Path(out) / f".{SUMMARY}.lock"):
        try:
            earlier = json.loads(path.read_text(encoding="utf-8")).get("shots", [])
        except (OSError, ValueError):
            earlier = []
        names = {entry["name"] for entry in entries}
        shots = [entry for entry in earlier if entry.get("name") not in names] + entries
        counts = {status: sum(entry["status"] == status for entry in shots) for status in ("ok", "skipped", "failed")}
        summary = {"schema": SUMMARY_SCHEMA, "version": 1, "code_version": code, "updated": time.time(),
                   "counts": counts, "shots": shots}
        write_json(path, summary)
    return summary


# --- the batch -------------------------------------------------------------------------------
class _Bar:
    """A progress bar across shots, advanced by fractions of the running shots."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="batch", unit="shot", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.2f}/{total} shots {elapsed}<{remaining} {postfix}")
        self.done = 0.0
        self.current = 0.0

    def shot(self, fraction: float, text: str) -> None:
        self.current = min(max(fraction, 0.0), 1.0)
        self._show(text)

    def finish_shot(self, text: str) -> None:
        self.done += 1
        self.current = 0.0
        self._show(text)

    def _show(self, text: str) -> None:
        if self.bar is not None:
            self.bar.n = self.done + self.current
            self.bar.set_postfix_str(text[:70], refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plan_jobs(paths, out: Path, options: BatchOptions) -> list[ShotJob]:
    blends = find_shots(paths)
    names = shot_names(blends)
    code, presets = code_version(), presets_digest()
    opts = {**options.output_affecting(), "worlds_dir": options.worlds_dir, "blender": options.blender,
            "depth": "depth-pro", "code_version": code}
    return [ShotJob(name=name, source=str(blend), blend=str(blend), stage_dir=str(stage_dir(out, name).resolve()),
                    key=shot_key(blend, options, code, presets), options=opts)
            for name, blend in zip(names, blends)]


def run_batch(paths, out, options: BatchOptions | None = None, *, force: bool = False, ray: str | None = None,
              ray_cpus: int | None = None, progress: bool = True) -> BatchResult:
    """Run every shot in `paths` (.blend files or folders of them) into `out`.

    ray: None runs the shots here one after the other; "local" starts a Ray instance on this
    machine; anything else is a Ray address ("auto", "ray://head:10001"). A Ray instance this
    process already started is used as it is. ray_cpus: ask Ray for that many CPUs per shot
    instead of one GPU (CPU-only clusters are detected without it).
    """
    out = Path(out).resolve()
    jobs = plan_jobs(paths, out, options or BatchOptions())
    out.mkdir(parents=True, exist_ok=True)
    code = jobs[0].options["code_version"]
    bar = _Bar(len(jobs), progress)
    entries: dict[str, dict] = {}
    todo = []
    for job in jobs:
        earlier = None if force else finished_report(out, job)
        if earlier is not None:
            entries[job.name] = summary_entry(earlier, "skipped")
            bar.finish_shot(f"{job.name}: skipped (done)")
        else:
            todo.append(job)

    # records a service's dashboard on this machine lists (docs/dashboard.md): queued, then running
    runs = {job.name: RunRecord("batch" if ray is None else "ray", job.name, world=str(stage_dir(out, job.name)),
                                status="queued" if ray is None else "running") for job in todo}

    def record(job: ShotJob, report: dict) -> None:
        entries[job.name] = finalise(out, job, report)
        merge_summary(out, [entries[job.name]], code)  # a crash later keeps what is known so far
        bar.finish_shot(f"{job.name}: {report.get('status')}")
        error = report.get("error") or {}
        runs[job.name].finish("succeeded" if report.get("status") == "ok" else "failed",
                              f"{error.get('type')}: {error.get('message')}" if error else None)

    def progress(job: ShotJob, fraction: float, stage: str) -> None:
        bar.shot(fraction, f"{job.name}: {stage}")
        runs[job.name].progress(fraction, stage)

    try:
        if ray is None:
            for job in todo:
                runs[job.name].start()
                report = execute_shot(job, on_progress=lambda f, s, job=job: progress(job, f, s))
                record(job, report)
        else:
            from .ray_runner import run_on_ray

            run_on_ray(todo, out, ray, record, cpus_per_shot=ray_cpus)
    except BaseException:
        for run in runs.values():
            if run.record["status"] not in ("succeeded", "failed"):
                run.finish("interrupted", "the batch stopped before this shot finished")
        raise
    finally:
        bar.close()
    ordered = [entries[job.name] for job in jobs if job.name in entries]
    merge_summary(out, ordered, code)
    return BatchResult(ordered)


__all__ = ["BatchOptions", "BatchResult", "execute_shot", "finalise", "merge_summary", "plan_jobs", "run_batch",
           "worker_command"]
