"""The HTTP API end to end through a real service process: system, worlds, generation, queries."""

import json

import numpy as np
import pytest
import requests
from service_fixtures import (
    HEIGHT,
    WIDTH,
    first_view,
    npy_bytes,
    png_bytes,
    shot,
    shot_cameras,
)
from spatia.service.client import SpatiaClientError
from spatia.engine.memory import SpatialMemory, parse_snapshot, snapshot_bytes
from spatia.engine.memory.ply import ply_bytes
from spatia.formats.video import read_image, read_video


def test_health_models_and_openapi(server, client):
    health = client.health()
    assert health["api_version"] == 1 and health["device"] in ("cpu", "cuda")
    assert isinstance(health["queue_depth"], int) and isinstance(health["loaded_models"], list)
    models = {m["name"]: m for m in client.models()}
    assert models["preview"]["present"] and models["preview"]["role"] == "generator"
    assert models["spatia-5b"]["weights"] == ["Wan-AI/Wan2.2-TI2V-5B-Diffusers", "Jinjing713/Spatia"]
    assert models["slow-preview"]["role"] == "generator"
    schema = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    for path in ("/v1/health", "/v1/worlds", "/v1/worlds/{world_id}/memory/edits", "/v1/jobs/{job_id}/events",
                 "/v1/jobs/{job_id}/files/{path}", "/v1/worlds/{world_id}/query/raycast"):
        assert path in schema["paths"]


def test_create_world_from_rgbd(client, world):
    assert world["width"] == WIDTH and world["height"] == HEIGHT and world["frames"] == 0
    assert world["memory_version"] == 1 and world["id"].startswith("w-")
    assert client.get_world(world["id"]) == world
    assert world["id"] in [w["id"] for w in client.list_worlds()]
    history = client.memory_history(world["id"])
    assert [h["version"] for h in history] == [1] and history[0]["points"] > 1000
    # the wall is 2 m ahead: the memory's points lie there
    memory, _ = parse_snapshot(client.get_memory(world["id"], 1))
    assert len(memory) == history[0]["points"]
    assert np.allclose(memory.xyz[:, 2].min().item(), 2.0, atol=0.05)


def test_create_world_from_points_ply_and_snapshot(client):
    xyz = np.random.default_rng(1).uniform(-1, 1, (500, 3)).astype(np.float32) + [0, 0, 3]
    memory = SpatialMemory.from_points(xyz, voxel_size=0.05)
    from_ply = client.create_world("cloud", "points", WIDTH, HEIGHT, points=ply_bytes(memory), voxel_size=0.05)
    from_snapshot = client.create_world("cloud2", "points", WIDTH, HEIGHT, points=snapshot_bytes(memory))
    for world in (from_ply, from_snapshot):
        assert world["memory_version"] == 1
        loaded, _ = parse_snapshot(client.get_memory(world["id"], "latest"))
        np.testing.assert_allclose(loaded.xyz.numpy(), xyz, atol=1e-6)


@pytest.mark.parametrize("fields,files,field", [
    ({"kind": "rgbd"}, {"image": "png"}, "depth"),
    ({"kind": "points"}, {"points": "junk"}, "points"),
    ({"kind": "rgbd", "camera": "{\"intrinsics\": [1, 2]}"}, {"image": "png", "depth": "npy"}, "camera"),
    ({"kind": "rgbd", "camera": "CAM"}, {"image": "small", "depth": "npy"}, "image"),
    ({"kind": "rgbd", "camera": "CAM"}, {"image": "png", "depth": "pickle"}, "depth"),
    ({"kind": "rgbd", "camera": "CAM", "width": "8"}, {"image": "png", "depth": "npy"}, "width"),
    ({"kind": "volume"}, {}, "kind"),
    ({"kind": "points", "fps": "nan"}, {"points": "ply"}, "fps"),
])
def test_create_world_rejects_bad_input_naming_the_field(server, client, fields, files, field):
    rgb, depth, camera = first_view()
    payloads = {
        "png": png_bytes(rgb), "small": png_bytes(rgb[:10]), "npy": npy_bytes(depth),
        "pickle": npy_bytes(np.array([{"a": 1}], dtype=object)) if False else b"\x93NUMPY" + b"\x01\x00" + b"junk",
        "junk": b"not a point cloud", "ply": ply_bytes(SpatialMemory.from_points(np.ones((3, 3)), voxel_size=0.1)),
    }
    data = {"name": "bad", "width": str(WIDTH), "height": str(HEIGHT), **fields}
    if data.get("camera") == "CAM":
        data["camera"] = json.dumps(camera)
    before = sorted(p.name for p in (server.data_dir / "worlds").iterdir())
    response = requests.post(f"{server.url}/v1/worlds", data=data,
                             files={k: (k, payloads[v]) for k, v in files.items()}, timeout=30)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["message"]
    assert sorted(p.name for p in (server.data_dir / "worlds").iterdir()) == before  # nothing half-created


