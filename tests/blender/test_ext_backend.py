"""End to end against a real backend process on loopback with the preview generator: start
it from the preferences, create a world from the active camera's render of the demo room,
generate a short clip, and find the clip (camera background + sequencer strip + image
sequence) and the new memory version in the scene; then push an edit and revert it."""

import importlib.util
import os
import socket
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.bpy, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def room(tmp_path, monkeypatch):
    bpy = pytest.importorskip("bpy")
    if importlib.util.find_spec("spatia.service") is None:
        pytest.skip("the backend service (spatia.service) is not importable in this checkout yet")
    import addon_utils

    from spatia.demo.scene import build_demo_room, keyframe_camera, look_away_and_back

    monkeypatch.setenv("SPATIA_BLENDER_USER_DIR", str(tmp_path / "user"))
    info = build_demo_room(64, 48)
    keyframe_camera(info.scene, info.camera, look_away_and_back(20))
    addon_utils.enable("spatia_blender", default_set=True, handle_error=None)
    prefs = bpy.context.preferences.addons["spatia_blender"].preferences
    prefs.python_path = sys.executable
    prefs.port = free_port()
    prefs.data_dir = str(tmp_path / "backend")
    yield bpy, info
    from spatia_blender import runtime

    log = runtime.backend.log_path
    runtime.backend.stop()
    addon_utils.disable("spatia_blender", default_set=True, handle_error=None)
    if log and os.path.isfile(log):
        with open(log, encoding="utf-8", errors="replace") as handle:
            print(handle.read()[-4000:])


def test_generate_against_real_backend(room, tmp_path):
    bpy, info = room
    from spatia.demo.scene import keyframe_camera, look_away_and_back

    from spatia_blender import memory_object, runtime

    scene, camera = info.scene, info.camera
    settings = scene.spatia
    assert bpy.ops.spatia.backend_start() == {"FINISHED"}
    assert runtime.backend.running
    assert bpy.ops.spatia.test_connection() == {"FINISHED"}
    assert runtime.connection.connected and runtime.connection.health["api_version"] == 1

    assert bpy.ops.spatia.world_from_render(samples=4) == {"FINISHED"}, settings.status
    world_id = settings.world_id
    assert world_id and settings.world_frame_start == 1 and settings.world_frames == 0
    memory = bpy.data.objects[memory_object.OBJECT_NAME]
    first_version = memory["spatia_memory_version"]
    assert memory["spatia_world"] == world_id and first_version == settings.memory_version >= 1
    assert len(memory.data.vertices) > 500
    assert [v.version for v in settings.versions] == [first_version]

    settings.prompts.add().text = "a sunlit room"
    settings.first_round_frames, settings.round_frames, settings.overlap = 12, 10, 2
    assert bpy.ops.spatia.generate() == {"FINISHED"}, settings.status
    assert settings.job_status == "succeeded" and settings.job_fraction == pytest.approx(1.0)
    assert not settings.job_error

    # the clip: behind the camera, in the sequencer at the first frame, on disk as images
    (clip,) = settings.clips
    assert clip.frame_start == 1 and clip.frame_count == 20
    backgrounds = [bg for bg in camera.data.background_images if bg.image is not None]
    assert backgrounds and backgrounds[0].image.source == "SEQUENCE" and camera.data.show_background_images
    assert (backgrounds[0].image_user.frame_start, backgrounds[0].image_user.frame_duration) == (1, 20)
    strip = scene.sequence_editor.strips[clip.name]
    assert strip.type == "IMAGE" and strip.frame_start == 1 and strip.frame_final_duration == 20
    frames = sorted(os.listdir(clip.frames_dir))
    assert len(frames) == 20 and frames[0].endswith(".png")
    assert str(tmp_path / "user") in clip.frames_dir

    # the new memory version replaced the object
    version = memory["spatia_memory_version"]
    assert version > first_version and clip.memory_version == version == settings.memory_version
    assert [v.version for v in settings.versions][-1] == version
    assert settings.world_frames == 20

    # continue the same path 8 frames further: one more round; the new video holds all 28 frames
    keyframe_camera(scene, camera, look_away_and_back(20) + look_away_and_back(9)[1:])
    assert scene.frame_end == 28
    assert bpy.ops.spatia.generate() == {"FINISHED"}, settings.status
    first, second = settings.clips
    assert second.frame_start == 1 and second.frame_count == 28 and settings.world_frames == 28
    assert len(os.listdir(second.frames_dir)) == 8  # only the new frames are downloaded
    # each clip shows its own frames: the first 1-20, the second 21-28
    shown = {bg.image.name: (bg.image_user.frame_start, bg.image_user.frame_duration)
             for bg in camera.data.background_images if bg.show_background_image}
    assert shown == {first.name: (1, 20), second.name: (21, 8)}
    placed = {s.name: (s.frame_final_start, s.frame_final_duration, s.mute) for s in scene.sequence_editor.strips}
    assert placed == {first.name: (1, 20, False), second.name: (21, 8, False)}
    version = memory["spatia_memory_version"]
    assert version == second.memory_version > clip.memory_version

    # delete a tenth of the points and push; then revert to the generated version
    points = memory_object.read_memory(memory)
    count = len(points["xyz"])
    import bmesh

    bm = bmesh.new()
    bm.from_mesh(memory.data)
    bm.verts.ensure_lookup_table()
    bmesh.ops.delete(bm, geom=list(bm.verts)[: count // 10], context="VERTS")
    bm.to_mesh(memory.data)
    bm.free()
    bpy.context.view_layer.objects.active = memory
    assert bpy.ops.spatia.memory_push(include_selected=False) == {"FINISHED"}, settings.status
    edited = memory["spatia_memory_version"]
    assert edited == version + 1 and len(memory.data.vertices) == count - count // 10
    deleted = set(points["point_id"][: count // 10].tolist())
    assert not deleted & set(memory_object.read_memory(memory)["point_id"].tolist())

    assert bpy.ops.spatia.memory_revert(version=version) == {"FINISHED"}, settings.status
    assert memory["spatia_memory_version"] == edited + 1 and len(memory.data.vertices) == count
    np.testing.assert_array_equal(np.sort(memory_object.read_memory(memory)["point_id"]), np.sort(points["point_id"]))

    # coverage along the path: the memory now knows most of every frame
    assert bpy.ops.spatia.coverage() == {"FINISHED"}, settings.status
    assert 0.3 < settings.coverage_mean <= 1.0

    assert bpy.ops.spatia.backend_stop() == {"FINISHED"}
    assert not runtime.backend.running
    with pytest.raises(RuntimeError, match="cannot reach"):
        bpy.ops.spatia.test_connection()
