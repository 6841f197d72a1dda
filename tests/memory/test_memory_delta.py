import threading

import numpy as np
import pytest
import safetensors.torch
import torch

from spatia.engine.memory import (
    FIELDS,
    MemoryIntegrityError,
    MemoryStore,
    SpatialMemory,
    load_snapshot,
    parse_snapshot,
    save_snapshot,
)
from spatia.engine.memory import store as store_module
from spatia.engine.memory.delta import apply_delta, content_hash, make_delta
from spatia.engine.memory.store import SCHEMA, SCHEMA_VERSION, _meta_hash
from memory_samples import sample_memory


def reopen(root) -> MemoryStore:
    """A store of `root` that reads every file it needs again, whatever this process kept."""
    store = MemoryStore(root)
    store.forget()
    return store


def assert_same(a: SpatialMemory, b: SpatialMemory) -> None:
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert (a.voxel_size, a.next_id) == (b.voxel_size, b.next_id)


def add_points(memory: SpatialMemory, count: int, seed: int) -> SpatialMemory:
    """New points appended with fresh ids, as fusion does."""
    rng = np.random.default_rng(seed)
    new = SpatialMemory.from_points(rng.normal(size=(count, 3)), voxel_size=memory.voxel_size, first_id=memory.next_id)
    return SpatialMemory(**{name: torch.cat([getattr(memory, name), getattr(new, name)]) for name in FIELDS},
                         voxel_size=memory.voxel_size, next_id=new.next_id)


def change_rows(memory: SpatialMemory, rows, **values) -> SpatialMemory:
    changes = {}
    for name, value in values.items():
        field = getattr(memory, name).clone()
        field[torch.as_tensor(rows)] = torch.as_tensor(value, dtype=field.dtype)
        changes[name] = field
    return memory.replace(**changes)


def drop_rows(memory: SpatialMemory, rows) -> SpatialMemory:
    keep = torch.ones(len(memory), dtype=torch.bool)
    keep[torch.as_tensor(rows)] = False
    return memory.subset(keep)


def rounds(memory: SpatialMemory) -> list[SpatialMemory]:
    """A memory through adds, deletes, changes of every kind and their mixes."""
    out = [memory]
    out.append(add_points(out[-1], 5, seed=1))
    out.append(drop_rows(out[-1], [0, 3, 50]))
    out.append(change_rows(out[-1], [1, 2, 10], conf=[9.0, 8.0, 7.0], last_frame=30))
    out.append(change_rows(add_points(drop_rows(out[-1], [4]), 3, seed=2), [5], xyz=[[1.0, 2.0, 3.0]], side=1))
    out.append(out[-1])  # no change at all
    out.append(change_rows(out[-1], [0], rgb=[[1, 2, 3]], first_frame=0))
    out.append(drop_rows(out[-1], list(range(len(out[-1])))))  # everything removed
    out.append(add_points(out[-1], 4, seed=3))
    return out


def test_a_delta_chain_round_trips_exactly(tmp_path):
    memories = rounds(sample_memory(count=60))
    store = MemoryStore(tmp_path, full_every=4)
    versions = [store.save(memory, message=f"round {i}") for i, memory in enumerate(memories)]
    assert versions == list(range(1, len(memories) + 1))
    kinds = [entry["kind"] for entry in store.history()]
    # every 4th along a chain is full, and so are versions whose delta would be no smaller:
    # the empty memory and the one grown from it
    assert kinds == ["full", "delta", "delta", "delta", "full", "delta", "delta", "full", "full"]
    for version, memory in zip(versions, memories):
        loaded, meta = reopen(tmp_path).load_with_meta(version)  # every version rebuilt from files
        assert loaded.sha256() == memory.sha256() == meta["sha256"]
        assert_same(loaded, memory)
        assert MemoryStore(tmp_path).points(version) == len(memory)
    for version in reversed(versions):  # backwards: no help from the version loaded before
        assert reopen(tmp_path).load(version).sha256() == memories[version - 1].sha256()


