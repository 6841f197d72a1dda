"""A world's object memory over HTTP: the table, points, crop, file, forgetting with the write
rules of memory edits, refusal of a corrupt file, and where objects come into view."""

import io
import json
import time

import numpy as np
import pytest
from object_fixtures import FPS, PARKED_AT, flip_data_byte, make_objects, track
from service_fixtures import HEIGHT, INTRINSICS, WIDTH, shot
from spatia.service.client import SpatiaClientError
from spatia.engine.objects import ObjectStoreError
from spatia.engine.objects.store import parse_snapshot
from spatia.engine.world import World


def world_folder(server, wid):
    return server.data_dir / "worlds" / wid


@pytest.fixture
def objects_world(server, world):
    """The service's wall world with two objects saved as objects version 1."""
    local = World.open(world_folder(server, world["id"]))
    assert local.fps == FPS and local.objects_version is None
    objects = make_objects(local.objects().up)
    assert local.save_objects(objects, parent=None, message="made by hand") == 1
    return world["id"], objects


def status_of(call):
    with pytest.raises(SpatiaClientError) as err:
        call()
    return err.value


def test_a_world_without_objects_lists_none(client, world):
    wid = world["id"]
    listing = client._json("GET", f"worlds/{wid}/objects")
    # the identity first camera is OpenCV's: up is -y
    assert listing == {"version": None, "memory_version": None, "up": [0.0, -1.0, 0.0], "objects": []}
    assert status_of(lambda: client.request("GET", f"worlds/{wid}/objects/file")).status == 404
    assert status_of(lambda: client.request("GET", f"worlds/{wid}/objects/1/points")).status == 404
    assert status_of(lambda: client.request("GET", f"worlds/{wid}/objects", params={"version": 1})).status == 404
    assert client._json("POST", f"worlds/{wid}/query/object-entries", json={
        "cameras": cameras([np.eye(4)]), "start_frame": 0}) == {"version": None, "objects": []}


def test_list_points_crop_and_file(client, objects_world):
    wid, objects = objects_world
    listing = client._json("GET", f"worlds/{wid}/objects")
    assert listing["version"] == 1 and listing["memory_version"] == 1 and listing["up"] == [0.0, -1.0, 0.0]
    car, person = listing["objects"]
    assert (car["id"], car["label"], car["state"], car["points"]) == (1, "car", "parked", 300)
    assert (person["id"], person["label"], person["state"], person["points"]) == (2, "person", "moving", 200)
    assert car["condition"] is True and car["reference"] is True
    assert [k["frame"] for k in car["keys"]] == [0, 5, 9]
    assert car["keys"][0] == {"frame": 0, "position": list(PARKED_AT), "heading": 0.0}
    assert len(person["keys"]) == 10 and person["keys"][-1]["position"][0] == pytest.approx(-0.3 + 0.5 * 9 / FPS)
    assert car["seen"] == [[0, 10]] and car["last_seen"] == 9
    np.testing.assert_allclose(car["extent"], objects.get(1).extent, atol=1e-6)
    assert [c["frame"] for c in car["crops"]] == [7, 2] and person["crops"] == []
    assert client._json("GET", f"worlds/{wid}/objects", params={"version": 1}) == listing

    points = client._json("GET", f"worlds/{wid}/objects/1/points")
    assert points["id"] == 1 and points["version"] == 1
    np.testing.assert_array_equal(np.asarray(points["xyz"], np.float32), objects.get(1).xyz)
    np.testing.assert_array_equal(np.asarray(points["rgb"], np.uint8), objects.get(1).rgb)
    assert status_of(lambda: client.request("GET", f"worlds/{wid}/objects/9/points")).status == 404
    assert status_of(lambda: client.request("GET", f"worlds/{wid}/objects/1/points",
                                            params={"version": 5})).status == 404

    from PIL import Image

    response = client.request("GET", f"worlds/{wid}/objects/1/crop.png")
    assert response.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(response.content)))
    best = objects.get(1).best_crop()
    assert image.shape == (96, 96, 4) and best.frame == 7
    np.testing.assert_array_equal(image[..., :3], best.rgb)
    np.testing.assert_array_equal(image[..., 3], np.where(best.mask, 255, 0))
    missing = status_of(lambda: client.request("GET", f"worlds/{wid}/objects/2/crop.png"))
    assert missing.status == 404 and "no crop" in missing.message

    response = client.request("GET", f"worlds/{wid}/objects/file")
    assert response.headers["content-type"] == "application/vnd.spatia.objects+safetensors"
    parsed, meta = parse_snapshot(response.content)
    assert parsed.ids() == [1, 2] and meta["version"] == "1" and meta["message"] == "made by hand"
    again, _ = parse_snapshot(client.request("GET", f"worlds/{wid}/objects/file", params={"version": 1}).content)
    for a, b in zip(parsed.objects, again.objects):
        np.testing.assert_array_equal(a.xyz, b.xyz)
        np.testing.assert_array_equal(a.crops[0].rgb if a.crops else 0, b.crops[0].rgb if b.crops else 0)


