"""The world's remembered objects in Blender (docs/objects.md): Empties with their points from a
fetch; keys, switches, deletions and duplicates of those Empties in the shot; the re-entry
marks of the coverage check; all of it against the fake backend, in Object and Edit Mode.

Needs only Blender and the fake backend; the shot is also validated with the backend's schema
where `spatia` is importable (the main suite)."""

import numpy as np
import pytest

from spatia_blender.safetensors_io import write_safetensors

from ext_fake_backend import FakeBackend

pytestmark = pytest.mark.bpy

CAR_KEYS = [{"frame": 30, "position": [4.0, 1.0, 0.5], "heading": 0.7},  # the latest: not last in the list
            {"frame": 10, "position": [1.0, 1.0, 0.5], "heading": 0.1}]


def table(version=5):
    return {"version": version, "memory_version": 1, "up": [0, 0, 1], "objects": [
        {"id": 3, "label": "car", "state": "moving", "condition": True, "reference": True, "points": 40,
         "extent": [4.0, 2.0, 1.5], "keys": list(CAR_KEYS), "seen": [[10, 21]], "last_seen": 30},
        {"id": 5, "label": "person", "state": "parked", "condition": True, "reference": False, "points": 12,
         "extent": [0.5, 0.5, 1.8], "keys": [{"frame": 12, "position": [-2.0, 3.0, 0.9], "heading": -1.0}],
         "seen": [[12, 1]], "last_seen": 12}]}


def cloud(n, seed):
    rng = np.random.default_rng(seed)
    return {"xyz": rng.uniform(-1, 1, size=(n, 3)).round(3).tolist(), "rgb": rng.integers(0, 256, size=(n, 3)).tolist()}


def validate(shot):
    """The backend's own schema check where the backend is importable (not under bpy 4.2 / 4.5)."""
    try:
        from spatia.formats.shot import load_shot
    except ImportError:
        return None
    return load_shot(shot)


@pytest.fixture
def backend(addon):
    rng = np.random.default_rng(0)
    arrays = {"xyz": rng.uniform(-3, 3, size=(50, 3)).astype(np.float32), "rgb": rng.integers(0, 256, (50, 3), dtype=np.uint8),
              "conf": np.ones(50, np.float32), "point_id": np.arange(50, dtype=np.int64)}
    fake = FakeBackend({1: write_safetensors(arrays, {"voxel_size": "0.1", "version": "1"})}, voxel_size=0.1)
    fake.objects = table()
    fake.object_points = {3: cloud(40, 1), 5: cloud(12, 2)}
    addon.context.preferences.addons["spatia_blender"].preferences.backend_url = fake.url
    yield fake
    fake.close()


def shot_scene(bpy, start=1, end=24):
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location, cam.rotation_euler = (0.0, -8.0, 2.0), (1.4, 0.0, 0.0)
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
    scene.frame_start, scene.frame_end = start, end
    settings = scene.spatia
    settings.world_id, settings.world_frame_start = "w", start
    settings.prompts.add().text = "a street"
    settings.first_round_frames, settings.round_frames, settings.overlap = 24, 24, 2
    return scene, settings


def fetch(bpy, **kwargs):
    assert bpy.ops.spatia.objects_fetch(**kwargs) == {"FINISHED"}, bpy.context.scene.spatia.status


def key(obj, frame, location, heading):
    obj.location = location
    obj.rotation_euler.z = heading
    obj.keyframe_insert("location", frame=frame)
    obj.keyframe_insert("rotation_euler", index=2, frame=frame)


def directed(shot, object_id):
    return next(o for o in shot.get("objects", []) if o["id"] == object_id)


def points_child(empty):
    (child,) = [c for c in empty.children if c.spatia_object.is_points]
    return child