def test_missing_depth_weights_give_503_naming_the_fix(server):
    rgb, _, _ = first_view()
    response = requests.post(f"{server.url}/v1/worlds", timeout=30,
                             data={"name": "photo", "kind": "image", "width": str(WIDTH), "height": str(HEIGHT)},
                             files={"image": ("photo.png", png_bytes(rgb))})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "model_unavailable" and "spatia models download depth-pro" in error["message"]
    models = {m["name"]: m for m in requests.get(f"{server.url}/v1/models", timeout=10).json()}
    assert models["depth-pro"]["present"] is False


def test_pickled_npy_is_refused(server):
    rgb, _, camera = first_view()
    pickled = npy_bytes(np.array([{"a": 1}] * 4, dtype=object))
    response = requests.post(f"{server.url}/v1/worlds", timeout=30, data={
        "name": "p", "kind": "rgbd", "width": str(WIDTH), "height": str(HEIGHT), "camera": json.dumps(camera)},
        files={"image": ("i.png", png_bytes(rgb)), "depth": ("d.npy", pickled)})
    assert response.status_code == 422 and response.json()["error"]["field"] == "depth"
    assert "pickle" in response.json()["error"]["message"].lower()


def test_generate_a_shot_and_fetch_its_files(client, world, tmp_path):
    spec = shot()
    job = client.submit_job(world["id"], spec)
    assert job["status"] == "queued" and job["world_id"] == world["id"]
    seen = []
    done = client.wait(job["id"], progress=lambda fraction, stage: seen.append((fraction, stage)))
    assert done["status"] == "succeeded", done["error"]
    assert seen[-1] == (1.0, "succeeded")
    assert any(m.startswith("round 3/3") for m in done["messages"]) and done["messages"][-1] == "succeeded"
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)  # progress never goes back
    result = done["result"]
    assert result["frames"] == [0, 24]
    assert [(r["start"], r["end"]) for r in result["rounds"]] == [(0, 12), (10, 20), (18, 24)]
    assert result["memory_version"] > world["memory_version"]
    after = client.get_world(world["id"])
    assert after["frames"] == 24 and after["memory_version"] == result["memory_version"]
    assert len(result["files"]["frames"]) == 24

    video = read_video(client.download(job["id"], "video.mp4", tmp_path / "video.mp4"))
    assert video.shape == (24, HEIGHT, WIDTH, 3)
    frame = read_image(client.download(job["id"], result["files"]["frames"][5], tmp_path / "f5.png"))
    assert frame.shape == (HEIGHT, WIDTH, 3)
    cams = json.loads(client.download(job["id"], "cameras.json", tmp_path / "cameras.json").read_text())
    assert np.allclose(cams["w2c"], shot_cameras(spec).w2c)
    clip = read_video(client.download(job["id"], "rounds/0001/clip.mp4", tmp_path / "clip.mp4"))
    assert len(clip) == 10
    # the first frame is the uploaded view, exactly (PNG is lossless)
    first = read_image(client.download(job["id"], "frames/000000.png", tmp_path / "f0.png"))
    np.testing.assert_array_equal(first, first_view()[0])
    # continuing the same world: a longer shot whose first 24 cameras match
    longer = client.wait(client.submit_job(world["id"], shot(30))["id"])
    assert longer["status"] == "succeeded" and longer["result"]["frames"] == [24, 30]
    loaded = client.health()["loaded_models"]
    assert "preview" in loaded and "depth-pro" not in loaded  # built, but its weights were never needed


