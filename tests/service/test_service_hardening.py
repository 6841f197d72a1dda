"""Locks, concurrency, cross-site requests, untrusted uploads and bounded heavy requests."""

import threading

from spatia.service.jobstore import JobStore
from spatia.service.storage import WorldStorage


def test_claiming_a_job_and_a_memory_write_on_its_world_never_deadlock(tmp_path):
    """A worker claiming a job takes the world's lock; a memory write holds the world's lock and
    asks the job store whether a job runs. Both at once must finish (one lock order)."""
    store = JobStore(tmp_path / "jobs.sqlite")
    storage = WorldStorage(tmp_path / "worlds")
    job, _ = store.submit("w-a", {"n": 1}, None)
    worker_inside = threading.Event()
    writer_holds_world = threading.Event()
    results = {}

    def mark_running(world_id, switch):
        worker_inside.set()  # the worker is inside claim_next, about to take the world's lock
        writer_holds_world.wait(5)
        with storage.lock(world_id):
            return switch()

    def worker():
        results["claimed"] = store.claim_next(mark_running)

    def writer():
        with storage.lock("w-a"):
            writer_holds_world.set()
            worker_inside.wait(5)
            results["running"] = store.count_on_world("w-a", ("running",))

    threads = [threading.Thread(target=worker, daemon=True), threading.Thread(target=writer, daemon=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "deadlock between claim_next and a memory write"
    assert results["running"] == 0 and results["claimed"]["id"] == job["id"]
    store.close()


def test_claim_rechecks_that_the_world_runs_nothing(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    a, _ = store.submit("w-a", {"n": 1}, None)
    b, _ = store.submit("w-a", {"n": 2}, None)
    # another worker starts `a` between this worker's pick and its switch: the switch must refuse `b`
    picked = {}

    def racing(world_id, switch):
        picked["first"] = store.claim_next(lambda w, s: s())
        return switch()

    assert store.claim_next(racing) is None
    assert picked["first"]["id"] == a["id"]
    assert store.get(b["id"])["status"] == "queued"
    store.close()