# --- fetching -----------------------------------------------------------------------------------
def test_fetch_builds_empties_with_points_and_a_refetch_keeps_the_keys(addon, backend):
    bpy = addon
    from spatia_blender import compat

    scene, settings = shot_scene(bpy, start=5)
    fetch(bpy)
    collection = bpy.data.collections["Spatia Objects"]
    assert collection in scene.collection.children_recursive
    car, person = bpy.data.objects["car 3"], bpy.data.objects["person 5"]
    assert {o.name for o in collection.objects if o.type == "EMPTY"} == {"car 3", "person 5"}
    assert car.type == "EMPTY" and car.spatia_object.object_id == 3 and car.spatia_object.objects_version == 5
    assert car.spatia_object.state == "moving" and car.spatia_object.last_seen == 5 + 30  # video frame 30 -> scene frame
    # at the latest key (frame 30), heading as rotation Z
    np.testing.assert_allclose(car.location, [4.0, 1.0, 0.5], atol=1e-6)
    assert car.rotation_euler.z == pytest.approx(0.7)
    assert not person.spatia_object.reference and person.spatia_object.condition  # the backend's switches
    assert [item.object_id for item in settings.known_objects] == [3, 5] and settings.objects_version == 5
    assert settings.objects_world == "w" and settings.objects_next_id == 6

    points = points_child(car)
    assert points.name == "car 3 points" and points.parent == car and points.hide_render
    assert len(points.data.vertices) == 40
    co = np.empty(120, np.float32)
    points.data.vertices.foreach_get("co", co)
    np.testing.assert_allclose(co.reshape(-1, 3), backend.object_points[3]["xyz"], atol=1e-6)
    rgba = np.empty(160, np.float32)
    points.data.attributes["color"].data.foreach_get("color_srgb", rgba)
    np.testing.assert_array_equal(np.round(rgba.reshape(-1, 4)[:, :3] * 255), backend.object_points[3]["rgb"])
    bpy.context.view_layer.update()
    # in the object's frame: the world position is the Empty's pose applied (identity local transform)
    np.testing.assert_allclose(np.array(points.matrix_world), np.array(car.matrix_world), atol=1e-6)

    # the artist keys the car; the backend moves on (new points, new poses)
    key(car, 8, (0.0, 0.0, 0.0), 0.0)
    key(car, 20, (6.0, 2.0, 0.0), 1.5)
    curves = [fc for fc in compat.action_fcurves(car)]
    shown = tuple(car.location)
    backend.objects = table(version=6)
    backend.objects["objects"][1]["keys"] = [{"frame": 40, "position": [1.0, 1.0, 1.0], "heading": 0.5}]
    backend.object_points[3] = cloud(25, 7)
    fetch(bpy)
    assert bpy.data.objects["car 3"] == car and len([o for o in scene.objects if o.type == "EMPTY"]) == 2
    assert tuple(car.location) == shown  # a keyed Empty is not moved to the fetched pose
    after = compat.action_fcurves(car)
    assert len(after) == len(curves) == 4
    assert sorted(p.co[0] for p in after[0].keyframe_points) == [8.0, 20.0]
    scene.frame_set(20)
    np.testing.assert_allclose(car.location, [6.0, 2.0, 0.0], atol=1e-6)  # its animation, not the fetched pose
    assert car.spatia_object.objects_version == 6 and len(points_child(car).data.vertices) == 25
    np.testing.assert_allclose(person.location, [1.0, 1.0, 1.0])  # unkeyed: moved to its latest pose
    bpy.context.view_layer.update()
    np.testing.assert_allclose(np.array(points_child(person).matrix_world), np.array(person.matrix_world), atol=1e-6)
    assert len([o for o in scene.objects if o.spatia_object.is_points]) == 2  # replaced, not added

    # the backend forgot the person (elsewhere): its Empty goes
    backend.forget([5])
    fetch(bpy)
    assert "person 5" not in bpy.data.objects and "person 5 points" not in bpy.data.objects
    assert [item.object_id for item in settings.known_objects] == [3]

    # the Empties of another world's objects make way for this world's (the keys were for them)
    settings.objects_world = "another world"
    fetch(bpy)
    car = bpy.data.objects["car 3"]
    assert not compat.action_fcurves(car) and car.spatia_object.objects_version == 7
    assert len([o for o in scene.objects if o.type == "EMPTY"]) == 1 and settings.objects_world == "w"


