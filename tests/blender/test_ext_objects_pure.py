"""Object memory in the extension's pure modules (no Blender): which Empty directs, forgets or
copies which object, path frames, frame conversions, the Timeline's re-entry marks, the shot's
object fields against the backend's schema, and the client's object calls."""

import json

import numpy as np
import pytest

from spatia_blender import client as client_mod
from spatia_blender import directing, payloads

from ext_fake_backend import FakeBackend


def empty(name, object_id, *, label="car", copy_of=0, path=(), position=(0.0, 0.0, 0.0), heading=0.0, **switches):
    return {"name": name, "id": object_id, "label": label, "copy_of": copy_of, "path": list(path),
            "pose": {"position": list(position), "heading": heading}, **switches}


KEYS = [directing.pose_key(4, [1, 2, 3], 0.5), directing.pose_key(9, [2, 2, 3], 0.75)]


# --- path frames -----------------------------------------------------------------------------------
def test_path_frames_keep_the_range_and_hold_its_ends():
    assert directing.path_frames([], 1, 24) == []
    assert directing.path_frames([5.0, 15.0, 15.2, 20.0], 1, 24) == [5, 15, 20]  # sub-frame keys round
    assert directing.path_frames([-10, 5, 40], 1, 24) == [1, 5, 24]  # keys beyond: the ends are sampled
    assert directing.path_frames([30, 40], 1, 24) == [24]  # all after: held at the last frame
    assert directing.path_frames([1, 24], 1, 24) == [1, 24]


# --- directing ---------------------------------------------------------------------------------------
def test_keys_switches_deletions_and_duplicates():
    empties = [
        empty("car 3.001", 3, position=(5, 0, 0), heading=0.2),  # Shift+D, listed before its original
        empty("car 3", 3, path=KEYS, condition=False),
        empty("car 3.002", 3, path=KEYS),
        empty("tree 8", 8, label="tree", reference=False),
        empty("ghost 20", 20, label="ghost"),  # an id the world does not know and no copy: left out
    ]
    result = directing.direct_objects(empties, known=[3, 5, 8], start=1, next_id=12)
    by_id = {o["id"]: o for o in result["objects"]}
    assert by_id[3] == {"id": 3, "path": KEYS, "condition": False, "reference": True}  # the name the fetch gave wins
    assert by_id[8] == {"id": 8, "path": [], "condition": True, "reference": False}
    assert result["forget_objects"] == [5]  # known, no Empty: deleted in Blender
    assert result["stale"] == ["ghost 20"] and 20 not in by_id
    # copies: new ids above everything seen (20), copy_of the original, a path to place them
    assert result["assign"] == {"car 3.001": (21, 3), "car 3.002": (22, 3)}
    assert by_id[21] == {"id": 21, "copy_of": 3, "condition": True, "reference": True,
                         "path": [{"frame": 1, "position": [5.0, 0.0, 0.0], "heading": 0.2}]}
    assert by_id[22]["path"] == KEYS and by_id[22]["copy_of"] == 3


def test_a_pending_copy_is_sent_again_and_keeps_its_source():
    # a shot gave "car 21" its id but did not run: sent as the same copy; its own duplicate copies
    # the original (3), which the backend knows, not the copy it does not know yet
    empties = [empty("car 3", 3), empty("car 21", 21, copy_of=3, path=KEYS), empty("car 21.001", 21, copy_of=3)]
    result = directing.direct_objects(empties, known=[3], start=4)
    by_id = {o["id"]: o for o in result["objects"]}
    assert by_id[21]["copy_of"] == 3 and by_id[21]["path"] == KEYS
    assert by_id[22]["copy_of"] == 3 and result["assign"] == {"car 21.001": (22, 3)}
    assert result["forget_objects"] == []


def test_an_object_copied_then_deleted_is_forgotten_after_the_copy():
    # the artist duplicated the car and deleted the original: the copy needs the original's points,
    # so the original is forgotten with the shot after (it stays a pending forget until then)
    result = directing.direct_objects([empty("car 9", 9, copy_of=3, path=KEYS), empty("person 5", 5)],
                                      known=[3, 5, 7], start=1)
    assert result["forget_objects"] == [7]
    assert directing.pending_forgets([3, 5, 7], [empty("car 9", 9, copy_of=3), empty("person 5", 5)]) == [3, 7]