def test_forget_needs_the_current_objects_version(server, client, objects_world):
    wid, _ = objects_world
    required = status_of(lambda: client.request("DELETE", f"worlds/{wid}/objects/1"))
    assert (required.status, required.type, required.current_version) == (428, "precondition_required", 1)
    bad = status_of(lambda: client.request("DELETE", f"worlds/{wid}/objects/1", headers={"If-Match": "one"}))
    assert (bad.status, bad.field) == (422, "If-Match")
    unknown = status_of(lambda: client.request("DELETE", f"worlds/{wid}/objects/7", headers={"If-Match": '"1"'}))
    assert unknown.status == 404 and "[1, 2]" in unknown.message

    response = client.request("DELETE", f"worlds/{wid}/objects/1", headers={"If-Match": '"1"'})
    assert response.status_code == 201 and response.json() == {"version": 2}
    listing = client._json("GET", f"worlds/{wid}/objects")
    assert listing["version"] == 2 and [o["id"] for o in listing["objects"]] == [2]
    assert [o["id"] for o in client._json("GET", f"worlds/{wid}/objects", params={"version": 1})["objects"]] == [1, 2]
    local = World.open(world_folder(server, wid))
    assert local.objects_version == 2 and local.objects().ids() == [2]
    _, meta = local.object_store.load_with_meta(2)
    assert meta["parent"] == "1" and meta["message"] == "forgot object 1"

    stale = status_of(lambda: client.request("DELETE", f"worlds/{wid}/objects/2", headers={"If-Match": '"1"'}))
    assert (stale.status, stale.type, stale.current_version) == (409, "conflict", 2)
    assert "current objects version (2)" in stale.message
    gone = status_of(lambda: client.request("DELETE", f"worlds/{wid}/objects/1", params={"parent": 2}))
    assert gone.status == 404
    response = client.request("DELETE", f"worlds/{wid}/objects/2", params={"parent": 2})
    assert response.status_code == 201 and response.json() == {"version": 3}
    listing = client._json("GET", f"worlds/{wid}/objects")
    assert listing["version"] == 3 and listing["objects"] == []
    assert World.open(world_folder(server, wid)).object_store.versions() == [1, 2, 3]


def test_forget_on_a_world_without_objects_is_404(client, world):
    wid = world["id"]
    missing = status_of(lambda: client.request("DELETE", f"worlds/{wid}/objects/1", params={"parent": 1}))
    assert missing.status == 404 and "no objects" in missing.message


def test_a_corrupt_objects_file_is_refused(server, client, objects_world):
    wid, _ = objects_world
    folder = world_folder(server, wid)
    flip_data_byte(folder / "objects" / "v000001.safetensors")
    with pytest.raises(ObjectStoreError, match="v000001.safetensors"):
        World.open(folder).objects()
    for method, path, kwargs in [
        ("GET", f"worlds/{wid}/objects", {}),
        ("GET", f"worlds/{wid}/objects/1/points", {}),
        ("GET", f"worlds/{wid}/objects/1/crop.png", {}),
        ("GET", f"worlds/{wid}/objects/file", {}),
        ("DELETE", f"worlds/{wid}/objects/1", {"headers": {"If-Match": "1"}}),
        ("POST", f"worlds/{wid}/query/object-entries", {"json": {"cameras": cameras([np.eye(4)]), "start_frame": 0}}),
    ]:
        err = status_of(lambda: client.request(method, path, **kwargs))
        assert (err.status, err.type) == (409, "conflict"), (method, path, err)
        assert "objects/v000001.safetensors" in err.message and "sha256" in err.message, err.message
    assert World.open(folder).object_store.versions() == [1]  # nothing was written


def test_forget_is_refused_while_a_job_runs(client, objects_world):
    wid, _ = objects_world
    job = client.submit_job(wid, shot(generator="slow-preview"))
    try:
        for _ in range(200):
            if client.get_job(job["id"])["status"] == "running":
                break
            time.sleep(0.05)
        err = status_of(lambda: client.request("DELETE", f"worlds/{wid}/objects/1", headers={"If-Match": "1"}))
        assert err.status == 409 and "running" in err.message
    finally:
        client.cancel_job(job["id"])
    assert client.wait(job["id"], timeout=60)["status"] == "cancelled"


