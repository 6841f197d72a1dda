"""Worker threads that run queued jobs: `World.generate` for the job's shot, progress into
the job store, cancellation between steps, and the result recorded only once the world's
new state and the job's files are on disk.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from pathlib import Path

from spatia.formats.atomic import write_json
from spatia.engine.models.base import Cancelled
from spatia.formats.shot import ShotSpec, load_shot
from spatia.formats.video import write_video
from spatia.engine.settings import GenerateSettings, shot_settings
from spatia.engine.world import World, WorldError

from .jobstore import JobStore, shot_of
from .models import ModelCache
from .previews import PreviewHub
from .storage import WorldStorage

log = logging.getLogger("spatia.service")

PROGRESS_INTERVAL_S = 0.25  # at most this often a progress write to the job store
GENERATION_SHARE = 0.95  # of the job's fraction; the rest is writing its video
MIN_FRACTION_FOR_ETA = 0.02


def generate_settings(shot: ShotSpec) -> GenerateSettings:
    return shot_settings(shot)


def job_files(end: int) -> dict:
    return {"video": "video.mp4", "cameras": "cameras.json", "frames": [f"frames/{i:06d}.png" for i in range(end)]}


class ProgressReporter:
    """World progress (fraction, stage) -> job store rows, throttled, with an ETA from the rate so far."""

    def __init__(self, jobs: JobStore, job_id: str):
        self.jobs, self.job_id = jobs, job_id
        self.started = time.monotonic()
        self.last_write = 0.0
        self.last_stage = None

    def __call__(self, fraction: float, stage: str, *, share: float = GENERATION_SHARE, offset: float = 0.0) -> None:
        fraction = offset + share * min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        changed = stage != self.last_stage
        if not changed and now - self.last_write < PROGRESS_INTERVAL_S:
            return
        elapsed = now - self.started
        eta = elapsed / fraction * (1.0 - fraction) if fraction >= MIN_FRACTION_FOR_ETA else None
        self.jobs.progress(self.job_id, stage, fraction, eta, message=stage if changed else None)
        self.last_write, self.last_stage = now, stage


class WorkerPool:
    def __init__(self, storage: WorldStorage, jobs: JobStore, models: ModelCache, jobs_dir: Path, workers: int = 1,
                 previews: PreviewHub | None = None, preview_every: int = 0):
        self.storage, self.jobs, self.models = storage, jobs, models
        self.previews, self.preview_every = previews, preview_every
        self.jobs_dir = Path(jobs_dir)
        self.count = workers
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cancel: dict[str, threading.Event] = {}
        self._guard = threading.Lock()
        self._threads: list[threading.Thread] = []

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.count):
            thread = threading.Thread(target=self._loop, name=f"spatia-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask running jobs to stop between steps (they become `interrupted`) and wait for the workers."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        with self._guard:
            event = self._cancel.get(job_id)
        if event is not None:
            event.set()

    # --- the loop ------------------------------------------------------------------------------
    def _mark_running(self, world_id: str, switch) -> bool:
        with self.storage.lock(world_id):
            return switch()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                job = self.jobs.claim_next(self._mark_running)
            except Exception:  # a broken database must not kill the worker silently
                log.exception("cannot claim the next job")
                job = None
            if job is None:
                self._wake.wait(1.0)
                continue
            self._run(job)
            self._wake.set()  # a job on the same world may be waiting for this one

    def _run(self, job: dict) -> None:
        job_id = job["id"]
        cancel = threading.Event()
        with self._guard:
            self._cancel[job_id] = cancel
        if self.jobs.cancel_requested(job_id):
            cancel.set()
        log.info("job %s started (world %s, attempt %d)", job_id, job["world_id"], job["attempts"])
        try:
            result = self._execute(job, lambda: cancel.is_set() or self._stop.is_set())
        except Cancelled:
            if cancel.is_set():
                self.jobs.finish(job_id, "cancelled", message="cancelled")
                log.info("job %s cancelled", job_id)
            else:
                self.jobs.finish(job_id, "interrupted", error={
                    "type": "interrupted", "message": "the service shut down while the job ran; POST .../resume continues it"},
                    message="interrupted by shutdown")
                log.info("job %s interrupted by shutdown", job_id)
        except Exception as exc:
            cause = f"{exc}" + (f" (caused by {type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else "")
            log.error("job %s failed: %s\n%s", job_id, cause, traceback.format_exc())
            self.jobs.finish(job_id, "failed", error={"type": type(exc).__name__, "message": cause},
                             message=f"failed: {type(exc).__name__}")
        else:
            self.jobs.finish(job_id, "succeeded", result=result, message="succeeded")
            log.info("job %s succeeded: frames %s", job_id, result["frames"])
        finally:
            with self._guard:
                self._cancel.pop(job_id, None)

    def _execute(self, job: dict, should_cancel) -> dict:
        job_id, world_id = job["id"], job["world_id"]
        shot = load_shot(shot_of(job))
        world = self.storage.open(world_id, recover=True)
        self.jobs.set_start_point(job_id, world.frame_count, len(world.state["rounds"]))
        job = self.jobs.internal(job_id)
        trajectory = shot.trajectory()
        report = ProgressReporter(self.jobs, job_id)
        if world.frame_count >= len(trajectory):  # a previous attempt generated every frame
            existing = world.cameras()
            if existing is None or not existing[: len(trajectory)].equals(trajectory.cameras, atol=1e-6):
                raise WorldError("the shot's cameras differ from the frames this world already generated")
        else:
            report(0.0, "loading models")
            generator, generator_lock = self.models.generator(shot.generator)
            depth_estimator, _ = self.models.depth_estimator()
            segmenter = self.models.segmenter()[0] if shot.dynamic_prompts else None
            if should_cancel():
                raise Cancelled("cancelled before start")
            if generator_lock.locked():
                report(0.0, "waiting for the generator")
            with generator_lock:
                world.generate(trajectory, list(shot.prompts), generator, generate_settings(shot),
                               depth_estimator=depth_estimator, segmenter=segmenter,
                               progress=report, should_cancel=should_cancel, preview=self._preview(job_id))
        report(0.0, "writing video", share=1 - GENERATION_SHARE, offset=GENERATION_SHARE)
        return self._write_result(job, world, len(trajectory))

    def _preview(self, job_id: str):
        """Live previews of the job's clips into the hub, every `preview_every` steps (0: none)."""
        if self.previews is None or self.preview_every < 1:
            return None
        return self.previews.sink(job_id, self.preview_every)

    def _write_result(self, job: dict, world: World, end: int) -> dict:
        """The video and cameras of the shot's frames [0, end), written atomically before the
        result is recorded."""
        folder = self.jobs_dir / job["id"]
        folder.mkdir(parents=True, exist_ok=True)
        write_video(folder / "video.mp4", world.frames(range(end)), world.fps)
        cams = world.cameras()[:end]
        write_json(folder / "cameras.json", {
            "width": cams.width, "height": cams.height, "fps": world.fps,
            "intrinsics": cams.intrinsics.tolist(), "w2c": cams.w2c.tolist(),
        })
        first_round = job["first_round"] or 0
        return {
            "frames": [min(int(job["first_frame"] or 0), end), end],
            "rounds": world.state["rounds"][first_round:],
            "memory_version": world.memory_version,
            "files": job_files(end),
        }


__all__ = ["ProgressReporter", "WorkerPool", "generate_settings", "job_files"]