# --- directing ------------------------------------------------------------------------------------
def test_keyed_empties_and_switches_land_in_the_shot(addon, backend):
    bpy = addon
    from spatia_blender.operators import shot_for_scene

    scene, settings = shot_scene(bpy, start=1, end=24)
    fetch(bpy)
    car, person = bpy.data.objects["car 3"], bpy.data.objects["person 5"]
    key(car, 5, (0.0, 0.0, 0.0), 0.0)
    key(car, 15, (3.0, 1.0, 0.0), 1.0)
    key(car, 40, (9.0, 1.0, 0.0), 2.0)  # beyond the shot: its pose at the last frame is sent instead
    person.spatia_object.condition = person.spatia_object.reference = False
    person.location = (7.0, 7.0, 7.0)  # moved but not keyed: the motion model still predicts it
    shot, _ = shot_for_scene(scene)
    spec = validate(shot)
    car_path = directed(shot, 3)["path"]
    # every frame of the shot sampled; kept where a straight line would not give the pose back
    assert car_path[0]["frame"] == 1 and car_path[-1]["frame"] == 24 and len(car_path) > 10
    assert scene.frame_current == 1  # sampling the scene leaves the current frame as it was
    by_frame = {k["frame"]: k for k in car_path}
    np.testing.assert_allclose(by_frame[15]["position"], [3.0, 1.0, 0.0], atol=1e-5)
    assert by_frame[15]["heading"] == pytest.approx(1.0, abs=1e-5)
    frames = [k["frame"] for k in car_path]
    for f in range(1, 25):  # Blender's own (Bezier) pose at each frame, not a line between the keys
        scene.frame_set(f)
        position = [np.interp(f, frames, [k["position"][i] for k in car_path]) for i in range(3)]
        np.testing.assert_allclose(position, car.matrix_world.translation, atol=1e-3)
        assert np.interp(f, frames, [k["heading"] for k in car_path]) == pytest.approx(car.rotation_euler.z, abs=1e-3)
    scene.frame_set(10)
    assert abs(car.location.x - 1.5) > 0.1  # eased: a line from key to key would be 0.5 m off and more
    scene.frame_set(1)
    assert directed(shot, 3)["condition"] and directed(shot, 3)["reference"]
    assert directed(shot, 5) == {"id": 5, "path": [], "condition": False, "reference": False}
    assert "forget_objects" not in shot and "object_memory" not in shot
    settings.object_memory = False
    assert shot_for_scene(scene)[0]["object_memory"] is False
    if spec is not None:
        assert [k.frame for k in spec.objects[0].path] == frames and spec.objects[1].condition is False


def test_deleting_an_empty_forgets_its_object_in_the_next_shot(addon, backend):
    bpy = addon
    from spatia_blender.operators import shot_for_scene

    scene, settings = shot_scene(bpy)
    fetch(bpy)
    person = bpy.data.objects["person 5"]
    with bpy.context.temp_override(selected_objects=[person], active_object=person, object=person):
        assert bpy.ops.object.delete() == {"FINISHED"}  # X in the viewport: its points stay behind
    assert "person 5" not in scene.objects
    shot, _ = shot_for_scene(scene)
    validate(shot)
    assert shot["forget_objects"] == [5] and [o["id"] for o in shot["objects"]] == [3]

    # a fetch does not bring it back (it is forgotten with the next shot) but tidies its points
    fetch(bpy)
    assert "person 5" not in scene.objects and "person 5 points" not in scene.objects
    assert "stay deleted" in settings.status and shot_for_scene(scene)[0]["forget_objects"] == [5]
    fetch(bpy, restore=True)
    assert "person 5" in scene.objects and "forget_objects" not in shot_for_scene(scene)[0]

    # generating with it deleted: the backend forgets it, and the scene no longer knows it
    person = bpy.data.objects["person 5"]
    bpy.data.objects.remove(person)
    succeed_job(backend)
    assert bpy.ops.spatia.generate() == {"FINISHED"}, settings.status
    (submitted,) = backend.posted("/v1/jobs")
    assert submitted["shot"]["forget_objects"] == [5]
    assert [o["id"] for o in backend.objects["objects"]] == [3]
    assert [item.object_id for item in settings.known_objects] == [3] and settings.objects_version == 6
    assert "forget_objects" not in shot_for_scene(scene)[0]


def succeed_job(backend):
    backend.job_states = [("running", 0.5, "round 1/1"), ("succeeded", 1.0, "done")]
    backend.job_files = {"video.mp4": b"not a real video", "frames/000001.png": b"png"}
    backend.job_frames = ["frames/000001.png"]
    backend.job_polls, backend.job_memory_version = 0, None


def duplicate(bpy, obj):
    """Shift+D on the Empty alone."""
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.object.duplicate() == {"FINISHED"}
    return bpy.context.view_layer.objects.active


