"""Shot data follows its .blend. Clips, frames, the memory cache and shot files live in the
scene's Shot Data folder (`//spatia` beside the .blend by default) and Blender stores their
paths relative to the .blend, so the shot can move to another workstation or a farm. A .blend
that was never saved keeps them in the extension's user folder until its first save, when they
move beside it and every path to them is rewritten (in the save, not after it). Save As into
another folder takes a copy of a relative Shot Data folder along (hard links where the disk
allows: files are only ever replaced whole, never changed in place), so the new .blend has its
data beside it and the old one keeps its own."""

from __future__ import annotations

import os
import shutil

import bpy
from bpy.app.handlers import persistent

from . import runtime
from .compat import all_strips


def _absolute(path: str, blend_dir: str) -> str:
    if path.startswith("//"):
        return os.path.normpath(os.path.join(blend_dir, path[2:]))
    return os.path.normpath(path) if path else path


def _under(path: str, folder: str) -> bool:
    path, folder = os.path.normcase(os.path.normpath(path)), os.path.normcase(os.path.normpath(folder))
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _merge_move(source: str, target: str) -> None:
    """Move everything in `source` into `target`, merging folders; existing files are kept."""
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(source):
        src, dst = os.path.join(source, name), os.path.join(target, name)
        if os.path.isdir(src) and os.path.isdir(dst):
            _merge_move(src, dst)
        elif not os.path.exists(dst):
            shutil.move(src, dst)
    shutil.rmtree(source, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another disk, or links not allowed
        shutil.copy2(src, dst)


def _copy_along(source: str, target: str) -> None:
    """Copy the shot data folder `source` to `target` (merging; files already there are kept)."""
    for folder, _, files in os.walk(source):
        dest = os.path.join(target, os.path.relpath(folder, source))
        os.makedirs(dest, exist_ok=True)
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                continue  # a write in progress elsewhere
            if not os.path.exists(os.path.join(dest, name)):
                _link_or_copy(os.path.join(folder, name), os.path.join(dest, name))


def target_dir(scene, blend_path: str) -> str:
    setting = (scene.spatia.data_dir if scene is not None else "").strip() or runtime.DEFAULT_SHOT_DIR
    return _absolute(os.path.expanduser(setting), os.path.dirname(blend_path))


def remap(path: str, old_dir: str, new_dir: str, moves: list[tuple[str, str]]) -> str:
    """A stored path after a save to `new_dir`: moved data follows its move; relative paths
    stay relative (rebased, as Blender does for its own datablocks); others are left alone."""
    if not path:
        return path
    absolute = _absolute(path, old_dir)
    moved = False
    for source, target in moves:
        if _under(absolute, source):
            absolute = os.path.join(target, os.path.relpath(absolute, source))
            moved = True
            break
    if not (moved or path.startswith("//")):
        return path
    try:
        return bpy.path.relpath(absolute, start=new_dir)
    except ValueError:  # another drive (Windows)
        return absolute


@persistent
def _before_save(filepath="", *args):
    filepath = filepath if isinstance(filepath, str) and filepath else bpy.data.filepath
    if not filepath:
        return
    new_dir = os.path.dirname(os.path.abspath(filepath))
    old_dir = os.path.dirname(bpy.data.filepath) if bpy.data.filepath else ""
    moves = []
    unsaved = runtime.unsaved_dir()
    if not bpy.data.filepath and os.path.isdir(unsaved) and os.listdir(unsaved):
        scene = bpy.context.scene if bpy.context.scene is not None else next(iter(bpy.data.scenes), None)
        target = target_dir(scene, filepath)
        try:
            _merge_move(unsaved, target)
            moves.append((unsaved, target))
        except OSError as exc:  # the data stays where it is, with absolute paths
            print(f"Spatia: could not move the shot data to {target}: {exc}")
    elif bpy.data.filepath and os.path.normcase(old_dir) != os.path.normcase(new_dir):
        for scene in bpy.data.scenes:  # Save As elsewhere: relative shot data comes along
            if not hasattr(scene, "spatia") or not (scene.spatia.data_dir.strip() or "//").startswith("//"):
                continue
            source, target = target_dir(scene, bpy.data.filepath), target_dir(scene, filepath)
            if not os.path.isdir(source) or _under(target, source) or any(src == source for src, _ in moves):
                continue
            try:
                _copy_along(source, target)
                moves.append((source, target))
            except OSError as exc:  # the new .blend then points at the old folder's files
                print(f"Spatia: could not copy the shot data to {target}: {exc}")
    if not moves and old_dir == new_dir:
        return
    def for_blender(path: str) -> str:
        """Blender rebases the relative paths of its own datablocks from the old folder to the new
        one after this handler (Save As, Remap Relative): give them relative to the old folder."""
        if not old_dir or not path.startswith("//"):
            return path
        try:
            return bpy.path.relpath(_absolute(path, new_dir), start=old_dir)
        except ValueError:  # another drive (Windows)
            return _absolute(path, new_dir)

    def moved(path: str) -> str | None:
        """The datablock path to store for `path` if its file moved, else None."""
        new = remap(path, old_dir, new_dir, moves)
        if not path or _absolute(new, new_dir) == _absolute(path, old_dir or new_dir):
            return None
        return for_blender(new)

    for clip in (*bpy.data.movieclips, *bpy.data.images):
        if clip.library is None and moves and clip.filepath:
            new = moved(clip.filepath)
            if new is not None:
                clip.filepath = new
    for scene in bpy.data.scenes:
        if moves and scene.sequence_editor is not None:
            for strip in all_strips(scene.sequence_editor):
                if strip.type == "MOVIE":
                    new = moved(strip.filepath)
                    if new is not None:
                        strip.filepath = new
                elif strip.type == "IMAGE" and strip.directory:
                    new = moved(strip.directory)
                    if new is not None:
                        strip.directory = new if new.endswith(("/", "\\")) else new + "/"
        if hasattr(scene, "spatia"):
            for item in scene.spatia.clips:
                item.video = remap(item.video, old_dir, new_dir, moves)
                item.frames_dir = remap(item.frames_dir, old_dir, new_dir, moves)


def register():
    if _before_save not in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.append(_before_save)


def unregister():
    if _before_save in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.remove(_before_save)
