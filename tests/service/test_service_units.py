"""Service parts without a server: job store states, file path rules, upload decoding, queries."""

import io
import os
import stat

import numpy as np
import pytest
from spatia.engine.memory import SpatialMemory
from spatia.service.auth import TokenCheck, load_or_create_token
from spatia.service.errors import ApiError, location
from spatia.service.files import resolve_job_file
from spatia.service.jobstore import JobStore
from spatia.service.queries import points_in_box, raycast
from spatia.service.uploads import (
    decode_depth,
    decode_image,
    decode_npy,
    point_cloud_suffix,
)


def always(world_id, switch):
    return switch()


def test_job_store_lifecycle(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    a, created = store.submit("w-a", {"n": 1}, "key-1")
    b, _ = store.submit("w-a", {"n": 2}, None)
    c, _ = store.submit("w-b", {"n": 3}, None)
    assert created and [j["status"] for j in (a, b, c)] == ["queued"] * 3
    assert store.submit("w-a", {"n": 1}, "key-1") == (store.get(a["id"]), False)
    with pytest.raises(ApiError) as err:
        store.submit("w-a", {"n": 9}, "key-1")
    assert err.value.status == 409
    # one job per world at a time: after a, the next claim skips b (same world) for c
    assert store.claim_next(always)["id"] == a["id"]
    assert store.claim_next(always)["id"] == c["id"]
    assert store.claim_next(always) is None
    assert store.queue_depth() == 1
    store.progress(a["id"], "round 1/2: x", 0.4, 3.0, message="round 1/2: x")
    assert store.get(a["id"])["messages"] == ["round 1/2: x"] and store.get(a["id"])["eta_s"] == 3.0
    store.close()

    # a crash: reopened, the running jobs are interrupted, the queued one still queued
    store = JobStore(tmp_path / "jobs.sqlite")
    assert sorted(store.recover()) == sorted([a["id"], c["id"]])
    assert store.get(a["id"])["status"] == "interrupted" and store.get(b["id"])["status"] == "queued"
    with pytest.raises(ApiError):
        store.resume(b["id"])  # queued: nothing to resume
    assert store.resume(a["id"])["status"] == "queued" and store.get(a["id"])["error"] is None
    job, running = store.request_cancel(b["id"])
    assert job["status"] == "cancelled" and not running
    claimed = store.claim_next(always)
    assert claimed["id"] == a["id"] and claimed["attempts"] == 2
    job, running = store.request_cancel(a["id"])
    assert running and job["status"] == "running" and store.cancel_requested(a["id"])
    done = store.finish(a["id"], "succeeded", result={"frames": [0, 1]})
    assert done["fraction"] == 1.0 and done["result"] == {"frames": [0, 1]} and done["finished"]
    with pytest.raises(ApiError) as err:
        store.get("../x")
    assert err.value.status == 404


def test_job_files_only_from_fixed_patterns(tmp_path):
    job_dir, world_dir = tmp_path / "jobs" / "j-1", tmp_path / "worlds" / "w-1"
    (world_dir / "frames").mkdir(parents=True)
    (world_dir / "rounds" / "0000").mkdir(parents=True)
    job_dir.mkdir(parents=True)
    for path in (job_dir / "video.mp4", world_dir / "frames" / "000001.png", world_dir / "rounds" / "0000" / "clip.mp4",
                 world_dir / "world.json", tmp_path / "token"):
        path.write_bytes(b"x")
    job = {"id": "j-1", "status": "succeeded", "result": {"frames": [0, 2], "rounds": [{"round": 0}]}}
    assert resolve_job_file("video.mp4", job, job_dir, world_dir) == (job_dir / "video.mp4").resolve()
    assert resolve_job_file("frames/000001.png", job, job_dir, world_dir).name == "000001.png"
    assert resolve_job_file("rounds/0000/clip.mp4", job, job_dir, world_dir).name == "clip.mp4"
    for bad, status in (("../../token", 400), ("/etc/passwd", 400), ("frames/../world.json", 400),
                        ("world.json", 404), ("frames/000002.png", 404), ("rounds/0001/clip.mp4", 404),
                        ("frames/1.png", 404), ("a\\..\\token", 400)):
        with pytest.raises(ApiError) as err:
            resolve_job_file(bad, job, job_dir, world_dir)
        assert err.value.status == status, bad
    # a link planted inside the world folder does not lead out of it
    os.symlink(tmp_path / "token", world_dir / "frames" / "000000.png")
    with pytest.raises(ApiError) as err:
        resolve_job_file("frames/000000.png", job, job_dir, world_dir)
    assert err.value.status == 400
    with pytest.raises(ApiError) as err:
        resolve_job_file("video.mp4", dict(job, status="running", result=None), job_dir, world_dir)
    assert err.value.status == 409


def test_uploads_are_decoded_defensively():
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(buffer, format="PNG")
    assert decode_image(buffer.getvalue(), "image", 6, 4).shape == (4, 6, 3)
    with pytest.raises(ApiError, match="6x4, the world is 8x4"):
        decode_image(buffer.getvalue(), "image", 8, 4)
    gif = io.BytesIO()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(gif, format="GIF")
    with pytest.raises(ApiError, match="only PNG and JPEG"):
        decode_image(gif.getvalue(), "image", 6, 4)
    with pytest.raises(ApiError, match="cannot read"):
        decode_image(buffer.getvalue()[:30], "image", 6, 4)

    def npy(array):
        data = io.BytesIO()
        np.save(data, array, allow_pickle=True)
        return data.getvalue()

    with pytest.raises(ApiError, match="pickle") as err:
        decode_npy(npy(np.array([None, {"x": 1}], dtype=object)), "depth")
    assert err.value.field == "depth"
    depth = decode_depth(npy(np.array([[1.0, np.inf], [np.nan, 2.0]])), "depth", 2, 2)
    assert depth.dtype == np.float32 and depth.tolist() == [[1.0, 0.0], [0.0, 2.0]]
    with pytest.raises(ApiError, match="negative"):
        decode_depth(npy(-np.ones((2, 2))), "depth", 2, 2)
    with pytest.raises(ApiError, match="float"):
        decode_depth(npy(np.ones((2, 2), dtype=np.int32)), "depth", 2, 2)
    ply = (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
           b"end_header\n0 0 1\n1 0 1\n")
    assert point_cloud_suffix(ply, "points") == ".ply"
    from spatia.engine.memory.checks import SnapshotRejected

    with pytest.raises(SnapshotRejected) as rejected:  # a header cut short is refused, naming the field
        point_cloud_suffix(b"ply\nformat", "points")
    assert rejected.value.field == "points"
    with pytest.raises(ApiError):
        point_cloud_suffix(b"GIF89a....", "points")


def test_token_file_and_check(tmp_path):
    token = load_or_create_token(tmp_path / "token")
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert load_or_create_token(tmp_path / "token") == token
    os.chmod(tmp_path / "token", 0o644)
    assert load_or_create_token(tmp_path / "token") == token
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600  # tightened
    required, optional = TokenCheck(token, True), TokenCheck(token, False)
    required.check(f"Bearer {token}")
    optional.check(None)
    for check, header in ((required, None), (required, "Bearer x"), (optional, "Bearer x"), (optional, "Basic x")):
        with pytest.raises(ApiError) as err:
            check.check(header)
        assert err.value.status == 401


def test_box_and_raycast_queries():
    xyz = np.array([[0, 0, 1], [0, 0, 2], [0.5, 0, 1], [5, 5, 5]], dtype=np.float32)
    memory = SpatialMemory.from_points(xyz, voxel_size=0.1)
    box = points_in_box(memory, [-1, -1, 0], [1, 1, 1.5], 1)
    assert box["count"] == 2 and len(box["point_id"]) == 1
    with pytest.raises(ApiError):
        points_in_box(memory, [1, 0, 0], [0, 1, 1], 5)
    hits = raycast(memory, [[0, 0, 0], [0, 0, 3], [0.5, 0.05, 0], [0, 0, 0]],
                   [[0, 0, 1], [0, 0, 1], [0, 0, 2], [1, 0, 0]])
    assert hits["hit"] == [True, False, True, False]
    assert hits["point_id"][:3] == [0, None, 2] and hits["distance"][0] == pytest.approx(1.0)
    behind = raycast(memory, [[0, 0, 1.5]], [[0, 0, 1]])  # the point at z=1 is behind this origin
    assert behind["point_id"] == [1] and behind["distance"] == [pytest.approx(0.5)]
    assert raycast(memory, [[0.3, 0, 0]], [[0, 0, 1]])["hit"] == [False]
    assert raycast(memory, [[0.3, 0, 0]], [[0, 0, 1]], radius=0.25)["point_id"] == [2]


def test_error_locations():
    assert location(("body", "shot", "frames", 0, "w2c")) == "shot.frames[0].w2c"
    assert location(("query", "from")) == "from"
    assert location(()) is None