def test_submit_rejects_shots_that_do_not_fit_the_world(client, world):
    wrong_size = shot()
    wrong_size["width"] = 80
    with pytest.raises(SpatiaClientError) as err:
        client.submit_job(world["id"], wrong_size)
    assert err.value.status == 422 and err.value.field == "shot.width"
    bad_matrix = shot()
    bad_matrix["frames"][3]["w2c"][0][0] = 7.0
    with pytest.raises(SpatiaClientError) as err:
        client.submit_job(world["id"], bad_matrix)
    assert err.value.status == 422 and err.value.field == "shot.frames[3].w2c"
    with pytest.raises(SpatiaClientError) as err:
        client.submit_job(world["id"], shot(generator="no-such-model"))
    assert err.value.status == 422 and err.value.field == "shot.generator"
    unknown_quality = shot()
    unknown_quality["quality"] = "best"
    with pytest.raises(SpatiaClientError) as err:
        client.submit_job(world["id"], unknown_quality)
    assert err.value.status == 422 and err.value.field == "shot.quality" and "'best'" in str(err.value)
    with pytest.raises(SpatiaClientError) as err:
        client.submit_job("w-000000000000", shot())
    assert err.value.status == 404
    assert client.list_jobs(world["id"]) == []


def test_job_file_paths_cannot_leave_the_job(server, client, world):
    job = client.wait(client.submit_job(world["id"], shot(12, first_round=12))["id"])
    assert job["status"] == "succeeded"
    base = f"{server.url}/v1/jobs/{job['id']}/files/"
    for attempt in ("../../token", "..%2F..%2Ftoken", "%2e%2e/%2e%2e/token", "/etc/passwd", "%2Fetc%2Fpasswd",
                    "frames/../../../token", "world.json", "frames/000099.png", "rounds/0005/clip.mp4",
                    "frames\\..\\token", "video.mp4%00.png"):
        response = requests.get(base + attempt, timeout=10)
        assert response.status_code in (400, 404), (attempt, response.status_code)
        assert "error" in response.json()
        assert server.token not in response.text
    assert requests.get(base + "frames/000011.png", timeout=10).status_code == 200


def test_queries(client, world):
    _, _, camera = first_view()
    cams = {"width": WIDTH, "height": HEIGHT, "intrinsics": [camera["intrinsics"]] * 2,
            "w2c": [camera["w2c"], np.diag([-1.0, 1, -1, 1]).tolist()]}  # the second looks away from the wall
    coverage = client.coverage(world["id"], cams)
    assert coverage[0] > 0.95 and coverage[1] == 0.0
    rendered = client.render(world["id"], cams)
    assert rendered["frames"] == 2 and rendered["coverage"] == pytest.approx(coverage, abs=1e-6)
    png = client.render_frame(world["id"], rendered["token"], 0)
    arrays = client.render_arrays(world["id"], cams)
    assert arrays["rgb"].shape == (2, HEIGHT, WIDTH, 3) and arrays["mask"][1].sum() == 0
    import io

    from PIL import Image
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), arrays["rgb"][0])
    assert np.abs(arrays["rgb"][0].astype(int) - first_view()[0]).mean() < 10
    box = client.points_in_box(world["id"], [-10, -10, 0], [10, 10, 2.1], limit=5)
    assert box["count"] > 5 and len(box["point_id"]) == 5 and all(p[2] <= 2.1 for p in box["xyz"])
    hits = client.raycast(world["id"], [[0, 0, 0], [0, 0, 0]], [[0, 0, 1], [0, 0, -1]], radius=0.05)
    assert hits["hit"] == [True, False] and hits["distance"][0] == pytest.approx(2.32, abs=0.05)
    assert hits["point_id"][1] is None
    with pytest.raises(SpatiaClientError) as err:
        client.raycast(world["id"], [[0, 0, 0]], [[0, 0, 0]])
    assert err.value.status == 422 and err.value.field == "directions[0]"
    huge = dict(cams, intrinsics=[[3.07e38, 50.0, 32.0, 24.0]] * 2)  # finite, but NaN once projected in float32
    with pytest.raises(SpatiaClientError) as err:
        client.coverage(world["id"], huge)
    assert err.value.status == 422 and "intrinsics" in str(err.value)


def test_delete_world(client):
    rgb, depth, camera = first_view()
    world = client.create_world("gone", "rgbd", WIDTH, HEIGHT, image=rgb, depth=depth, camera=camera)
    client.delete_world(world["id"])
    with pytest.raises(SpatiaClientError) as err:
        client.get_world(world["id"])
    assert err.value.status == 404 and err.value.type == "not_found"
