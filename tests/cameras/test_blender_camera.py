"""The camera export agrees with Blender's own projection (world_to_camera_view)."""

import numpy as np
import pytest

from spatia.cameras import Cameras, blender_intrinsics, intrinsics_to_blender, w2c_to_blender
from spatia_geometry import camera_math

pytestmark = pytest.mark.bpy

CASES = [
    dict(fit="AUTO", res=(640, 360), pct=100, aspect=(1, 1), shift=(0.0, 0.0)),
    dict(fit="AUTO", res=(360, 640), pct=50, aspect=(1, 1), shift=(0.1, -0.05)),
    dict(fit="HORIZONTAL", res=(800, 600), pct=75, aspect=(1, 1), shift=(-0.2, 0.1)),
    dict(fit="VERTICAL", res=(800, 600), pct=100, aspect=(1, 1), shift=(0.05, 0.2)),
    dict(fit="AUTO", res=(720, 576), pct=100, aspect=(16, 15), shift=(0.1, 0.1)),
    dict(fit="VERTICAL", res=(500, 700), pct=40, aspect=(1, 2), shift=(0.0, -0.15)),
    dict(fit="AUTO", res=(500, 500), pct=100, aspect=(3, 1), shift=(0.2, 0.0)),
]


def build_animated_camera(bpy, case):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = case["res"]
    scene.render.resolution_percentage = case["pct"]
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = case["aspect"]
    data = bpy.data.cameras.new("cam")
    data.sensor_fit = case["fit"]
    data.sensor_width, data.sensor_height = 32.0, 20.0
    obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(obj)
    scene.camera = obj
    obj.scale = (1.5, 0.7, 2.0)  # scale must not leak into the pose
    for frame, lens, loc, rot, shift in [
        (1, 35.0, (0, -6, 1.5), (1.3, 0.0, 0.1), case["shift"]),
        (10, 70.0, (3, -4, 2.5), (1.1, 0.2, 0.8), (case["shift"][0] + 0.1, case["shift"][1] - 0.1)),
    ]:
        data.lens = lens
        data.shift_x, data.shift_y = shift
        obj.location, obj.rotation_euler = loc, rot
        data.keyframe_insert("lens", frame=frame)
        data.keyframe_insert("shift_x", frame=frame)
        data.keyframe_insert("shift_y", frame=frame)
        obj.keyframe_insert("location", frame=frame)
        obj.keyframe_insert("rotation_euler", frame=frame)
    scene.frame_start, scene.frame_end = 1, 10
    return scene, obj


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['fit']}-{c['res'][0]}x{c['res'][1]}@{c['pct']}-asp{c['aspect']}")
def test_export_matches_world_to_camera_view(case):
    bpy = pytest.importorskip("bpy")
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    from spatia_blender.camera_export import export_camera

    scene, obj = build_animated_camera(bpy, case)
    exported = export_camera(scene, obj, frames=[1, 4, 7, 10])
    cams = Cameras(exported["intrinsics"], exported["w2c"], exported["width"], exported["height"])
    assert (cams.width, cams.height) == (case["res"][0] * case["pct"] // 100, case["res"][1] * case["pct"] // 100)
    rng = np.random.default_rng(3)
    points = rng.uniform([-3, -2, -1], [3, 4, 4], size=(40, 3))
    uv, z = cams.project(points)
    for i, frame in enumerate(exported["frames"]):
        scene.frame_set(frame)
        for p, (u, v), depth in zip(points, uv[i], z[i]):
            ndc = world_to_camera_view(scene, obj, Vector(p))
            if ndc.z <= 0.1:
                continue
            expected = (ndc.x * cams.width, (1.0 - ndc.y) * cams.height)
            assert abs(u - expected[0]) < 0.01 and abs(v - expected[1]) < 0.01, (frame, p, (u, v), expected)
            assert depth == pytest.approx(ndc.z, abs=1e-4)


def test_orthographic_camera_is_refused():
    bpy = pytest.importorskip("bpy")
    from spatia_blender.camera_export import CameraExportError, export_camera

    scene, obj = build_animated_camera(bpy, CASES[0])
    obj.data.type = "ORTHO"
    with pytest.raises(CameraExportError, match="orthographic"):
        export_camera(scene, obj)
    obj.data.type = "PANO"
    with pytest.raises(CameraExportError, match="panoramic"):
        export_camera(scene, obj)


def test_opencv_cameras_applied_to_blender_reproduce_projection():
    """intrinsics_to_blender + w2c_to_blender drive a Blender camera that projects identically."""
    bpy = pytest.importorskip("bpy")
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix, Vector

    cams = Cameras.look_at([[2.0, -5.0, 1.0]], [0.0, 0.0, 0.5], width=320, height=200)
    k = cams.intrinsics.copy()
    k[0, 1] *= 0.8  # non-square pixels
    k[0, 2:] += [12.0, -7.0]  # off-centre principal point
    cams = Cameras(k, cams.w2c, 320, 200)
    settings = intrinsics_to_blender(cams.intrinsics[0], 320, 200)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 320, 200, 100
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = settings["pixel_aspect_x"], settings["pixel_aspect_y"]
    data = bpy.data.cameras.new("cam")
    data.lens, data.sensor_width, data.sensor_fit = float(settings["lens"]), settings["sensor_width"], settings["sensor_fit"]
    data.shift_x, data.shift_y = float(settings["shift_x"]), float(settings["shift_y"])
    obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(obj)
    obj.matrix_world = Matrix(w2c_to_blender(cams.w2c[0]).tolist())
    bpy.context.view_layer.update()

    points = np.random.default_rng(0).uniform(-1, 1, size=(20, 3))
    uv, _ = cams.project(points)
    for p, (u, v) in zip(points, uv[0]):
        ndc = world_to_camera_view(scene, obj, Vector(p))
        assert abs(ndc.x * 320 - u) < 0.01 and abs((1 - ndc.y) * 200 - v) < 0.01


def test_pure_math_round_trip_without_blender():
    k, w, h = blender_intrinsics(50.0, 36.0, 24.0, "AUTO", 1920, 1080, 50, 1.0, 1.0, 0.1, -0.2)
    assert (w, h) == (960, 540)
    assert k[0] == pytest.approx(50.0 * 960 / 36.0)
    assert k[2] == pytest.approx(480 - 0.1 * 960) and k[3] == pytest.approx(270 - 0.2 * 960)
    s = intrinsics_to_blender(k, w, h)
    k2, _, _ = blender_intrinsics(s["lens"], s["sensor_width"], 24.0, s["sensor_fit"], w, h, 100,
                                  s["pixel_aspect_x"], s["pixel_aspect_y"], s["shift_x"], s["shift_y"])
    np.testing.assert_allclose(k2, k)
    mw = np.eye(4)
    mw[:3, 3] = [1, 2, 3]
    np.testing.assert_allclose(camera_math.w2c_to_blender(camera_math.blender_to_w2c(mw)), mw, atol=1e-12)
