"""Run one shot in a fresh process (this Python with bpy, or a Blender binary) and collect its
report: shared by the local batch runner and the Ray tasks."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from spatia.formats.atomic import write_json

from .jobs import LOG, PROGRESS_PREFIX, REPORT, REPORT_SCHEMA, ShotJob

LOG_TAIL_LINES = 30


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