def test_history_reports_kind_points_and_bytes(tmp_path):
    store = MemoryStore(tmp_path)
    memory = sample_memory(count=40)
    store.save(memory)
    store.save(change_rows(memory, [0], conf=5.0))
    first, second = store.history()
    assert (first["kind"], first["points"], first["parent"]) == ("full", 40, None)
    assert (second["kind"], second["points"], second["parent"]) == ("delta", 40, 1)
    assert second["bytes"] == store.nbytes_on_disk(2) == store.path(2).stat().st_size < first["bytes"]


def test_a_small_change_to_a_large_memory_writes_a_small_file(tmp_path):
    memory = sample_memory(count=100_000)
    store = MemoryStore(tmp_path)
    store.save(memory)
    changed = add_points(change_rows(drop_rows(memory, [5, 6]), [10, 20, 30], conf=2.0), 10, seed=4)
    store.save(changed)
    full, delta = store.nbytes_on_disk(1), store.nbytes_on_disk(2)
    assert full > 100_000 * 30 and delta < 4096, (full, delta)
    assert reopen(tmp_path).load(2).sha256() == changed.sha256()


def test_full_snapshots_on_request_for_reordered_memories_and_for_large_changes(tmp_path):
    memory = sample_memory(count=50)
    store = MemoryStore(tmp_path)
    store.save(memory)
    store.save(change_rows(memory, [1], conf=3.0), full=True)
    reordered = memory.subset(torch.arange(len(memory)).flip(0))
    store.save(reordered)
    everything = memory.replace(conf=memory.conf + 1)
    store.save(everything)
    assert [entry["kind"] for entry in store.history()] == ["full", "full", "full", "full"]
    assert_same(reopen(tmp_path).load(3), reordered)
    assert make_delta(memory, reordered) is None


def test_negative_zero_is_a_change(tmp_path):
    memory = change_rows(sample_memory(count=10), [2], xyz=[[0.0, 0.0, 0.0]])
    signed = change_rows(memory, [2], xyz=[[-0.0, 0.0, 0.0]])
    assert signed.sha256() != memory.sha256()
    delta = make_delta(memory, signed)
    rebuilt = apply_delta(memory, delta, voxel_size=memory.voxel_size, next_id=memory.next_id)
    assert rebuilt.sha256() == signed.sha256()


def test_loading_the_version_just_saved_replays_nothing(tmp_path, monkeypatch):
    store = MemoryStore(tmp_path)
    memory = sample_memory(count=30)
    store.save(memory)
    second = change_rows(memory, [0], conf=4.0)
    store.save(second)

    def refuse(*args, **kwargs):
        raise AssertionError("a full snapshot was read")

    monkeypatch.setattr(store_module, "_parse_full", refuse)
    assert store.load(2) is second and MemoryStore(tmp_path).load(2) is second  # kept for the folder
    monkeypatch.undo()
    store.forget()
    store.load(1)
    monkeypatch.setattr(store_module, "_parse_full", refuse)
    assert MemoryStore(tmp_path).load(2).sha256() == second.sha256()  # one delta applied on version 1
    third = add_points(store.load(2), 2, seed=5)
    assert store.save(third) == 3 and store.history()[-1]["kind"] == "delta" and store.load(3) is third


def test_every_altered_byte_of_a_delta_is_refused(tmp_path):
    memory = sample_memory(count=6)
    store = MemoryStore(tmp_path)
    store.save(memory)
    store.save(add_points(change_rows(drop_rows(memory, [0]), [1], conf=9.0), 1, seed=6))
    path = store.path(2)
    original = path.read_bytes()
    for position in range(len(original)):
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(MemoryIntegrityError, match="v000002"):
            reopen(tmp_path).load(2)
    path.write_bytes(original)
    reopen(tmp_path).load(2)


def test_an_altered_full_snapshot_under_a_delta_is_refused(tmp_path):
    memory = sample_memory(count=6)
    store = MemoryStore(tmp_path)
    store.save(memory)
    store.save(change_rows(memory, [1], conf=9.0))
    path = store.path(1)
    original = path.read_bytes()
    for position in range(0, len(original), 7):
        damaged = bytearray(original)
        damaged[position] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises(MemoryIntegrityError, match="v000001"):
            reopen(tmp_path).load(2)


