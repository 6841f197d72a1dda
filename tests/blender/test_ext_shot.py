"""The shot the extension submits: built from an animated Blender camera, valid for the
backend's schema, with exactly export_camera's cameras; camera path presets key the camera."""

import numpy as np
import pytest

pytestmark = pytest.mark.bpy


def animated_camera(bpy):
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 640, 360, 50
    scene.render.fps, scene.render.fps_base = 30, 1.001
    data = bpy.data.cameras.new("cam")
    data.sensor_fit = "AUTO"
    obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(obj)
    scene.camera = obj
    obj.scale = (2.0, 2.0, 2.0)
    for frame, lens, loc, rot, shift in [(5, 30.0, (0, -6, 1.5), (1.3, 0.0, 0.1), (0.0, 0.0)),
                                         (24, 60.0, (3, -4, 2.5), (1.1, 0.2, 0.8), (0.1, -0.05))]:
        data.lens = lens
        data.shift_x, data.shift_y = shift
        obj.location, obj.rotation_euler = loc, rot
        for path in ("lens", "shift_x", "shift_y"):
            data.keyframe_insert(path, frame=frame)
        obj.keyframe_insert("location", frame=frame)
        obj.keyframe_insert("rotation_euler", frame=frame)
    scene.frame_start, scene.frame_end = 5, 24
    return scene, obj


def test_shot_from_animated_camera_validates_and_matches_export(addon):
    bpy = addon
    from spatia.formats.shot import load_shot

    from spatia_blender.camera_export import export_camera
    from spatia_blender.operators import shot_for_scene

    scene, obj = animated_camera(bpy)
    settings = scene.spatia
    settings.world_id, settings.world_frame_start = "w1", 5
    settings.prompts.add().text = "a street at dusk"
    settings.dynamic_prompts = "person, car"
    settings.use_seed, settings.seed, settings.steps = True, 42, 12
    settings.first_round_frames, settings.round_frames, settings.overlap = 9, 7, 2
    shot, _ = shot_for_scene(scene)
    spec = load_shot(shot)
    reference = export_camera(scene, obj)
    assert spec.frame_numbers.tolist() == list(range(5, 25)) == reference["frames"]
    assert (spec.width, spec.height) == (320, 180) and spec.fps == pytest.approx(30 / 1.001)
    np.testing.assert_array_equal(spec.keyframe_cameras().w2c, reference["w2c"])
    np.testing.assert_array_equal(spec.keyframe_cameras().intrinsics, reference["intrinsics"])
    assert len(set(np.round(reference["intrinsics"][:, 0], 6))) > 1  # the lens animation is in it
    assert spec.world == "w1" and spec.seed == 42 and spec.steps == 12 and spec.generator == "preview"
    assert spec.dynamic_prompts == ["person", "car"] and spec.quality == "standard" and spec.vram == "auto"
    assert (spec.rounds.first_round_frames, spec.rounds.round_frames, spec.rounds.overlap) == (9, 7, 2)

    # 20 frames in rounds of 9 then 7 (2 overlap): 9, 5 + 2, 5 + 2, ... -> 4 rounds; 2 prompts are not enough
    settings.prompts.add().text = "night"
    from spatia_blender.plan import PlanError

    with pytest.raises(PlanError, match="fewer prompts than rounds: 2 prompts for 4 rounds"):
        shot_for_scene(scene)
    settings.world_frame_start = 1
    with pytest.raises(ValueError, match="starts at frame 1"):
        shot_for_scene(scene)


@pytest.mark.parametrize("preset", ["orbit", "dolly_in", "pan", "look_away_and_back"])
def test_camera_path_presets_key_the_camera(addon, preset):
    bpy = addon

    from spatia_blender import presets, runtime
    from spatia_blender.camera_export import export_camera
    from spatia_geometry.camera_math import blender_to_w2c

    scene = bpy.context.scene
    obj = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(obj)
    scene.camera = obj
    obj.location, obj.rotation_euler = (1.0, -5.0, 1.5), (1.4, 0.0, 0.3)
    scene.frame_start, scene.frame_end = 1, 25
    bpy.context.view_layer.update()
    base = np.array(obj.matrix_world)
    assert bpy.ops.spatia.camera_path(preset=preset) == {"FINISHED"}
    expected = presets.camera_path(presets.camera_presets(runtime.presets_dir())[preset], base, 25)
    exported = export_camera(scene, obj)
    np.testing.assert_allclose(exported["w2c"], blender_to_w2c(np.stack(expected)), atol=1e-5)
    np.testing.assert_allclose(exported["w2c"][0], blender_to_w2c(base), atol=1e-5)
    assert not np.allclose(exported["w2c"][6], exported["w2c"][0], atol=1e-3)
    with pytest.raises(RuntimeError, match="unknown camera path"):
        bpy.ops.spatia.camera_path(preset="nope")
