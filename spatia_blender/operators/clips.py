"""Clips: follow a job, download its video, frames and memory, and bring them into the scene."""

from __future__ import annotations

import os

from .. import payloads
from ..client import SpatiaError, job_error_text
from .common import apply_memory, fetch_memory


def _job_progress(scene, job: dict) -> None:
    settings = scene.spatia
    settings.job_id = job.get("id", settings.job_id)
    settings.job_status = job.get("status", "")
    settings.job_stage = job.get("stage", "") or ""
    settings.job_fraction = float(job.get("fraction") or 0.0)


def follow_and_fetch(client, job: dict, task, report, clips_dir: str) -> dict:
    """Worker: follow a job to its end, then download its video, cameras, new frames and memory."""
    report(job)
    job = client.follow(job["id"], on_update=report)
    if job["status"] != "succeeded":
        raise SpatiaError(f"job {job['id']} {job['status']}: {job_error_text(job)}")
    files = (job.get("result") or {}).get("files") or {}
    folder = os.path.join(clips_dir, job["id"])
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
    fetched = fetch_memory(client, job["world_id"], (job.get("result") or {}).get("memory_version"))
    return {"job": job, "video": video, "frames_dir": os.path.join(folder, "frames"), "fetched": fetched}


def _retire_older_clips(scene, imported: dict) -> None:
    """A world's newest video holds every frame so far: hide the earlier clips behind the camera
    and mute their strips (they stay in the file, and in the Clips list, for comparison)."""
    camera = scene.camera
    if camera is not None and camera.type == "CAMERA":
        for background in camera.data.background_images:
            if background.clip is not None and background.clip != imported["clip"] and background.clip.name.startswith("Spatia "):
                background.show_background_image = False
    editor = scene.sequence_editor
    if editor is not None:
        for strip in editor.strips:
            if strip != imported["strip"] and strip.name.startswith("Spatia "):
                strip.mute = True


def apply_clip(scene, result: dict, shot_first_frame: int, prompt: str = "") -> str:
    """Main thread: the clip behind the camera and in the sequencer, the new memory, the lists."""
    from ..clip_import import import_clip

    settings, job = scene.spatia, result["job"]
    video_start, count, _ = payloads.clip_span(job)
    frame_start = shot_first_frame + video_start
    name = f"Spatia {job['id'][:12]}"
    imported = import_clip(scene, scene.camera, result["video"], frame_start, name=name)
    _retire_older_clips(scene, imported)
    clip = settings.clips.add()
    clip.name, clip.job_id, clip.frame_start, clip.frame_count = name, job["id"], frame_start, count
    clip.video, clip.frames_dir, clip.prompt = result["video"], result["frames_dir"], prompt
    clip.memory_version = result["fetched"]["version"]
    settings.clip_index = len(settings.clips) - 1
    _job_progress(scene, job)
    settings.job_error = ""
    memory_text = apply_memory(scene, result["fetched"])
    return f"clip {name}: frames {frame_start}-{frame_start + count - 1}; {memory_text}"