def test_a_truncated_delta_is_refused(tmp_path):
    memory = sample_memory(count=20)
    store = MemoryStore(tmp_path)
    store.save(memory)
    store.save(add_points(memory, 3, seed=7))
    original = store.path(2).read_bytes()
    for size in (0, 5, 100, len(original) // 2, len(original) - 1):
        store.path(2).write_bytes(original[:size])
        with pytest.raises(MemoryIntegrityError, match="v000002.*(truncated|cannot be read|mismatch|JSON)"):
            reopen(tmp_path).load(2)


def test_a_missing_parent_is_refused_with_a_clear_message(tmp_path):
    memory = sample_memory(count=20)
    store = MemoryStore(tmp_path)
    for i in range(3):
        memory = add_points(memory, 2, seed=i)
        store.save(memory)
    store.path(2).unlink()
    missing = r"v000003.safetensors: its parent version 2 \(v000002.safetensors\) is missing"
    with pytest.raises(MemoryIntegrityError, match=missing):
        reopen(tmp_path).load(3)


def test_a_delta_swapped_for_another_is_refused(tmp_path):
    memory = sample_memory(count=20)
    store = MemoryStore(tmp_path)
    store.save(memory)
    store.save(change_rows(memory, [0], conf=2.0))
    store.save(change_rows(memory, [0], conf=3.0), parent=1)
    store.save(change_rows(memory, [1], conf=3.0), parent=2)
    store.path(2).unlink()
    store.path(3).rename(store.path(2))  # a valid file, but of version 3
    with pytest.raises(MemoryIntegrityError, match="v000002.safetensors: metadata says version"):
        reopen(tmp_path).load(4)


def test_a_parent_replaced_by_another_valid_snapshot_is_refused(tmp_path):
    memory = sample_memory(count=20)
    store = MemoryStore(tmp_path)
    store.save(memory)
    store.save(change_rows(memory, [0], conf=2.0))
    save_snapshot(store.path(1), change_rows(memory, [3], conf=7.0), {"version": 1, "parent": ""})
    assert reopen(tmp_path).load(1).sha256() != memory.sha256()  # whole and verified on its own
    with pytest.raises(MemoryIntegrityError, match="v000002.safetensors: parent sha256 mismatch"):
        reopen(tmp_path).load(2)


def test_a_delta_alone_is_not_a_snapshot(tmp_path):
    memory = sample_memory(count=20)
    store = MemoryStore(tmp_path)
    store.save(memory)
    store.save(add_points(memory, 1, seed=8))
    with pytest.raises(MemoryIntegrityError, match="a delta of version 2 .*load it through its store"):
        load_snapshot(store.path(2))


def test_standalone_snapshots_of_any_version(tmp_path):
    memory = sample_memory(count=20)
    store = MemoryStore(tmp_path)
    store.save(memory, message="first")
    second = add_points(memory, 4, seed=9)
    store.save(second, message="second")
    assert store.snapshot_file(1) == store.path(1)
    path = store.snapshot_file(2)
    assert path.parent.name == "full" and store.versions() == [1, 2]
    loaded, meta = load_snapshot(path)
    assert_same(loaded, second)
    assert (meta["version"], meta["parent"], meta["message"], meta["kind"]) == ("2", "1", "second", "full")
    assert meta["created"] == store.metadata(2)["created"]
    assert parse_snapshot(store.snapshot_bytes(2))[1]["sha256"] == second.sha256()
    assert store.snapshot_file(2) == path
    assert_same(parse_snapshot(store.snapshot_bytes(1))[0], memory)
    path.write_bytes(b"junk")  # a damaged copy is built again
    assert_same(load_snapshot(reopen(tmp_path).snapshot_file(2))[0], second)


def test_branches_and_concurrent_saves_get_distinct_versions(tmp_path):
    base = sample_memory(count=100)
    MemoryStore(tmp_path).save(base)
    saved: dict[int, str] = {}
    lock = threading.Lock()

    def save_three(seed: int) -> None:
        store = MemoryStore(tmp_path)
        for i in range(3):
            memory = change_rows(base, [seed * 3 + i], conf=float(seed + 2))
            version = store.save(memory, parent=1)
            with lock:
                saved[version] = memory.sha256()

    threads = [threading.Thread(target=save_three, args=(seed,)) for seed in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(saved) == list(range(2, 17))
    assert all(entry["kind"] == "delta" for entry in MemoryStore(tmp_path).history()[1:])
    for version, sha256 in saved.items():
        assert reopen(tmp_path).load(version).sha256() == sha256


def _legacy_file(path, memory: SpatialMemory, names: list[str], version: int) -> None:
    """A full snapshot as written before kinds, point counts and field lists existed, holding only `names`."""
    meta = {"version": str(version), "parent": "", "message": "old", "schema": SCHEMA,
            "schema_version": str(SCHEMA_VERSION), "voxel_size": repr(memory.voxel_size),
            "next_id": str(memory.next_id), "sha256": content_hash(memory, names), "created": "2025-01-01T00:00:00"}
    meta["meta_sha256"] = _meta_hash(meta)
    safetensors.torch.save_file({name: getattr(memory, name).contiguous() for name in names}, path, metadata=meta)


def test_old_full_snapshot_stores_still_load_and_grow_deltas(tmp_path):
    memory = sample_memory(count=30)
    _legacy_file(tmp_path / "v000001.safetensors", memory, list(FIELDS), 1)
    store = MemoryStore(tmp_path)
    assert_same(store.load(1), memory)
    assert store.history()[0]["kind"] == "full" and store.points(1) == 30
    store.save(add_points(memory, 2, seed=10))
    assert store.history()[1]["kind"] == "delta"
    assert reopen(tmp_path).load(2).sha256() == add_points(memory, 2, seed=10).sha256()


def test_a_parent_written_before_a_field_existed(tmp_path):
    """`side` stands for any field added later: the parent lacks it and loads with its default."""
    memory = sample_memory(count=30).replace(side=torch.full((30,), 4, dtype=torch.uint8))
    names = [name for name in FIELDS if name != "side"]
    assert content_hash(memory, list(FIELDS)) == memory.sha256()
    _legacy_file(tmp_path / "v000001.safetensors", memory, names, 1)
    assert "side" not in store_module._read_header_file(tmp_path / "v000001.safetensors")
    store = MemoryStore(tmp_path)
    assert_same(store.load(1), memory)
    child = change_rows(add_points(memory, 2, seed=11), [0], side=2)
    store.save(child)
    assert store.history()[1]["kind"] == "delta"
    assert_same(reopen(tmp_path).load(2), child)
    assert_same(load_snapshot(reopen(tmp_path).snapshot_file(1))[0], memory)


def test_a_delta_written_before_a_field_existed(tmp_path):
    """A chain written when `side` did not exist: added rows get its default, changed rows keep the parent's."""
    names = [name for name in FIELDS if name != "side"]
    parent = sample_memory(count=30).replace(side=torch.full((30,), 4, dtype=torch.uint8))
    child = change_rows(add_points(parent, 3, seed=12), [2], conf=6.0)
    _legacy_file(tmp_path / "v000001.safetensors", parent, names, 1)
    tensors = {key: value for key, value in make_delta(parent, child).items() if not key.endswith(".side")}
    meta = {"version": "2", "parent": "1", "message": "old delta", "schema": SCHEMA, "schema_version": str(SCHEMA_VERSION),
            "kind": "delta", "voxel_size": repr(child.voxel_size), "next_id": str(child.next_id), "points": str(len(child)),
            "fields": ",".join(names), "sha256": content_hash(child, names), "depth": "1",
            "parent_sha256": content_hash(parent, names), "created": "2025-01-01T00:00:00"}
    meta["meta_sha256"] = _meta_hash(meta)
    safetensors.torch.save_file(tensors, tmp_path / "v000002.safetensors", metadata=meta)
    assert_same(reopen(tmp_path).load(2), child)
    grandchild = add_points(child, 1, seed=13)
    store = MemoryStore(tmp_path)
    assert store.save(grandchild) == 3 and store.history()[-1]["kind"] == "delta"
    assert_same(reopen(tmp_path).load(3), grandchild)