def test_a_duplicated_empty_becomes_a_copy_with_a_new_id(addon, backend):
    bpy = addon
    from spatia_blender.operators import shot_for_scene

    scene, settings = shot_scene(bpy)
    fetch(bpy)
    car = bpy.data.objects["car 3"]
    copy = duplicate(bpy, car)
    # Shift+D: at once its own id (a copy of 3, made by the next generation) and its own points
    assert copy != car and copy.spatia_object.object_id == 6 and copy.spatia_object.copy_of == 3
    assert copy.name == "car 6" and "car 6" in settings.status and "copy of car 3" in settings.status
    assert points_child(copy).data != points_child(car).data
    assert len(points_child(copy).data.vertices) == len(points_child(car).data.vertices)
    assert points_child(copy).spatia_object.object_id == 6
    copy.location = (10.0, -2.0, 0.5)
    copy.rotation_euler.z = 0.25
    keyed_twin = duplicate(bpy, car)
    key(keyed_twin, 3, (0.0, 5.0, 0.0), 0.0)
    key(keyed_twin, 12, (2.0, 5.0, 0.0), 0.5)
    shot, _ = shot_for_scene(scene)
    validate(shot)
    copies = sorted((o for o in shot["objects"] if o.get("copy_of")), key=lambda o: o["id"])
    assert [(o["id"], o["copy_of"]) for o in copies] == [(6, 3), (7, 3)]  # above every id seen (3, 5)
    by_id = {o["id"]: o for o in copies}
    unkeyed = by_id[copy.spatia_object.object_id]
    assert [k["frame"] for k in unkeyed["path"]] == [1]  # its current pose at the shot's first frame
    np.testing.assert_allclose(unkeyed["path"][0]["position"], [10.0, -2.0, 0.5], atol=1e-6)
    assert unkeyed["path"][0]["heading"] == pytest.approx(0.25)
    twin_path = by_id[keyed_twin.spatia_object.object_id]["path"]
    assert twin_path[0]["frame"] == 1 and twin_path[-1]["frame"] == 24 and len(twin_path) > 2
    assert directed(shot, 3)["path"] == [] and "copy_of" not in directed(shot, 3)  # the original stays itself
    assert copy.spatia_object.copy_of == 3 and copy.name == f"car {copy.spatia_object.object_id}"
    # building the shot again (a retry) sends the same copies, not new ones
    again, _ = shot_for_scene(scene)
    assert sorted((o["id"], o.get("copy_of")) for o in again["objects"]) == [(3, None), (5, None), (6, 3), (7, 3)]

    # a fetch before the generation keeps the copies waiting
    fetch(bpy)
    assert copy.name in scene.objects and copy.spatia_object.copy_of == 3
    # the generation makes them; the fetch after it gives each its real object
    succeed_job(backend)
    assert bpy.ops.spatia.generate() == {"FINISHED"}, settings.status
    assert sorted(o["id"] for o in backend.objects["objects"]) == [3, 5, 6, 7]
    assert copy.spatia_object.copy_of == 0 and copy.spatia_object.objects_version == backend.objects["version"]
    assert len(points_child(copy).data.vertices) == 40 and copy.name == f"car {copy.spatia_object.object_id}"
    assert sorted(item.object_id for item in settings.known_objects) == [3, 5, 6, 7]
    final, _ = shot_for_scene(scene)
    assert not any(o.get("copy_of") for o in final["objects"]) and "forget_objects" not in final


