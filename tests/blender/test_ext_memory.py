"""The memory object: a 1M-point round trip, and pushing edits (deleted, moved, duplicated
points and a new cube's sampled points) to a backend as the diff against the version it came from."""

import numpy as np
import pytest

from spatia_blender.safetensors_io import write_safetensors

from ext_fake_backend import FakeBackend

pytestmark = pytest.mark.bpy


def snapshot(n, seed=0, first_id=0):
    rng = np.random.default_rng(seed)
    return {
        "xyz": rng.uniform(-3, 3, size=(n, 3)).astype(np.float32),
        "rgb": rng.integers(0, 256, size=(n, 3), dtype=np.uint8),
        "conf": rng.random(n).astype(np.float32),
        "point_id": (np.arange(n, dtype=np.int64) * 3 + first_id),
    }


def test_memory_round_trip_1m(addon):
    bpy = addon
    from spatia_blender import memory_object, scene_data

    arrays = snapshot(1_000_000)
    memory = scene_data.parse_memory(write_safetensors(arrays, {"voxel_size": "0.02", "version": "7"}))
    for name in arrays:
        np.testing.assert_array_equal(memory[name], arrays[name])
    scene = bpy.context.scene
    obj = scene_data.import_memory_version(scene, memory, "w", 7)
    assert obj["spatia_memory_version"] == 7 and obj["spatia_world"] == "w" and obj["spatia_voxel_size"] == 0.02
    back = memory_object.read_memory(obj)
    np.testing.assert_array_equal(back["xyz"], arrays["xyz"])
    np.testing.assert_array_equal(back["rgb"], arrays["rgb"])
    np.testing.assert_array_equal(back["point_id"], arrays["point_id"])
    np.testing.assert_array_equal(back["conf"], arrays["conf"])
    obj.location = (1.0, 2.0, 3.0)
    bpy.context.view_layer.update()
    moved = memory_object.read_memory(obj)
    np.testing.assert_allclose(moved["xyz"][:100], arrays["xyz"][:100] + [1, 2, 3], atol=1e-5)


@pytest.fixture
def fake_backend(addon):
    arrays = snapshot(500, seed=3, first_id=10)
    backend = FakeBackend({1: write_safetensors(arrays, {"voxel_size": "0.1", "version": "1"})}, voxel_size=0.1)
    prefs = addon.context.preferences.addons["spatia_blender"].preferences
    prefs.backend_url = backend.url
    yield backend, arrays
    backend.close()


def test_push_edits_sends_the_diff(addon, fake_backend):
    bpy = addon
    import bmesh

    backend, arrays = fake_backend
    scene = bpy.context.scene
    scene.spatia.world_id = "w"
    assert bpy.ops.spatia.memory_import(version=-1) == {"FINISHED"}
    obj = bpy.data.objects["Spatia Memory"]
    assert obj["spatia_memory_version"] == 1 and len(obj.data.vertices) == 500
    assert [v.version for v in scene.spatia.versions] == [1]

    # delete vertices 0..9, move 20..24 by +1 z, duplicate 30..32 (copies moved by +5 x)
    bm = bmesh.new()
    bm.from_mesh(obj.data)
    bm.verts.ensure_lookup_table()
    for i in range(20, 25):
        bm.verts[i].co.z += 1.0
    duplicated = bmesh.ops.duplicate(bm, geom=[bm.verts[i] for i in range(30, 33)])
    for vert in duplicated["geom"]:
        if isinstance(vert, bmesh.types.BMVert):
            vert.co.x += 5.0
    bm.verts.ensure_lookup_table()
    bmesh.ops.delete(bm, geom=[bm.verts[i] for i in range(10)], context="VERTS")
    bm.to_mesh(obj.data)
    bm.free()
    obj.data.update()

    # a red cube to add, selected
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(10, 0, 0))
    cube = bpy.context.active_object
    material = bpy.data.materials.new("Red")
    if material.node_tree is None:
        material.use_nodes = True
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (1.0, 0.0, 0.0, 1.0)
    cube.data.materials.append(material)
    obj.select_set(False)
    cube.select_set(True)
    bpy.context.view_layer.objects.active = obj

    assert bpy.ops.spatia.memory_push(message="tidy", include_selected=True) == {"FINISHED"}
    (edits,) = backend.posted("/v1/worlds/w/memory/edits")
    ids = arrays["point_id"]
    assert edits["parent"] == 1 and edits["message"] == "tidy"
    assert sorted(edits["delete_ids"]) == ids[:10].tolist()
    assert sorted(edits["move_ids"]) == ids[20:25].tolist()
    order = np.argsort(edits["move_ids"])
    np.testing.assert_allclose(np.array(edits["move_xyz"])[order], arrays["xyz"][20:25] + [0, 0, 1], atol=1e-5)
    add_xyz, add_rgb = np.array(edits["add_xyz"]), np.array(edits["add_rgb"])
    copies = add_xyz[:, 0] < 9.4
    assert copies.sum() == 3
    np.testing.assert_allclose(np.sort(add_xyz[copies], axis=0), np.sort(arrays["xyz"][30:33] + [5, 0, 0], axis=0), atol=1e-5)
    cube_points = add_xyz[~copies]
    # a unit cube has area 6: about 6 / 0.1^2 = 600 samples plus a centroid per triangle
    assert 450 < len(cube_points) < 800
    assert np.all(np.abs(cube_points - [10, 0, 0]).max(axis=1) <= 0.5 + 1e-6)
    assert np.all(add_rgb[~copies] == [255, 0, 0])
    # the new version is imported and the cube hidden
    assert obj["spatia_memory_version"] == 2 and [v.version for v in scene.spatia.versions] == [1, 2]
    assert cube.hide_get() and cube.hide_render

    # nothing changed since: nothing is sent
    assert bpy.ops.spatia.memory_push(include_selected=False) == {"FINISHED"}
    assert len(backend.posted("/v1/worlds/w/memory/edits")) == 1
    assert "no changes" in scene.spatia.status


