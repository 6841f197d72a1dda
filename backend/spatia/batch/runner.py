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
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..io import write_json
from .jobs import (
    LOG,
    PROGRESS_PREFIX,
    REPORT,
    REPORT_SCHEMA,
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

SUMMARY_SCHEMA = "spatia.batch"
LOG_TAIL_LINES = 30


@dataclass
class BatchResult:
    entries: list[dict]

    @property
    def failed(self) -> int:
        return sum(entry["status"] == "failed" for entry in self.entries)

    @property
    def exit_code(self) -> int:
        return min(self.failed, 255)


# --- running one shot ------------------------------------------------------------------------
def _import_roots() -> list[str]:
    """Folders that make spatia, spatia_blender and their dependencies importable."""
    import site
    import sysconfig

    import spatia
    import spatia_blender

    roots = [str(Path(spatia.__file__).resolve().parents[1]), str(Path(spatia_blender.__file__).resolve().parents[1])]
    roots += [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    return list(dict.fromkeys(roots))


def worker_command(job_file: Path, blender: str | None = None) -> list[str]:
    """The command that runs one shot: this Python with the bpy module, or a Blender binary
    whose Python (the same version as this one) is given our import paths."""
    if not blender:
        return [sys.executable, "-m", "spatia.batch.worker", str(job_file)]
    expr = (f"import sys; sys.path[:0] = {_import_roots()!r}; "
            "from spatia.batch.worker import main; sys.exit(main())")
    return [blender, "-b", "--factory-startup", "--python-exit-code", "1", "--python-expr", expr, "--", str(job_file)]


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def failure_report(job: ShotJob, stage: str, error_type: str, message: str, log: Path | None = None) -> dict:
    """The report of a shot whose process never wrote one (it crashed, or never started)."""
    return {"schema": REPORT_SCHEMA, "version": 1, "name": job.name, "source": job.source, "key": job.key,
            "options": job.options, "status": "failed", "stage": stage,
            "error": {"type": error_type, "message": message, "stage": stage,
                      "log_tail": _log_tail(log) if log is not None else ""},
            "timings": {}}


def execute_shot(job: ShotJob, on_progress=None) -> dict:
    """Run `job` in a fresh process, writing into job.stage_dir; returns its report."""
    stage = Path(job.stage_dir)
    if stage.exists():
        shutil.rmtree(stage)  # left by an interrupted attempt
    stage.mkdir(parents=True)
    job_file = stage.parent / f"{stage.name}.job.json"
    job_file.write_text(job.to_json(), encoding="utf-8")
    log_path = stage / LOG
    blender = job.options.get("blender")
    started = time.perf_counter()
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            try:
                process = subprocess.Popen(worker_command(job_file, blender), stdout=log, stderr=subprocess.PIPE,
                                           text=True, errors="replace")
            except OSError as exc:
                report = failure_report(job, "process", type(exc).__name__, f"could not start the shot's process: {exc}")
                write_json(stage / REPORT, report)
                return report
            for line in process.stderr:
                if line.startswith(PROGRESS_PREFIX):
                    if on_progress is not None:
                        with contextlib.suppress(ValueError, KeyError):
                            update = json.loads(line[len(PROGRESS_PREFIX):])
                            on_progress(float(update["fraction"]), str(update["stage"]))
                else:
                    log.write(line)
                    log.flush()
            code = process.wait()
    finally:
        job_file.unlink(missing_ok=True)
    try:
        report = json.loads((stage / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        what = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        report = failure_report(job, "process", "WorkerCrashed",
                                f"the shot's process {what} before writing its report (see {LOG})", log_path)
        report["duration_s"] = round(time.perf_counter() - started, 3)
        write_json(stage / REPORT, report)
    return report


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

    def record(job: ShotJob, report: dict) -> None:
        entries[job.name] = finalise(out, job, report)
        merge_summary(out, [entries[job.name]], code)  # a crash later keeps what is known so far
        bar.finish_shot(f"{job.name}: {report.get('status')}")

    try:
        if ray is None:
            for job in todo:
                report = execute_shot(job, on_progress=lambda f, s, name=job.name: bar.shot(f, f"{name}: {s}"))
                record(job, report)
        else:
            from .ray_runner import run_on_ray

            run_on_ray(todo, out, ray, record, cpus_per_shot=ray_cpus)
    finally:
        bar.close()
    ordered = [entries[job.name] for job in jobs if job.name in entries]
    merge_summary(out, ordered, code)
    return BatchResult(ordered)


__all__ = ["BatchOptions", "BatchResult", "execute_shot", "finalise", "merge_summary", "plan_jobs", "run_batch",
           "worker_command"]
