"""Clips: follow a job, download its video, frames and memory, and bring them into the scene."""

from __future__ import annotations

import os

from .. import object_empties, payloads, preview, runtime
from ..client import Cancelled, SpatiaError, job_error_text
from .common import apply_memory, describe, fetch_memory, fetch_objects, notify


def _job_progress(scene, job: dict) -> None:
    settings = scene.spatia
    settings.job_id = job.get("id", settings.job_id)
    settings.job_status = job.get("status", "")
    settings.job_stage = job.get("stage", "") or ""
    settings.job_fraction = float(job.get("fraction") or 0.0)
    if job.get("preview_path"):
        preview.show(scene, job["preview_path"], job["preview_step"], job["preview_steps"])


def fetch_preview(client, job_id: str, path: str, seen: dict) -> dict:
    """Worker: the job's newest denoising preview written to `path` when it changed; the fields
    the main thread needs to show it (none when there is nothing new)."""
    try:
        found = client.job_preview(job_id)
    except SpatiaError:
        return {}  # a preview is a nicety: the job is followed all the same
    if found is None or found[0]["seq"] == seen["seq"]:
        return {}
    info, data = found
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + ".part"
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)
    seen["seq"] = info["seq"]
    return {"preview_path": path, "preview_step": info["step"], "preview_steps": info["steps"]}


def final_state_error(job: dict) -> SpatiaError:
    """What a job that ended without a clip tells the artist (a cancel is not an error)."""
    status, job_id = job.get("status"), job.get("id")
    if status == "cancelled":
        return Cancelled(f"job {job_id} cancelled")
    if status == "interrupted":
        return SpatiaError(f"job {job_id} was interrupted (the backend stopped while it ran); press Resume to continue "
                           "from its last finished round")
    return SpatiaError(f"job {job_id} {status}: {job_error_text(job)}")


def follow_and_fetch(client, job: dict, task, report, data_root: str, *, lost_after: float = 60.0) -> dict:
    """Worker: follow a job to its end, then download its video, cameras, new frames and memory
    into the shot's data folder `data_root`."""
    report(job)
    last = dict(job)
    preview_path = os.path.join(data_root, "previews", f"{job['id']}.png")
    seen = {"seq": None}

    def update(polled):
        last.update(polled)
        if polled.get("status") == "running":
            polled = {**polled, **fetch_preview(client, polled["id"], preview_path, seen)}
        report(polled)

    def lost(seconds, exc):
        report({**last, "stage": f"no answer from the backend for {seconds:.0f} s, retrying..."})

    job = client.follow(job["id"], on_update=update, on_lost=lost, lost_after=lost_after,
                        should_stop=lambda: task.cancelled)
    if job["status"] != "succeeded":
        raise final_state_error(job)
    files = (job.get("result") or {}).get("files") or {}
    folder = os.path.join(data_root, "worlds", job["world_id"], "clips", job["id"])
    report({**job, "stage": "downloading the clip"})
    video = client.download(job["id"], files.get("video", "video.mp4"), os.path.join(folder, "video.mp4"))
    if files.get("cameras"):
        client.download(job["id"], files["cameras"], os.path.join(folder, "cameras.json"))
    _, _, new_frames = payloads.clip_span(job)
    for i, name in enumerate(new_frames):
        if task.cancelled:
            break
        client.download(job["id"], name, os.path.join(folder, "frames", os.path.basename(name)))
        if i % 10 == 0:
            report({**job, "stage": f"downloading frames {i + 1}/{len(new_frames)}"})
    fetched = fetch_memory(client, job["world_id"], (job.get("result") or {}).get("memory_version"), data_root=data_root)
    objects = fetch_objects(client, job["world_id"], missing_ok=True)  # a backend without object memory: None
    return {"job": job, "video": video, "frames_dir": os.path.join(folder, "frames"), "fetched": fetched, "objects": objects}


def apply_clip(scene, result: dict, shot_first_frame: int, prompt: str = "") -> str:
    """Main thread: the new memory first (so Blender and the backend agree on the version even if
    the clip cannot be shown), the Clips list, then the clip's new frames behind the camera and in
    the sequencer: at once in background mode, else a step per timer tick (`clip_import.queue`)."""
    from .. import clip_import

    settings, job = scene.spatia, result["job"]
    _job_progress(scene, job)
    preview.hide(scene)
    settings.job_error = ""
    memory_text = apply_memory(scene, result["fetched"])
    if result.get("objects") is not None:
        memory_text += "; " + object_empties.apply_objects(scene, result["objects"])
    video_start, count, new_frames = payloads.clip_span(job)
    frame_start = shot_first_frame + video_start
    name = f"Spatia {job['id'][:12]}"
    clip = settings.clips.add()
    clip.name, clip.job_id, clip.frame_start, clip.frame_count = name, job["id"], frame_start, count
    clip.video, clip.frames_dir = runtime.blend_path(result["video"]), runtime.blend_path(result["frames_dir"])
    clip.prompt = prompt
    clip.memory_version = result["fetched"]["version"]
    settings.clip_index = len(settings.clips) - 1
    text = f"clip {name}: frames {frame_start}-{frame_start + count - 1}; {memory_text}"
    if not new_frames:
        return f"{text}; no new frames to show"
    # the new frames are the video's last ones
    first_new = frame_start + count - len(new_frames)
    frames = clip_import.clip_frames(name, result["frames_dir"], new_frames, first_new)
    camera = scene.camera.name if scene.camera is not None else None
    steps = clip_import.ClipImport(scene.name, camera, frames, retire=True).steps()
    if runtime.blocking():
        clip_import.queue.add(steps, blocking=True)
        return text
    scene_name = scene.name

    def shown():
        notify(runtime.scene_by_name(scene_name), f"{text}; shown from frame {first_new}", undo=True)

    def failed(exc):
        notify(runtime.scene_by_name(scene_name), f"clip {name} could not be shown: {describe(exc)}", error=True)

    clip_import.queue.add(steps, shown, failed)
    return f"{text}; showing the clip..."
