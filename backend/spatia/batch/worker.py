"""One shot, in its own process: `python -m spatia.batch.worker JOB.json`.

A fresh process per shot, so one .blend's Blender state (or a crash) never leaks into the
next. The process opens the .blend with the bpy module (or runs inside a Blender binary),
reads the shot from the extension's scene settings, initialises the world from a Cycles
render of the active camera (or continues the world the settings name), runs every round
and writes, into the job's stage folder:

    shot.json      the shot spec it ran (spatia.shot v1)
    world/         the world: frames/, rounds/, memory versions, cameras
    video.mp4      every frame
    memory.ply     the final memory
    <name>.blend   the .blend with the memory object and every clip imported (relative paths)
    report.json    status, the stage reached, the error if any, hashes of the outputs, timings

Progress goes to stderr as lines `PROGRESS_PREFIX {"fraction": f, "stage": s}`; the exit
status is 0 when the shot succeeded, 1 when it failed (report.json says why).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
from pathlib import Path

from spatia.formats.atomic import write_json
from spatia.formats.shot import load_shot
from .jobs import PROGRESS_PREFIX, REPORT, REPORT_SCHEMA, ShotJob, sha256_file

STAGES = ("open", "camera", "settings", "model", "init", "generate", "outputs", "blend")
# Fractions of the shot's progress bar at which each stage starts.
_STAGE_START = {"open": 0.0, "camera": 0.04, "settings": 0.05, "model": 0.07, "init": 0.08, "generate": 0.15,
                "outputs": 0.9, "blend": 0.95}


class StageError(RuntimeError):
    """Wraps the exception that stopped a shot, with the stage it stopped in."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"{stage}: {error}")
        self.stage, self.error = stage, error


def emit(fraction: float, stage: str) -> None:
    print(f"{PROGRESS_PREFIX} {json.dumps({'fraction': round(float(fraction), 4), 'stage': stage})}",
          file=sys.stderr, flush=True)


def frames_digest(folder: Path) -> tuple[str, int]:
    """sha256 over every frame file (in order) and the number of frames."""
    digest = hashlib.sha256()
    files = sorted(Path(folder).glob("*.png"))
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest(), len(files)


class ShotRun:
    """The stages of one shot; each records its time, and the first failure stops the rest."""

    def __init__(self, job: ShotJob):
        self.job = job
        self.stage_dir = Path(job.stage_dir)
        self.report: dict = {
            "schema": REPORT_SCHEMA, "version": 1, "name": job.name, "source": job.source, "key": job.key,
            "options": job.options, "status": "running", "stage": None, "error": None, "timings": {},
        }
        self.started = time.perf_counter()

    def stage(self, name: str, fn, *args, **kwargs):
        self.report["stage"] = name
        emit(_STAGE_START[name], name)
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            raise StageError(name, exc) from exc
        finally:
            self.report["timings"][f"{name}_s"] = round(time.perf_counter() - t, 3)

    # --- stages ------------------------------------------------------------------------------
    def run(self) -> dict:
        from . import scene as shot_scene

        job, out = self.job, self.stage_dir
        bpy = self.stage("open", shot_scene.open_blend, job.blend)
        scene = bpy.context.scene
        self.stage("camera", shot_scene.check_active_camera, scene)
        shot = self.stage("settings", shot_scene.read_shot, scene, job.options)
        write_json(out / "shot.json", shot.spec)
        run = load_shot(shot.spec).generation()
        self.report.update(generator=shot.generator, quality=shot.quality, seed=run.seed, steps=run.steps,
                           guidance=run.guidance,
                           size=f"{shot.spec['width']}x{shot.spec['height']}", frames=len(shot.spec["frames"]))
        models = self.stage("model", shot_scene.prepare_models, shot)
        self.report["runtime"] = models["runtime"]
        world, world_source = self.stage("init", shot_scene.init_world, scene, shot, out / "world", job)
        self.report["world_source"] = world_source

        def progress(fraction: float, stage: str) -> None:
            emit(_STAGE_START["generate"] + (_STAGE_START["outputs"] - _STAGE_START["generate"]) * fraction, stage)

        records = self.stage("generate", shot_scene.generate, world, shot, models, progress)
        self.stage("outputs", self._outputs, world, records)
        self.stage("blend", shot_scene.save_blend, bpy, scene, world, shot, records, out / f"{job.name}.blend")
        self.report["outputs"]["blend"] = f"{job.name}.blend"
        return self.report

    def _outputs(self, world, records) -> None:
        from spatia.engine.memory import export_ply

        out = self.stage_dir
        world.export_video(out / "video.mp4")
        memory = world.memory()
        export_ply(memory, out / "memory.ply")
        frames_sha, count = frames_digest(world.root / "frames")
        self.report["outputs"] = {"video": "video.mp4", "memory_ply": "memory.ply", "frames": "world/frames",
                                  "world": "world", "shot": "shot.json"}
        self.report["hashes"] = {"frames_sha256": frames_sha, "memory_ply_sha256": sha256_file(out / "memory.ply")}
        self.report["summary"] = {
            "frames": world.frame_count, "frame_files": count, "rounds": len(records), "memory_points": len(memory), "memory_version": world.memory_version,
            "coverage_per_round": [round(r["coverage"], 4) for r in records],
        }


def run_job(job: ShotJob) -> dict:
    """Run `job` in this process and write its report; returns the report."""
    stage = Path(job.stage_dir)
    stage.mkdir(parents=True, exist_ok=True)
    run = ShotRun(job)
    try:
        report = run.run()
        report["status"], report["stage"] = "ok", "done"
    except StageError as exc:
        report = run.report
        report["status"] = "failed"
        report["error"] = {"type": type(exc.error).__name__, "message": str(exc.error), "stage": exc.stage,
                           "traceback": "".join(traceback.format_exception(exc.error)).strip()}
    report["duration_s"] = round(time.perf_counter() - run.started, 3)
    write_json(stage / REPORT, report)
    emit(1.0, "done" if report["status"] == "ok" else f"failed in {report['stage']}")
    return report


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:  # inside a Blender binary: our arguments follow "--"
        argv = argv[argv.index("--") + 1:]
    if len(argv) != 1:
        print("usage: python -m spatia.batch.worker JOB.json", file=sys.stderr)
        return 2
    job = ShotJob.from_json(Path(argv[0]).read_text(encoding="utf-8"))
    report = run_job(job)
    return 0 if report["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
