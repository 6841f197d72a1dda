"""A crash (SIGKILL) mid-job: on restart the job is `interrupted`, every memory version still
loads with verified hashes, /resume finishes the rest, and queued jobs run by themselves."""

import time

import numpy as np
import pytest
from service_fixtures import HEIGHT, WIDTH, first_view, shot, start_server
from spatia.service.client import SpatiaClient
from spatia.engine.memory import MemoryStore
from spatia.formats.video import read_image, read_video

pytestmark = pytest.mark.slow


def test_kill_restart_resume(tmp_path):
    data = tmp_path / "data"
    server = start_server(data, step_s=0.15)
    try:
        client = SpatiaClient(server.url, timeout=30)
        rgb, depth, camera = first_view()
        world = client.create_world("wall", "rgbd", WIDTH, HEIGHT, image=rgb, depth=depth, camera=camera)
        other = client.create_world("other", "rgbd", WIDTH, HEIGHT, image=rgb, depth=depth, camera=camera)
        job = client.submit_job(world["id"], shot(generator="slow-preview"))
        waiting = client.submit_job(other["id"], shot(12, first_round=12))  # one worker: stays queued
        deadline = time.monotonic() + 60
        while client.get_world(world["id"])["frames"] == 0:  # kill after the first round, mid second
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        assert client.get_job(job["id"])["status"] == "running"
        assert client.get_job(waiting["id"])["status"] == "queued"
    finally:
        server.kill()

    world_dir = data / "worlds" / world["id"]
    store = MemoryStore(world_dir / "memory")
    for version in store.versions():  # every version on disk is whole: hashes verified on load
        store.load(version)

    server = start_server(data, step_s=0.01)
    try:
        client = SpatiaClient(server.url, timeout=30)
        interrupted = client.get_job(job["id"])
        assert interrupted["status"] == "interrupted" and interrupted["error"]["type"] == "interrupted"
        state = client.get_world(world["id"])
        assert state["frames"] == 12 and len(state["rounds"]) == 1  # exactly the finished round
        assert not list((world_dir / "rounds").glob("*.partial"))
        for entry in client.memory_history(world["id"]):
            client.get_memory(world["id"], entry["version"])  # the server verifies before serving
        # the queued job needed no help
        assert client.wait(waiting["id"], timeout=60)["status"] == "succeeded"

        assert client.resume_job(job["id"])["status"] == "queued"
        done = client.wait(job["id"], timeout=120)
        assert done["status"] == "succeeded", done["error"]
        result = done["result"]
        assert result["frames"] == [0, 24]
        assert [(r["start"], r["end"]) for r in result["rounds"]] == [(0, 12), (10, 20), (18, 24)]
        assert client.get_world(world["id"])["frames"] == 24
        video = read_video(client.download(job["id"], "video.mp4", tmp_path / "video.mp4"))
        assert video.shape == (24, HEIGHT, WIDTH, 3)
        first = read_image(client.download(job["id"], "frames/000000.png", tmp_path / "first.png"))
        np.testing.assert_array_equal(first, rgb)  # the resumed video still starts at the first view
    finally:
        server.stop()


@pytest.mark.slow
def test_second_server_on_the_same_data_dir_is_refused(tmp_path):
    server = start_server(tmp_path / "data")
    try:
        with pytest.raises(RuntimeError, match="another spatia service"):
            start_server(tmp_path / "data")
    finally:
        server.stop()
