"""The job queue through a real service: idempotency, cancellation, failures, concurrency."""

import threading
import time

import pytest
from service_fixtures import HEIGHT, WIDTH, first_view, shot
from spatia.service.client import SpatiaClient, SpatiaClientError


def wait_until(predicate, timeout=60.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def test_idempotency_key_returns_the_same_job(server, client, world):
    import requests

    body = {"world_id": world["id"], "shot": shot(12, first_round=12)}
    first = requests.post(f"{server.url}/v1/jobs", json=body, headers={"Idempotency-Key": "shot-42"}, timeout=30)
    again = requests.post(f"{server.url}/v1/jobs", json=body, headers={"Idempotency-Key": "shot-42"}, timeout=30)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert len(client.list_jobs(world["id"])) == 1
    assert client.wait(first.json()["id"])["status"] == "succeeded"
    # after it ran, the key still names that job, even though the shot would now add no frames
    assert client.submit_job(world["id"], body["shot"], idempotency_key="shot-42")["id"] == first.json()["id"]
    with pytest.raises(SpatiaClientError) as err:
        client.submit_job(world["id"], shot(24), idempotency_key="shot-42")
    assert err.value.status == 409 and err.value.field == "Idempotency-Key"


def test_cancel_a_running_and_a_queued_job(client, world):
    running = client.submit_job(world["id"], shot(generator="slow-preview"))
    queued = client.submit_job(world["id"], shot(30, generator="slow-preview"))  # same world: waits for the first
    wait_until(lambda: client.get_job(running["id"])["status"] == "running")
    assert client.get_job(queued["id"])["status"] == "queued"
    assert client.cancel_job(queued["id"])["status"] == "cancelled"
    client.cancel_job(running["id"])
    done = client.wait(running["id"], timeout=60)
    assert done["status"] == "cancelled" and done["result"] is None and done["finished"] is not None
    assert client.get_job(queued["id"])["status"] == "cancelled"
    # the world holds only whole rounds, and a cancelled job can be neither resumed nor cancelled again
    state = client.get_world(world["id"])
    assert state["frames"] in (0, 12, 20, 24)
    assert client.cancel_job(running["id"])["status"] == "cancelled"
    with pytest.raises(SpatiaClientError) as err:
        client.resume_job(running["id"])
    assert err.value.status == 409


def test_a_failure_is_recorded_with_its_cause_and_can_be_resumed(client, world):
    first = client.submit_job(world["id"], shot(generator="slow-preview"))
    other_path = shot()
    other_path["frames"][0]["w2c"][1][3] = 0.5  # accepted now (no frames yet), wrong once `first` has run
    second = client.submit_job(world["id"], other_path)
    assert client.wait(first["id"], timeout=60)["status"] == "succeeded"
    failed = client.wait(second["id"], timeout=60)
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "WorldError" and "differ" in failed["error"]["message"]
    assert failed["result"] is None
    resumed = client.resume_job(second["id"])
    assert resumed["status"] == "queued" and resumed["error"] is None
    assert client.wait(second["id"], timeout=60)["status"] == "failed"  # the cause is still there


def test_concurrent_clients_every_job_accounted_for(server):
    threads, errors, outcomes = [], [], {}
    rgb, depth, camera = first_view()

    def user(index: int) -> None:
        try:
            client = SpatiaClient(server.url, timeout=30)
            world = client.create_world(f"user{index}", "rgbd", WIDTH, HEIGHT, image=rgb, depth=depth, camera=camera)
            ids = [client.submit_job(world["id"], shot(n, first_round=12), idempotency_key=f"c{index}-{n}")["id"]
                   for n in (12, 18)]
            # poll the first, follow the second over SSE
            def first_done():
                job = client.get_job(ids[0])
                return job if job["status"] in ("succeeded", "failed") else None

            first = wait_until(first_done, timeout=120)
            second = client.wait(ids[1], timeout=120)
            outcomes[index] = (world["id"], ids, first["status"], second["status"], second["result"]["frames"])
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    for i in range(4):
        threads.append(threading.Thread(target=user, args=(i,), daemon=True))
        threads[-1].start()
    for thread in threads:
        thread.join(180)
    assert not errors, errors
    assert len(outcomes) == 4
    listed = {job["id"]: job for job in SpatiaClient(server.url).list_jobs()}
    for world_id, ids, first_status, second_status, frames in outcomes.values():
        assert (first_status, second_status) == ("succeeded", "succeeded")
        assert frames == [12, 18]
        assert all(listed[i]["world_id"] == world_id and listed[i]["status"] == "succeeded" for i in ids)
