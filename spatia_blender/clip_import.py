"""Bring a generated clip into the scene from its PNG frames: as the camera's background (an
image sequence, shown only over the clip's frames) and as an image strip in the sequencer,
the clip's first frame at scene frame `frame_start`.

Decoding a frame is the costly part of an import (a movie file costs far more: Blender opens
it and decodes a frame for the clip and again for a movie strip, near half a second each), so
the import is a short list of steps, each decoding at most one PNG frame: run one step per
timer tick in the interface (`StepQueue`) or all at once in background mode and in the
command-line tools (`import_clip`)."""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .compat import strips

STRIP_CHANNEL = 2
PREFIX = "Spatia "
_NUMBERED = re.compile(r"^(?P<head>.*?)(?P<number>\d+)(?P<tail>\.[A-Za-z0-9]+)$")

# Calls that read pixels from disk: at most one of them per step (`ClipImport.steps`).
DECODES_PER_STEP = 1
decodes = 0  # how many decoding calls were made (read by the tests)


@dataclass(frozen=True)
class ClipFrames:
    """A clip on disk: `files` (consecutively numbered, in `directory`) shown from scene frame
    `frame_start` on, one file a frame."""

    name: str
    directory: str
    files: tuple[str, ...]
    frame_start: int

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def frame_end(self) -> int:
        """The scene frame after the clip's last."""
        return self.frame_start + self.count

    @property
    def first_number(self) -> int:
        return int(_NUMBERED.match(self.files[0]).group("number"))

    @property
    def first_path(self) -> str:
        return os.path.join(self.directory, self.files[0])