def test_coverage_becomes_an_fcurve(addon, fake_backend):
    bpy = addon
    from spatia_blender import scene_data

    backend, _ = fake_backend
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.frame_start, scene.frame_end = 3, 12
    scene.spatia.world_id = "w"
    backend.coverage = [0.9, 0.8, 0.7, 0.2, 0.1, 0.3, 0.5, 0.6, 0.95, 1.0]
    assert bpy.ops.spatia.coverage() == {"FINISHED"}
    (body,) = backend.posted("/v1/worlds/w/query/coverage")
    assert len(body["cameras"]["w2c"]) == 10 and body["cameras"]["width"] == scene.render.resolution_x
    frames, values = scene_data.read_coverage_curve(scene)
    assert frames.tolist() == list(range(3, 13))
    np.testing.assert_allclose(values, backend.coverage, atol=1e-6)
    scene.frame_set(7)
    assert scene["spatia_coverage"] == pytest.approx(0.1)
    assert scene.spatia.coverage_min == pytest.approx(0.1) and scene.spatia.coverage_min_frame == 7


@pytest.fixture
def threaded(addon, monkeypatch):
    """The interactive path: work on a thread, callbacks when the main thread drains the queue
    (what bpy.app.timers does in the UI, which does not run in background mode)."""
    import time

    from spatia_blender import runtime

    monkeypatch.setattr(runtime.runner, "_blocking", lambda: False)
    monkeypatch.setattr(runtime.runner, "_wake", None)

    def drain(timeout=20.0):
        deadline = time.monotonic() + timeout
        while runtime.runner.pending and time.monotonic() < deadline:
            runtime.runner.drain()
            time.sleep(0.01)
        assert not runtime.runner.pending
    return drain


def test_operators_return_at_once_and_apply_on_drain(addon, fake_backend, threaded):
    bpy = addon
    from spatia_blender import scene_data

    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.frame_start, scene.frame_end = 1, 5
    scene.spatia.world_id = "w"
    assert bpy.ops.spatia.coverage() == {"FINISHED"}
    assert scene.spatia.status == "computing coverage..."  # nothing applied yet: the main thread has not drained
    threaded()
    frames, values = scene_data.read_coverage_curve(scene)
    assert frames.tolist() == [1, 2, 3, 4, 5] and values[-1] == pytest.approx(1.0)
    assert scene.spatia.status.startswith("coverage: mean 50%")


