import multiprocessing
import threading

import pytest
import torch

from spatia.engine.memory import (
    FIELDS,
    MemoryFormatError,
    MemoryIntegrityError,
    MemoryStore,
    SpatialMemory,
    load_snapshot,
    save_snapshot,
)
from spatia.engine.memory.store import SCHEMA, snapshot_bytes
from memory_samples import sample_memory


def assert_same(a: SpatialMemory, b: SpatialMemory) -> None:
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert (a.voxel_size, a.next_id) == (b.voxel_size, b.next_id)


def test_snapshot_round_trip_is_exact(tmp_path):
    memory = sample_memory()
    path = save_snapshot(tmp_path / "m.safetensors", memory, {"note": "hello"})
    loaded, meta = load_snapshot(path)
    assert_same(memory, loaded)
    assert meta["note"] == "hello" and meta["schema"] == SCHEMA and meta["sha256"] == memory.sha256()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind


def test_store_versions_increment_with_parent_links(tmp_path):
    store = MemoryStore(tmp_path / "store")
    assert store.versions() == [] and store.latest() is None
    first, second = sample_memory(seed=1), sample_memory(seed=2)
    assert store.save(first, message="initial") == 1
    assert store.save(second, message="after clip 1") == 2
    assert store.save(first, parent=1, message="branch from 1") == 3
    assert store.versions() == [1, 2, 3] and store.latest() == 3
    history = store.history()
    assert [(h["version"], h["parent"], h["message"]) for h in history] == [
        (1, None, "initial"), (2, 1, "after clip 1"), (3, 1, "branch from 1"),
    ]
    assert history[1]["sha256"] == second.sha256() and history[1]["voxel_size"] == 0.05
    assert_same(store.load(2), second)
    assert_same(store.load(), first)
    with pytest.raises(MemoryFormatError, match="parent version 9 does not exist"):
        store.save(first, parent=9)
    with pytest.raises(FileNotFoundError, match="no version 4"):
        store.load(4)


def test_empty_memory_round_trips(tmp_path):
    store = MemoryStore(tmp_path)
    store.save(SpatialMemory.empty(0.02))
    loaded = store.load(1)
    assert len(loaded) == 0 and loaded.voxel_size == 0.02


def test_every_flipped_byte_is_refused(tmp_path):
    store = MemoryStore(tmp_path)
    store.save(sample_memory(count=4))
    path = store.path(1)
    original = path.read_bytes()
    # Every byte position: header length, JSON header (metadata, dtypes, offsets) and point data.
    for position in range(len(original)):
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        store.forget()  # read the file again: the store keeps the memory it saved
        with pytest.raises(MemoryIntegrityError):
            store.load(1)
    path.write_bytes(original)
    store.forget()
    store.load(1)


def test_truncated_snapshot_is_refused(tmp_path):
    store = MemoryStore(tmp_path)
    store.save(sample_memory())
    path = store.path(1)
    original = path.read_bytes()
    for size in (0, 5, 100, len(original) // 2, len(original) - 1):
        path.write_bytes(original[:size])
        store.forget()
        with pytest.raises(MemoryIntegrityError, match="truncated|cannot be read|mismatch"):
            store.load(1)


def test_wrong_schema_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    import safetensors.torch

    safetensors.torch.save_file({"xyz": torch.zeros(1, 3)}, path, metadata={"schema": "something.else"})
    with pytest.raises(MemoryIntegrityError, match="schema is 'something.else'"):
        load_snapshot(path)
    data = snapshot_bytes(sample_memory()).replace(b'"schema_version":"1"', b'"schema_version":"9"')
    path.write_bytes(data)
    with pytest.raises(MemoryIntegrityError, match="schema version '9' is not supported"):
        load_snapshot(path)


def test_concurrent_thread_saves_get_distinct_versions(tmp_path):
    store = MemoryStore(tmp_path)
    results: list[int] = []
    lock = threading.Lock()

    def save_three(seed: int) -> None:
        for _ in range(3):
            version = MemoryStore(tmp_path).save(sample_memory(count=20, seed=seed), message=f"thread {seed}")
            with lock:
                results.append(version)

    threads = [threading.Thread(target=save_three, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 19))
    assert store.versions() == list(range(1, 19))
    for version in store.versions():
        store.load(version)


def _save_in_process(root: str, seed: int, queue) -> None:
    queue.put([MemoryStore(root).save(sample_memory(count=10, seed=seed)) for _ in range(4)])


@pytest.mark.slow
def test_concurrent_process_saves_get_distinct_versions(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_save_in_process, args=(str(tmp_path), seed, queue)) for seed in range(3)]
    for worker in workers:
        worker.start()
    versions = sorted(v for _ in workers for v in queue.get(timeout=120))
    for worker in workers:
        worker.join(timeout=120)
    assert versions == list(range(1, 13))
    assert MemoryStore(tmp_path).versions() == list(range(1, 13))


def test_history_reports_a_damaged_version_instead_of_failing(tmp_path):
    store = MemoryStore(tmp_path)
    store.save(sample_memory(seed=1), message="good")
    store.save(sample_memory(seed=2), message="will break")
    store.path(2).write_bytes(b"\x00" * 3)
    history = store.history()
    assert history[0]["message"] == "good"
    assert history[1]["version"] == 2 and "truncated" in history[1]["error"]