# --- re-entry marks ----------------------------------------------------------------------------------
def test_coverage_marks_where_objects_come_back_into_view(addon, backend, tmp_path):
    bpy = addon
    scene, settings = shot_scene(bpy, start=5, end=24)
    fetch(bpy)
    key(bpy.data.objects["car 3"], 10, (1.0, 0.0, 0.0), 0.0)
    bpy.data.objects.remove(bpy.data.objects["person 5"])  # deleted: no mark for it
    backend.object_entries = {3: [4, 12], 5: [7]}
    assert bpy.ops.spatia.coverage() == {"FINISHED"}, settings.status
    (body,) = backend.posted("/v1/worlds/w/query/object-entries")
    assert body["start_frame"] == 0 and len(body["cameras"]["w2c"]) == 20
    assert [o["id"] for o in body["objects"]] == [3]
    # held at its one key all along: one key, at the first video frame
    assert [k["frame"] for k in body["objects"][0]["path"]] == [0]
    np.testing.assert_allclose(body["objects"][0]["path"][0]["position"], [1.0, 0.0, 0.0], atol=1e-6)
    marks = [(e.frame, e.object_id, e.label) for e in settings.object_entries]
    assert marks == [(9, 3, "car"), (17, 3, "car")]
    assert "car 3 comes back into view at frame 9" in settings.status

    path = str(tmp_path / "entries.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    assert [(e.frame, e.object_id) for e in bpy.context.scene.spatia.object_entries] == [(9, 3), (17, 3)]


def test_a_backend_without_object_memory_still_generates_and_measures(addon, backend):
    bpy = addon
    scene, settings = shot_scene(bpy)
    backend.objects = None
    assert bpy.ops.spatia.coverage() == {"FINISHED"}, settings.status
    assert len(settings.object_entries) == 0 and settings.coverage_mean >= 0
    succeed_job(backend)
    assert bpy.ops.spatia.generate() == {"FINISHED"}, settings.status
    assert settings.memory_version == 2 and not bpy.data.collections.get("Spatia Objects")
    with pytest.raises(RuntimeError, match="404"):
        bpy.ops.spatia.objects_fetch()


# --- forgetting now, Edit Mode ----------------------------------------------------------------------
def test_forget_now_and_a_stale_objects_version(addon, backend):
    bpy = addon
    from spatia_blender.operators import shot_for_scene

    scene, settings = shot_scene(bpy)
    fetch(bpy)
    person = bpy.data.objects["person 5"]
    bpy.context.view_layer.objects.active = points_child(person)  # its points stand for it too
    backend.forget([99])  # someone else changed the objects: version 6
    with pytest.raises(RuntimeError, match="objects changed on the backend \\(now version 6\\)"):
        bpy.ops.spatia.object_forget()
    assert "person 5" in scene.objects and [o["id"] for o in backend.objects["objects"]] == [3, 5]
    fetch(bpy)
    bpy.context.view_layer.objects.active = bpy.data.objects["person 5"]
    assert bpy.ops.spatia.object_forget() == {"FINISHED"}, settings.status
    ((_, _, headers),) = [h for h in backend.headers if h[0] == "DELETE" and h[2].get("If-Match") == '"6"']
    assert [o["id"] for o in backend.objects["objects"]] == [3] and settings.objects_version == 7
    assert "person 5" not in scene.objects and "person 5 points" not in bpy.data.objects
    assert [item.object_id for item in settings.known_objects] == [3]
    assert "forget_objects" not in shot_for_scene(scene)[0]


def test_objects_work_while_the_memory_is_in_edit_mode(addon, backend):
    bpy = addon
    from spatia_blender.operators import shot_for_scene

    scene, settings = shot_scene(bpy)
    assert bpy.ops.spatia.memory_import(version=-1) == {"FINISHED"}, settings.status
    memory = bpy.data.objects["Spatia Memory"]
    bpy.context.view_layer.objects.active = memory
    with bpy.context.temp_override(active_object=memory, object=memory):
        bpy.ops.object.mode_set(mode="EDIT")
    assert memory.mode == "EDIT"
    fetch(bpy)
    assert memory.mode == "EDIT" and len(points_child(bpy.data.objects["car 3"]).data.vertices) == 40
    key(bpy.data.objects["car 3"], 6, (1.0, 2.0, 0.0), 0.3)
    bpy.data.objects.remove(bpy.data.objects["person 5"])
    shot, _ = shot_for_scene(scene)
    assert [k["frame"] for k in directed(shot, 3)["path"]] == [1] and shot["forget_objects"] == [5]
    assert bpy.ops.spatia.coverage() == {"FINISHED"}, settings.status
    fetch(bpy)  # a refetch replaces points while the memory stays in Edit Mode
    assert memory.mode == "EDIT"
    # the object's own points in Edit Mode are replaced too, and it returns to Edit Mode
    points = points_child(bpy.data.objects["car 3"])
    with bpy.context.temp_override(active_object=memory, object=memory):
        bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.objects.active = points
    with bpy.context.temp_override(active_object=points, object=points):
        bpy.ops.object.mode_set(mode="EDIT")
    backend.object_points[3] = cloud(9, 3)
    fetch(bpy)
    assert points.mode == "EDIT" and len(points.data.vertices) == 9


def test_the_timeline_draws_a_mark_and_a_name_per_reentry(addon, monkeypatch):
    bpy = addon
    import blf

    from spatia_blender import coverage_overlay, payloads

    entries = bpy.context.scene.spatia.object_entries
    for frame, object_id, label in [(5, 3, "car"), (6, 5, "person"), (40, 3, "car")]:
        item = entries.add()
        item.frame, item.object_id, item.label = frame, object_id, label
    drawn, texts = [], []
    monkeypatch.setattr(coverage_overlay, "_triangles", lambda *batch: drawn.append(batch))  # no GPU here
    monkeypatch.setattr(blf, "draw", lambda font, text: texts.append(text))
    coverage_overlay._draw_entries(bpy.context.scene, (10.0, -20.0), 40.0, 1.0)
    ((verts, colours, indices),) = drawn
    np.testing.assert_allclose(verts[::3], [[30.0, 40.0], [40.0, 40.0], [380.0, 40.0]])  # tips on frames 5, 6, 40
    np.testing.assert_allclose(colours[3:6], [payloads.object_colour(5)] * 3)
    assert texts == ["car 3", "car 3"]  # "person 5" would overlap "car 3": left out


# --- paths from the evaluated scene ------------------------------------------------------------------
def test_constraints_parents_and_location_only_keys_give_the_played_path(addon, backend):
    bpy = addon
    from spatia_blender.operators import shot_for_scene

    scene, settings = shot_scene(bpy, start=1, end=24)
    fetch(bpy)
    car, person = bpy.data.objects["car 3"], bpy.data.objects["person 5"]
    # the car follows another object by a constraint (nothing keyed on the car itself)
    leader = bpy.data.objects.new("leader", None)
    scene.collection.objects.link(leader)
    leader.location = (0.0, 0.0, 0.0)
    leader.keyframe_insert("location", frame=1)
    leader.location = (0.0, 6.0, 0.0)
    leader.keyframe_insert("location", frame=24)
    follow = car.constraints.new("COPY_LOCATION")
    follow.target = leader
    # the person is keyed by location only, along an L: its heading turns with its path
    person.rotation_euler.z = 0.0
    for frame, location in ((1, (0.0, 0.0, 0.0)), (12, (4.0, 0.0, 0.0)), (24, (4.0, 4.0, 0.0))):
        person.location = location
        person.keyframe_insert("location", frame=frame)
    for fc in person.animation_data.action.fcurves if hasattr(person.animation_data.action, "fcurves") else []:
        for point in fc.keyframe_points:
            point.interpolation = "LINEAR"
    shot, _ = shot_for_scene(scene)
    car_path = directed(shot, 3)["path"]
    assert car_path, "a constrained Empty directs its object"
    frames = [k["frame"] for k in car_path]
    for f in (1, 7, 13, 24):
        scene.frame_set(f)
        y = np.interp(f, frames, [k["position"][1] for k in car_path])
        assert y == pytest.approx(car.matrix_world.translation.y, abs=1e-3)
    assert car_path[-1]["position"][1] == pytest.approx(6.0, abs=1e-3) and car.location.y != pytest.approx(6.0)
    scene.frame_set(1)
    person_path = directed(shot, 5)["path"]
    headings = {k["frame"]: k["heading"] for k in person_path}
    frames = sorted(headings)
    at = lambda f: np.interp(f, frames, [headings[g] for g in frames])
    assert at(5) == pytest.approx(0.0, abs=0.05)  # going +x, as it stands
    assert at(20) == pytest.approx(np.pi / 2, abs=0.05)  # turned left with its path, going +y


def test_deleting_an_empty_takes_its_points_at_once_and_says_so(addon, backend):
    bpy = addon
    scene, settings = shot_scene(bpy)
    fetch(bpy)
    person = bpy.data.objects["person 5"]
    points = points_child(person)
    name = points.name
    with bpy.context.temp_override(selected_objects=[person], active_object=person, object=person):
        assert bpy.ops.object.delete() == {"FINISHED"}
    # its points do not stay behind at the world's origin; the status line says what happens
    assert name not in bpy.data.objects
    assert "object 5 deleted: forgotten with the next shot" in settings.status
