"""Bring a generated clip into the scene: as the camera's background at the right frames,
as a movie strip in the sequencer, and (on disk) as the image sequence it came from."""

from __future__ import annotations

import os

from .compat import strips

STRIP_CHANNEL = 2


def _relative(bpy, path: str) -> str:
    try:
        return bpy.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path


def import_clip(scene, camera_obj, video_path: str, frame_start: int, *, name: str | None = None) -> dict:
    """Load `video_path` starting at scene frame `frame_start`; returns the created datablocks.

    The clip's first frame lands on `frame_start` both behind the camera and in the
    sequencer, so generated frame i is seen at scene frame frame_start + i.
    """
    import bpy

    if not os.path.isfile(video_path):
        raise FileNotFoundError(f"clip not found: {video_path}")
    name = name or os.path.splitext(os.path.basename(video_path))[0]
    clip = bpy.data.movieclips.load(video_path, check_existing=True)
    clip.name = name
    clip.frame_start = frame_start

    background = None
    if camera_obj is not None and camera_obj.type == "CAMERA":
        cam = camera_obj.data
        background = next((bg for bg in cam.background_images if bg.clip == clip), None)
        if background is None:
            background = cam.background_images.new()
            background.source = "MOVIE_CLIP"
            background.clip = clip
        background.frame_method = "FIT"
        background.alpha = 1.0
        background.show_background_image = True
        cam.show_background_images = True

    editor = scene.sequence_editor or scene.sequence_editor_create()
    old = strips(editor).get(name)
    if old is not None:
        strips(editor).remove(old)
    strip = strips(editor).new_movie(name, video_path, STRIP_CHANNEL, frame_start)
    if bpy.data.filepath:  # relative to the .blend, so the shot and its data move together
        relative = _relative(bpy, video_path)
        if clip.filepath != relative:
            clip.filepath = relative
        strip.filepath = relative
    return {"clip": clip, "background": background, "strip": strip}