def clip_frames(name: str, directory: str, files, frame_start: int) -> ClipFrames:
    """Check a clip's frame files (they exist, numbered one after another) and describe them."""
    files = tuple(os.path.basename(f) for f in files)
    if not files:
        raise ValueError(f"clip {name!r} has no frames to import")
    first = _NUMBERED.match(files[0])
    if first is None:
        raise ValueError(f"clip {name!r}: frame file {files[0]!r} has no frame number")
    head, tail, width, start = first.group("head"), first.group("tail"), len(first.group("number")), int(first.group("number"))
    for i, name_i in enumerate(files):
        match = _NUMBERED.match(name_i)
        if (match is None or match.group("head") != head or match.group("tail") != tail
                or int(match.group("number")) != start + i or len(match.group("number")) != width):
            raise ValueError(f"clip {name!r}: frame files are not numbered one after another "
                             f"({files[0]} ... {name_i} at position {i})")
    missing = [f for f in files if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        raise FileNotFoundError(f"clip {name!r}: {len(missing)} frame file(s) missing in {directory} "
                                f"(first: {missing[0]})")
    return ClipFrames(name, os.path.abspath(directory), files, int(frame_start))


def frame_files(start: int, end: int) -> list[str]:
    """The backend's names of video frames [start, end): frames/NNNNNN.png, without the folder."""
    return [f"{i:06d}.png" for i in range(int(start), int(end))]


def round_frames(world_root, record: dict, scene_first_frame: int) -> ClipFrames:
    """A world round's new frames (the world's frames/NNNNNN.png from the round's start plus its
    overlap) at their scene frames: what `spatia demo` and `spatia batch` put in the .blend."""
    start = int(record["start"]) + int(record.get("overlap") or 0)
    return clip_frames(f"{PREFIX}round {record['round']}", os.path.join(str(world_root), "frames"),
                       frame_files(start, record["end"]), scene_first_frame + start)


def _relative(bpy, path: str) -> str:
    if not bpy.data.filepath:
        return path
    try:
        return bpy.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path


def _decoding(call: Callable, *args):
    global decodes
    decodes += 1
    return call(*args)


class ClipImport:
    """One clip's import as bounded steps; Blender data is looked up by name in every step, so
    a step that runs a few ticks later (after an undo, say) never holds a stale reference."""

    def __init__(self, scene_name: str, camera_name: str | None, frames: ClipFrames, *, retire: bool = False):
        self.scene_name, self.camera_name, self.frames, self.retire = scene_name, camera_name, frames, retire
        self.result: dict = {"image": None, "background": None, "strip": None}

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        steps = [("background", self.background), ("strip", self.strip)]
        if self.retire:
            steps.append(("retire", self.retire_covered))
        return steps

    def run_all(self) -> dict:
        for _, step in self.steps():
            step()
        return self.result

    def _scene(self):
        import bpy

        scene = bpy.data.scenes.get(self.scene_name)
        if scene is None:
            raise RuntimeError(f"scene {self.scene_name!r} is gone; clip {self.frames.name} not imported")
        return scene

    def _camera(self):
        import bpy

        camera = bpy.data.objects.get(self.camera_name) if self.camera_name else None
        return camera if camera is not None and camera.type == "CAMERA" else None

    def background(self) -> None:
        """The image sequence behind the camera, shown over the clip's frames only. Loading an
        image datablock reads no pixels (the viewport decodes a frame when it draws it)."""
        import bpy

        self._scene()
        f = self.frames
        path = _relative(bpy, f.first_path)
        image = bpy.data.images.get(f.name)  # the clip imported again: the same datablock
        if image is None:
            image = bpy.data.images.load(f.first_path, check_existing=False)
            image.name = f.name
        image.source = "SEQUENCE"
        if image.filepath != path:
            image.filepath = path
        self.result["image"] = image
        camera = self._camera()
        if camera is None:
            return
        cam = camera.data
        background = next((bg for bg in cam.background_images if bg.image == image), None)
        if background is None:
            background = cam.background_images.new()
            background.source = "IMAGE"
            background.image = image
        user = background.image_user
        user.frame_start = f.frame_start
        user.frame_duration = f.count
        user.frame_offset = f.first_number - 1  # scene frame frame_start shows file first_number
        user.use_auto_refresh = True
        user.use_cyclic = False
        background.frame_method = "FIT"
        background.alpha = 1.0
        background.show_background_image = True
        cam.show_background_images = True
        self.result["background"] = background

    def strip(self) -> None:
        """The image strip: Blender reads the first frame to learn the strip's size."""
        import bpy

        scene, f = self._scene(), self.frames
        editor = scene.sequence_editor or scene.sequence_editor_create()
        old = strips(editor).get(f.name)
        if old is not None:
            strips(editor).remove(old)
        strip = _decoding(strips(editor).new_image, f.name, f.first_path, STRIP_CHANNEL, f.frame_start)
        for name in f.files[1:]:
            strip.elements.append(name)
        directory = _relative(bpy, f.directory)
        strip.directory = directory if directory.endswith(("/", "\\")) else directory + "/"
        self.result["strip"] = strip

    def retire_covered(self) -> None:
        """Earlier clips keep the frames before this clip's first; from there on this clip is the
        world's video: an earlier clip starting there is hidden behind the camera and muted, one
        reaching into it ends where it starts (its files stay, for comparison)."""
        scene, f = self._scene(), self.frames
        camera = self._camera()
        if camera is not None:
            for background in camera.data.background_images:
                if background.source == "IMAGE":
                    image = background.image
                    if image is None or image.name == f.name or not image.name.startswith(PREFIX):
                        continue
                    user = background.image_user
                    if user.frame_start >= f.frame_start:
                        background.show_background_image = False
                    elif user.frame_start + user.frame_duration > f.frame_start:
                        user.frame_duration = f.frame_start - user.frame_start
                elif background.clip is not None and background.clip.name.startswith(PREFIX):
                    clip = background.clip  # a movie clip, as files from before image sequences hold
                    if clip.frame_start + clip.frame_duration > f.frame_start:
                        background.show_background_image = False  # a movie cannot be shortened
        editor = scene.sequence_editor
        if editor is not None:
            for strip in strips(editor):
                if strip.name == f.name or not strip.name.startswith(PREFIX) or strip.frame_final_end <= f.frame_start:
                    continue
                if strip.frame_final_start >= f.frame_start:
                    strip.mute = True
                else:
                    strip.frame_final_end = f.frame_start


def import_clip(scene, camera_obj, frames: ClipFrames, *, retire: bool = False) -> dict:
    """Import a clip at once (background mode, `spatia demo`, `spatia batch`); returns the image,
    the camera background (None without a camera) and the strip."""
    camera_name = camera_obj.name if camera_obj is not None else None
    return ClipImport(scene.name, camera_name, frames, retire=retire).run_all()


class StepQueue:
    """Main-thread work split into steps, one step per bpy.app.timers tick, so no tick holds the
    interface longer than one step. Jobs run in the order they were added; a job's failure is
    handed to its on_error and ends that job alone. Not persistent: loading a file drops it."""

    interval = 0.01

    def __init__(self):
        self._jobs: deque = deque()
        self._timer = self.tick  # one object: bpy.app.timers knows a function by its identity

    @property
    def pending(self) -> int:
        return sum(len(job["steps"]) for job in self._jobs)

    def add(self, steps: list[tuple[str, Callable[[], None]]], on_done: Callable[[], None] | None = None,
            on_error: Callable[[BaseException], None] | None = None, *, blocking: bool = False) -> None:
        """Queue a job's steps; with `blocking` (no timers: Blender in background) run them now,
        raising a step's error after on_error has seen it."""
        job = {"steps": deque(steps), "on_done": on_done, "on_error": on_error}
        if blocking:
            while job["steps"]:
                self._step(job, raise_errors=True)
            return
        import bpy

        if self._jobs and not bpy.app.timers.is_registered(self._timer):
            self._jobs.clear()  # a file was loaded: those steps were for the scenes it replaced
        self._jobs.append(job)
        if not bpy.app.timers.is_registered(self._timer):
            bpy.app.timers.register(self._timer, first_interval=self.interval)

    def _step(self, job: dict, *, raise_errors: bool = False) -> None:
        _, step = job["steps"].popleft()
        try:
            step()
        except Exception as exc:  # handed to the job's on_error
            job["steps"].clear()
            if job["on_error"] is not None:
                job["on_error"](exc)
            if raise_errors or job["on_error"] is None:
                raise
            return
        if not job["steps"] and job["on_done"] is not None:
            job["on_done"]()

    def tick(self) -> float | None:
        """One step of the first job (a bpy.app.timers function: the seconds to the next tick,
        None when the queue is empty)."""
        while self._jobs and not self._jobs[0]["steps"]:
            self._jobs.popleft()
        if not self._jobs:
            return None
        job = self._jobs[0]
        try:
            self._step(job)
        except Exception:  # noqa: BLE001 - a job without on_error: printed, the queue goes on
            import traceback

            traceback.print_exc()
        if not job["steps"]:
            self._jobs.popleft()
        return self.interval if self._jobs else None

    def clear(self) -> None:
        import bpy

        self._jobs.clear()
        if bpy.app.timers.is_registered(self._timer):
            bpy.app.timers.unregister(self._timer)


queue = StepQueue()
