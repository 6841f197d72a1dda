"""`spatia demo`, the README's first command, at a tiny size."""

import json

import pytest

from spatia.demo.run import DemoOptions, run_demo
from spatia.formats.video import read_video

pytestmark = [pytest.mark.bpy, pytest.mark.slow]


def test_demo_writes_video_memory_blend_and_report(tmp_path):
    bpy = pytest.importorskip("bpy")
    options = DemoOptions(out=tmp_path / "demo", width=64, height=48, rounds=2, first_round_frames=17,
                          round_frames=13, overlap=5, samples=2)
    report = run_demo(options, progress=lambda fraction, stage: None)
    summary = report["summary"]
    assert summary["frames"] == 25 and summary["rounds"] == 2
    assert summary["memory_versions"] == [1, 2, 3]
    assert read_video(tmp_path / "demo" / "video.mp4").shape == (25, 48, 64, 3)
    assert (tmp_path / "demo" / "memory.ply").stat().st_size > 0
    assert json.loads((tmp_path / "demo" / "report.json").read_text())["summary"] == summary
    # the camera comes back to where it started: the memory shows the first view again
    assert summary["loop_closure_covered_fraction"] > 0.8
    assert summary["loop_closure_psnr_db"] > 15.0

    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "demo" / "demo.blend"))
    memory = bpy.data.objects["Spatia Memory"]
    assert len(memory.data.vertices) == summary["memory_points"]
    assert memory["spatia_memory_version"] == 3
    # each round's new frames (the second round's start after its 5 overlap frames), from the
    # world's PNG frames, behind the camera and in the sequencer
    strips = sorted((s.name, s.frame_final_start, s.frame_final_duration) for s in bpy.context.scene.sequence_editor.strips)
    assert strips == [("Spatia round 0", 1, 17), ("Spatia round 1", 18, 8)]
    users = sorted((bg.image.name, bg.image_user.frame_start, bg.image_user.frame_duration, bg.image_user.frame_offset)
                   for bg in bpy.context.scene.camera.data.background_images)
    assert users == [("Spatia round 0", 1, 17, -1), ("Spatia round 1", 18, 8, 16)]