@pytest.mark.parametrize("mode", ["blocking", "threaded"])
def test_failed_job_is_reported(addon, fake_backend, request, mode):
    bpy = addon
    from spatia_blender import ui

    backend, _ = fake_backend
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.frame_start, scene.frame_end = 1, 5
    settings = scene.spatia
    settings.world_id, settings.world_frame_start = "w", 1
    settings.prompts.add().text = "x"
    if mode == "blocking":
        with pytest.raises(RuntimeError, match="CUDA out of memory"):
            bpy.ops.spatia.generate()
    else:
        drain = request.getfixturevalue("threaded")
        assert bpy.ops.spatia.generate() == {"FINISHED"}
        assert ui.panel_state(settings) == "running"
        drain()
    (posted,) = backend.posted("/v1/jobs")
    assert posted["world_id"] == "w" and posted["shot"]["frames"][0]["frame"] == 1
    assert settings.job_id == "j1" and settings.job_status == "failed"
    assert "OutOfMemoryError: CUDA out of memory" in settings.job_error
    assert ui.panel_state(settings) == "failed" and settings.status.startswith("Error: ")
    assert len(settings.clips) == 0


def test_world_from_image_uploads_image_and_camera(addon, fake_backend, tmp_path):
    bpy = addon
    import json
    import re

    from spatia_blender import payloads
    from spatia_blender.camera_export import camera_at_current_frame

    backend, _ = fake_backend
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location = (1, 2, 3)
    scene.frame_start = 4
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = 200
    path = tmp_path / "photo.png"
    path.write_bytes(payloads.encode_png(image))
    assert bpy.ops.spatia.world_from_image(filepath=str(path)) == {"FINISHED"}, scene.spatia.status
    (body,) = backend.posted("/v1/worlds")

    def field(name):
        match = re.search(rb'name="' + name.encode() + rb'"(?:; filename="[^"]*")?\r\n(?:Content-Type: [^\r]*\r\n)?\r\n(.*?)\r\n--',
                          body, re.S)
        assert match, name
        return match.group(1)

    assert field("kind") == b"image" and field("width") == b"64" and field("height") == b"48"
    assert field("image") == path.read_bytes()
    camera = json.loads(field("camera"))
    k, w2c, _, _ = camera_at_current_frame(scene, cam)
    np.testing.assert_allclose(camera["intrinsics"], k)
    np.testing.assert_allclose(camera["w2c"], w2c)
    settings = scene.spatia
    assert settings.world_id == "w" and settings.world_frame_start == 4
    assert bpy.data.objects["Spatia Memory"]["spatia_memory_version"] == 1
    with pytest.raises(RuntimeError, match="PNG or JPEG"):
        bpy.ops.spatia.world_from_image(filepath=str(tmp_path / "missing.exr"))


def test_version_skew_stops_generation_before_submitting(addon, fake_backend):
    bpy = addon
    backend, _ = fake_backend
    backend.api_version = 2
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.frame_start, scene.frame_end = 1, 3
    scene.spatia.world_id, scene.spatia.world_frame_start = "w", 1
    scene.spatia.prompts.add().text = "x"
    scene.spatia.job_id, scene.spatia.job_status = "j-previous", "interrupted"  # an earlier job, resumable
    assert bpy.ops.spatia.resume.poll() and bpy.ops.spatia.follow.poll()
    with pytest.raises(RuntimeError, match="speaks API version 2"):
        bpy.ops.spatia.generate()
    assert backend.posted("/v1/jobs") == [] and scene.spatia.job_status == "failed"
    # the refused Generate is the scene's last job now: Resume and Follow Job do not reach for the earlier one
    assert scene.spatia.job_id == "" and "speaks API version 2" in scene.spatia.job_error
    assert not bpy.ops.spatia.resume.poll() and not bpy.ops.spatia.follow.poll()


def test_the_connection_line_follows_a_backend_that_stops(addon, fake_backend):
    bpy = addon
    import subprocess
    import sys

    from spatia_blender import runtime
    from spatia_blender.operators.common import WATCH_INTERVAL_S, watch_connection

    backend, _ = fake_backend
    assert bpy.ops.spatia.test_connection() == {"FINISHED"} and runtime.connection.connected
    assert watch_connection() == WATCH_INTERVAL_S and runtime.connection.connected  # still answering
    backend.close()  # the backend goes away without Blender's knowing
    watch_connection()
    assert not runtime.connection.connected and runtime.connection.error
    # a local backend this Blender started exits by itself: reported with its status, Start offered again
    runtime.connection.set_ok(runtime.connection.url, {"version": "x"})
    runtime.backend.process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    runtime.backend.process.wait(30)
    watch_connection()
    assert not runtime.connection.connected and "exited (status 3)" in runtime.connection.error
    assert runtime.backend.process is None and bpy.ops.spatia.backend_start.poll()