# --- where objects come into view -----------------------------------------------------------
AHEAD = np.eye(4)
BEHIND = np.diag([-1.0, 1.0, -1.0, 1.0])  # turned round about the vertical: looking along -z


def cameras(w2cs) -> dict:
    return {"width": WIDTH, "height": HEIGHT, "intrinsics": [INTRINSICS] * len(w2cs),
            "w2c": [np.asarray(m).tolist() for m in w2cs]}


LOOK_AWAY_AND_BACK = [AHEAD] * 5 + [BEHIND] * 5 + [AHEAD] * 5


def test_entries_where_the_camera_looks_back(client, objects_world):
    wid, _ = objects_world
    # the video saw both objects up to frame 9: at frame 10 they are already in view, not entering it
    body = {"cameras": cameras(LOOK_AWAY_AND_BACK), "start_frame": 10}
    result = client._json("POST", f"worlds/{wid}/query/object-entries", json=body)
    assert result["version"] == 1
    car, person = result["objects"]
    expected = [True] * 5 + [False] * 5 + [True] * 5
    assert (car["id"], car["label"], car["source"]) == (1, "car", "parked")
    assert car["visible"] == expected and car["entries"] == [20]
    assert (person["id"], person["source"]) == (2, "motion")
    assert person["visible"] == expected and person["entries"] == [20]

    # from frame 30 on (last seen at 9) the first camera that sees an object is an entry too
    later = client._json("POST", f"worlds/{wid}/query/object-entries", json={**body, "start_frame": 30})
    assert later["objects"][0]["entries"] == [30, 40]

    # an artist's path puts the car behind the first camera: it is seen only while the camera looks away
    body["objects"] = [{"id": 1, "path": [{"frame": 0, "position": [0.0, 0.0, -1.5]},
                                          {"frame": 100, "position": [0.0, 0.0, -1.5], "heading": 0.5}]}]
    directed = client._json("POST", f"worlds/{wid}/query/object-entries", json=body)
    car = directed["objects"][0]
    assert car["source"] == "path" and car["visible"] == [False] * 5 + [True] * 5 + [False] * 5
    assert car["entries"] == [15]
    assert directed["objects"][1]["entries"] == [20]  # the person keeps its motion model


def test_entries_stop_objects_at_the_memory_surfaces(server, client, objects_world):
    """A ball thrown at the wall (z >= 2) at 2 m/s stops at it: a camera beyond the wall never sees
    its predicted place, though the ball would have flown past it without the memory's points."""
    wid, objects = objects_world
    frames = np.arange(10)
    flight = np.stack([np.zeros(10), np.zeros(10), 0.2 + 2.0 * frames / FPS], axis=1)  # z = 0.95 at frame 9
    ball = track(3, "ball", flight, frames, n=200)
    local = World.open(world_folder(server, wid))
    assert local.save_objects(objects.replaced([ball]), parent=1, message="a ball") == 2
    beyond = np.eye(4)
    beyond[2, 3] = -3.2  # at z = 3.2 looking along +z: it sees only what is past the wall
    result = client._json("POST", f"worlds/{wid}/query/object-entries", json={
        "cameras": cameras([beyond] * 60), "start_frame": 10})
    ball = result["objects"][2]
    assert result["version"] == 2 and (ball["id"], ball["source"]) == (3, "motion")
    assert not any(ball["visible"]) and ball["entries"] == []
    # the same flight along an artist's path (no motion model, no stopping) passes the camera
    path = [{"frame": 9, "position": [0, 0, 0.95]}, {"frame": 69, "position": [0, 0, 4.95]}]
    result = client._json("POST", f"worlds/{wid}/query/object-entries", json={
        "cameras": cameras([beyond] * 60), "start_frame": 10, "objects": [{"id": 3, "path": path}]})
    ball = result["objects"][2]
    assert ball["source"] == "path" and ball["visible"][-1] and ball["entries"] == [10 + ball["visible"].index(True)]


def test_entries_query_validation(client, objects_world):
    wid, _ = objects_world
    base = {"cameras": cameras([AHEAD]), "start_frame": 0}
    cases = [
        ({**base, "objects": [{"id": 9}]}, 422, "objects[0].id"),
        ({**base, "objects": [{"id": 1}, {"id": 1}]}, 422, "objects"),
        ({**base, "objects": [{"id": 1, "path": [{"frame": 5, "position": [0, 0, 1]},
                                                 {"frame": 5, "position": [0, 0, 2]}]}]}, 422, "objects[0].path"),
        ({**base, "start_frame": -1}, 422, "start_frame"),
        ({**base, "version": 4}, 404, None),
        ({"cameras": {**cameras([AHEAD]), "w2c": []}, "start_frame": 0}, 422, "cameras.w2c"),
    ]
    for body, status, field in cases:
        err = status_of(lambda: client.request("POST", f"worlds/{wid}/query/object-entries", json=body))
        assert err.status == status and (field is None or err.field == field), (body, err)


