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

    assert bpy.ops.spatia.memory_push(message="tidy") == {"FINISHED"}
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