def test_frames_poses_and_up_axis():
    directions = [{"id": 3, "path": KEYS, "condition": True, "reference": True}]
    video = directing.to_video_frames(directions, world_start=3)
    assert [k["frame"] for k in video[0]["path"]] == [1, 6] and [k["frame"] for k in KEYS] == [4, 9]  # not mutated
    response = [{"id": 3, "label": "car", "entries": [10, 2]}, {"id": 5, "label": "person", "entries": [4]}]
    assert directing.entry_frames(response, 101) == [(103, 3, "car"), (105, 5, "person"), (111, 3, "car")]
    assert directing.entry_frames(response, 101, leave_out=[5]) == [(103, 3, "car"), (111, 3, "car")]
    keys = [{"frame": 30, "position": [4, 1, 0], "heading": 0.7}, {"frame": 10, "position": [1, 1, 0], "heading": 0.1}]
    assert directing.latest_pose(keys) == ([4.0, 1.0, 0.0], 0.7)
    assert directing.latest_pose([]) == ([0.0, 0.0, 0.0], 0.0)
    assert directing.up_axis([0, 0, 1]) == (2, 1.0)
    assert directing.up_axis([0.1, -0.99, 0.05]) == (1, -1.0)  # an OpenCV world: -Y up
    assert directing.object_name("car", 3) == "car 3" and directing.object_name("", 4) == "object 4"


# --- the shot ----------------------------------------------------------------------------------------
def _exported(n=6, first=10):
    eyes = np.stack([np.linspace(0, 1, n), np.full(n, -3.0), np.full(n, 1.5)], axis=1)
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[:, :3, 3] = -eyes
    return {"frames": list(range(first, first + n)), "intrinsics": np.tile([60.0, 60.0, 32.0, 24.0], (n, 1)),
            "w2c": w2c, "width": 64, "height": 48, "fps": 24.0}


def test_directed_shot_validates_with_the_backend_schema():
    shot_module = pytest.importorskip("spatia.formats.shot")  # the backend, where it is installed
    empties = [empty("car 3", 3, path=[directing.pose_key(12, [1, 2, 0], 0.3)], reference=False),
               empty("car 3.001", 3, position=(4, 4, 0)), empty("person 5", 5)]
    result = directing.direct_objects(empties, known=[3, 5, 6], start=10)
    shot = payloads.build_shot(_exported(), ["a street"], world="w", objects=result["objects"],
                               forget_objects=result["forget_objects"], object_memory=False)
    json.dumps(shot, allow_nan=False)
    spec = shot_module.load_shot(shot)
    assert spec.forget_objects == [6] and spec.object_memory is False
    by_id = {o.id: o for o in spec.objects}
    assert by_id[3].reference is False and [(k.frame, k.heading) for k in by_id[3].path] == [(12, 0.3)]
    assert by_id[7].copy_of == 3 and by_id[7].path[0].frame == 10 and by_id[7].path[0].position == [4, 4, 0]
    assert by_id[5].path == [] and by_id[5].condition is True
    schema = shot_module.shot_json_schema()
    assert {"objects", "forget_objects", "object_memory"} <= set(schema["properties"])
    plain = payloads.build_shot(_exported(), ["a street"])  # nothing directed: the fields stay out
    assert not {"objects", "forget_objects", "object_memory"} & set(plain)


# --- the Timeline marks --------------------------------------------------------------------------------
def test_entry_marks_geometry_and_colour():
    verts, colours, indices = payloads.entry_marks([10, 12], [3, 4], frame_to_x=(20.0, -100.0), bottom=40, size=8)
    assert verts.shape == (6, 2) and colours.shape == (6, 4) and indices.tolist() == [[0, 1, 2], [3, 4, 5]]
    tris = verts.reshape(2, 3, 2)
    np.testing.assert_allclose(tris[:, 0], [[100.0, 40.0], [140.0, 40.0]])  # the tip on the frame, at the bottom
    np.testing.assert_allclose(tris[:, 1:, 1], 48.0)  # the base `size` above
    np.testing.assert_allclose(tris[:, 1:, 0].mean(axis=1), [100.0, 140.0])  # centred: points straight down
    np.testing.assert_allclose(tris[0, 1, 0] - tris[0, 2, 0], 8.0)
    np.testing.assert_allclose(colours[:3], np.repeat(payloads.object_colour(3)[None], 3, axis=0))
    assert not np.allclose(payloads.object_colour(3), payloads.object_colour(4))  # one colour per object
    empty_marks = payloads.entry_marks([], [], frame_to_x=(1, 0), bottom=0, size=1)
    assert empty_marks[0].shape == (0, 2) and empty_marks[2].shape == (0, 3)
    with pytest.raises(ValueError, match="1 object ids for 2 re-entry frames"):
        payloads.entry_marks([1, 2], [3], frame_to_x=(1, 0), bottom=0, size=1)