def test_the_extensions_client_and_directions_work_against_the_real_routes(server, objects_world):
    """What the Blender extension sends and reads (its own client and pure directing code, no
    Blender) is what the service answers: the table, the points, entries for a shot whose Empty
    was keyed and whose other Empty was deleted, and a forget with the base version."""
    from spatia.formats.shot import load_shot
    from spatia_blender import directing
    from spatia_blender.client import Client

    wid, objects = objects_world
    ext = Client(server.url)
    table = ext.objects(wid)
    assert [o["id"] for o in table["objects"]] == [1, 2]
    position, heading = directing.latest_pose(table["objects"][0]["keys"])
    np.testing.assert_allclose(position, objects.get(1).key_position[-1])
    points = ext.object_points(wid, 1)
    np.testing.assert_allclose(points["xyz"], objects.get(1).xyz, atol=1e-6)
    # Blender frames 101.. are video frames 0..: the car's Empty keyed behind the camera, the person's deleted
    empties = [{"name": "car 1", "id": 1, "label": "car", "condition": True, "reference": False,
                "path": [directing.pose_key(111, [0.0, 0.0, -1.5], 0.0)]}]
    directed = directing.direct_objects(empties, [1, 2], start=101, next_id=3)
    assert directed["forget_objects"] == [2]
    paths = directing.to_video_frames(directed["objects"], 101)
    entries = ext.object_entries(wid, cameras(LOOK_AWAY_AND_BACK), 10, paths)
    car = next(o for o in entries if o["id"] == 1)
    assert car["source"] == "path" and car["entries"] == [15]
    marks = directing.entry_frames(entries, 101, leave_out=directed["forget_objects"])
    assert marks == [(116, 1, "car")]
    # the same directions validate as a shot's objects
    spec = {**shot(), "objects": directed["objects"], "forget_objects": directed["forget_objects"]}
    assert load_shot(spec).objects[0].reference is False
    assert ext.forget_object(wid, 2, table["version"])["version"] == 2
    assert [o["id"] for o in ext.objects(wid)["objects"]] == [1]


def test_a_job_follows_the_shots_object_directions(server, client, objects_world):
    """A shot that keys the car behind the camera's path and forgets the person: the job's round
    draws the car where its path says (and offers no crop of it), and the person is gone."""
    wid, objects = objects_world
    spec = {**shot(12, first_round=12), "objects": [{"id": 1, "reference": False,
                                                     "path": [{"frame": 1, "position": [0.0, 0.0, 1.5]}]}],
            "forget_objects": [2]}
    job = client.wait(client.submit_job(wid, spec)["id"])
    assert job["status"] == "succeeded", job
    assert [o["id"] for o in client._json("GET", f"worlds/{wid}/objects")["objects"]] == [1]
    folder = world_folder(server, wid)
    record = json.loads((folder / "rounds" / "0000" / "round.json").read_text())
    (car,) = record["objects"]
    assert (car["id"], car["source"], car["reference"]) == (1, "path", False)
    np.testing.assert_allclose(car["predicted"]["position"], [[0.0, 0.0, 1.5]] * 12)
    drawn = np.load(folder / "rounds" / "0000" / "object_layer.npz")["ids"]
    assert (drawn == 1).any() and not (drawn == 2).any()
    # an unknown object is refused when the shot is submitted, naming it; nothing is queued or written
    before = client._json("GET", f"worlds/{wid}/objects")["version"]
    with pytest.raises(SpatiaClientError) as err:
        client.submit_job(wid, {**shot(24, first_round=12), "forget_objects": [9]})
    assert err.value.status == 422 and err.value.field == "shot.objects" and "cannot forget objects [9]" in str(err.value)
    with pytest.raises(SpatiaClientError, match="copies object 5, which the world does not remember"):
        client.submit_job(wid, {**shot(24, first_round=12),
                                "objects": [{"id": 8, "copy_of": 5, "path": [{"frame": 1, "position": [0, 0, 1]}]}]})
    assert client._json("GET", f"worlds/{wid}/objects")["version"] == before
    assert len(client.list_jobs(wid)) == 1
