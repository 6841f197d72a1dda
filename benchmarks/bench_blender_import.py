"""The memory object in Blender: import a million points, read them back, diff an edit.

Times (best and median of a few runs) parsing a safetensors snapshot with the extension's
numpy reader, building the point object (mesh + attributes + geometry-nodes points), reading
it back, and computing the push diff after deleting and moving points and adding sampled
surface points. Target: import under 2 s. Also the first clip's import: the main-thread
work when a job's clip lands (clip_import.ClipImport's steps, one per timer tick: the image
sequence behind the camera, the sequencer strip, the earlier clips retired) for an 81-frame
832x480 clip of PNG frames, the first clip of a fresh file (no warm-up) and a second one; the
largest tick's target is 50 ms, so the interface does not stutter.
Writes benchmarks/results/blender_import.json (blender_import_quick.json with --quick).

    python benchmarks/bench_blender_import.py           # 1,000,000 points
    python benchmarks/bench_blender_import.py --quick   # 100,000 points
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--points", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.points or (100_000 if args.quick else 1_000_000)

    import bpy

    from spatia_blender import memory_object, payloads
    from spatia_blender.safetensors_io import read_safetensors, write_safetensors

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    rng = np.random.default_rng(0)
    arrays = {"xyz": rng.uniform(-5, 5, size=(n, 3)).astype(np.float32),
              "rgb": rng.integers(0, 256, size=(n, 3), dtype=np.uint8),
              "conf": rng.random(n).astype(np.float32),
              "point_id": np.arange(n, dtype=np.int64)}
    data = write_safetensors(arrays, {"voxel_size": "0.02"})

    parse = harness.timed(lambda: read_safetensors(data), repeat=3)
    import_ = harness.timed(lambda: memory_object.import_memory(scene, arrays["xyz"], arrays["rgb"], arrays["point_id"],
                                                                arrays["conf"], radius=0.012, version=1, world="bench"),
                            repeat=3)
    obj = bpy.data.objects[memory_object.OBJECT_NAME]
    read = harness.timed(lambda: memory_object.read_memory(obj), repeat=3)

    # an edit: a tenth deleted, a hundredth moved, a few duplicated, plus 50k sampled points
    current = memory_object.read_memory(obj)
    keep = np.ones(n, bool)
    keep[: n // 10] = False
    ids, xyz, rgb = current["point_id"][keep], current["xyz"][keep].copy(), current["rgb"][keep]
    xyz[: n // 100] += [0.0, 0.0, 0.5]
    ids = np.concatenate([ids, ids[-100:]])
    xyz = np.concatenate([xyz, xyz[-100:] + 1.0])
    rgb = np.concatenate([rgb, rgb[-100:]])
    square = np.array([[[0, 0, 0], [1, 0, 0], [1, 1, 0]], [[0, 0, 0], [1, 1, 0], [0, 1, 0]]], float) * 4.5
    extra_xyz, extra_rgb = payloads.sample_surface(square, np.array([[255, 0, 0], [0, 0, 255]]), spacing=0.02)
    edits = None

    def diff():
        nonlocal edits
        edits = payloads.memory_edits(arrays["point_id"], arrays["xyz"], ids, xyz, rgb, parent=1,
                                      extra_xyz=extra_xyz, extra_rgb=extra_rgb)

    diff_t = harness.timed(diff, repeat=3)
    clip = clip_import_ticks()
    record = {
        "points": n,
        "snapshot_mb": round(len(data) / 2**20, 1),
        "parse_safetensors": parse,
        "import_memory": import_,
        "read_memory": read,
        "diff": diff_t,
        "edit": {"deleted": len(edits["delete_ids"]), "moved": len(edits["move_ids"]), "added": len(edits["add_xyz"])},
        "clip_import": clip,
        "clip_import_target_s": 0.05,
        "clip_import_under_target": clip["largest_tick_s"] < 0.05,
        "import_target_s": 2.0,
        "import_under_target": import_["median_s"] < 2.0,
        "bpy": bpy.app.version_string,
        "peak_rss_mb": round(harness.peak_rss_mb(), 1),
    }
    harness.write("blender_import_quick" if args.quick else "blender_import", record)
    return 0


def clip_import_ticks(frames: int = 81, width: int = 832, height: int = 480) -> dict:
    """Seconds of each main-thread tick of the clip import (clip_import.StepQueue, one step per
    tick, as bpy.app.timers runs it in the interface), for the first clip of a fresh file and a
    second one; plus, for reference, what loading the same clip as a movie costs."""
    import tempfile
    import time

    import bpy

    from spatia.formats.video import write_frames, write_video
    from spatia_blender import clip_import
    from spatia_blender.compat import strips

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    rng = np.random.default_rng(1)
    video = rng.integers(0, 256, size=(frames, height, width, 3), dtype=np.uint8)  # noise: the costliest PNGs
    clips = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(2):
            directory = Path(folder) / f"clip{i}" / "frames"
            files = [p.name for p in write_frames(directory, video, start=i * frames)]
            t0 = time.perf_counter()
            clip = clip_import.clip_frames(f"Spatia {i}", str(directory), files, 1 + i * frames)
            prepare = time.perf_counter() - t0
            queue = clip_import.StepQueue()
            steps = clip_import.ClipImport(scene.name, camera.name, clip, retire=True).steps()
            names = [name for name, _ in steps]
            queue.add(steps)  # registers its timer, which never fires in background mode: ticked here
            ticks = []
            while queue.pending:
                t0 = time.perf_counter()
                queue.tick()
                ticks.append(time.perf_counter() - t0)
            queue.clear()
            clips.append({"apply_tick_prepare_s": round(prepare, 4),
                          "ticks_s": dict(zip(names, (round(t, 4) for t in ticks))),
                          "largest_tick_s": round(max(ticks), 4)})
        # the movie import it replaces: a movie clip for the camera and a movie strip, each
        # decoding the video's first frame on the main thread
        path = Path(folder) / "clip.mp4"
        write_video(path, video, 24.0)
        t0 = time.perf_counter()
        bpy.data.movieclips.load(str(path))
        movie_clip = time.perf_counter() - t0
        t0 = time.perf_counter()
        strips(scene.sequence_editor).new_movie("movie", str(path), 5, 1)
        movie_strip = time.perf_counter() - t0
    largest = max(c["largest_tick_s"] for c in clips)
    return {"frames": frames, "size": f"{width}x{height}", "first": clips[0], "second": clips[1],
            "largest_tick_s": largest, "movie_reference_s": {"movieclips.load": round(movie_clip, 4),
                                                            "new_movie strip": round(movie_strip, 4)}}


if __name__ == "__main__":
    sys.exit(main())