def test_labels_that_would_overlap_are_left_out():
    keep = payloads.label_fits([100, 10, 40, 45, 200], [30, 25, 20, 20, 5], gap=4)
    assert keep.tolist() == [True, True, True, False, True]  # 10..35, 40..60, (45 overlaps), 100..130, 200


# --- the client ----------------------------------------------------------------------------------------
@pytest.fixture
def fake():
    backend = FakeBackend({1: b""})
    backend.objects = {"version": 4, "memory_version": 1, "up": [0, 0, 1], "objects": [
        {"id": 3, "label": "car", "state": "parked", "condition": True, "reference": True, "points": 2,
         "extent": [1, 1, 1], "keys": [], "seen": [], "last_seen": 0}]}
    backend.object_points = {3: {"xyz": [[0, 0, 0], [1, 0, 0]], "rgb": [[255, 0, 0], [0, 255, 0]]}}
    backend.object_entries = {3: [7]}
    yield backend
    backend.close()


def test_client_object_calls(fake):
    client = client_mod.Client(fake.url)
    assert [o["id"] for o in client.objects("w")["objects"]] == [3]
    assert client.object_points("w", 3)["rgb"] == [[255, 0, 0], [0, 255, 0]]
    cameras = payloads.cameras_payload(_exported(3))
    paths = [{"id": 3, "path": [{"frame": 2, "position": [0, 0, 0], "heading": 0.0}], "condition": True, "reference": True}]
    (entries,) = client.object_entries("w", cameras, 5, paths)
    assert entries["entries"] == [7] and len(entries["visible"]) == 3
    (body,) = fake.posted("/v1/worlds/w/query/object-entries")
    assert body == {"cameras": cameras, "start_frame": 5, "objects": paths}
    with pytest.raises(client_mod.ObjectsConflict, match="now version 4") as info:
        client.forget_object("w", 3, base_version=3)
    assert info.value.current_version == 4 and [o["id"] for o in fake.objects["objects"]] == [3]
    assert client.forget_object("w", 3, base_version=4) == {"version": 5}
    ((_, path, headers),) = [h for h in fake.headers if h[0] == "DELETE" and h[2].get("If-Match") == '"4"']
    assert path == "/v1/worlds/w/objects/3" and fake.objects["objects"] == []
    fake.objects = None  # a backend from before object memory
    with pytest.raises(client_mod.ApiError) as missing:
        client.objects("w")
    assert missing.value.status == 404


# --- sampled paths -------------------------------------------------------------------------------------
def test_tangent_headings_turn_with_the_path_from_the_rest_heading():
    square = [[0, 0, 0], [1, 0, 0], [2, 0, 0], [2, 1, 0], [2, 2, 0], [2, 2, 0]]
    out = directing.tangent_headings(square, 0.3, (0, 0, 1))
    np.testing.assert_allclose(out, [0.3, 0.3, 0.3 + np.pi / 2, 0.3 + np.pi / 2, 0.3 + np.pi / 2, 0.3 + np.pi / 2])
    assert directing.tangent_headings([[1, 1, 1]] * 3, 0.7, (0, 0, 1)) == [0.7] * 3  # never moves: as it stands
    # round and round: unwrapped, no jump of 2 pi
    a = np.linspace(0, 4 * np.pi, 40)
    circle = np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], 1).tolist()
    out = directing.tangent_headings(circle, 0.0, (0, 0, 1))
    assert np.all(np.diff(out) >= 0) and out[-1] > 3.5 * np.pi


def test_sampled_paths_keep_what_lines_cannot_give_back():
    frames = list(range(1, 41))
    curve = [np.eye(4) for _ in frames]
    for m, f in zip(curve, frames):
        m[:3, 3] = [np.sin(f / 40), 0.0, 0.0]
    keys = directing.sampled_path(frames, curve, (0, 0, 1), rotation_from_path=False)
    kf = [k["frame"] for k in keys]
    assert 2 < len(keys) < 40
    np.testing.assert_allclose(np.interp(frames, kf, [k["position"][0] for k in keys]), np.sin(np.array(frames) / 40),
                               atol=2e-3)
    held = directing.sampled_path(frames, [np.eye(4)] * 40, (0, 0, 1), rotation_from_path=False)
    assert [k["frame"] for k in held] == [1]
    turned = np.eye(4)
    turned[:2, :2] = [[0, -1], [1, 0]]
    assert directing.heading_from_matrix(turned, (0, 0, 1)) == pytest.approx(np.pi / 2)
