"""Memory versions over HTTP: download, push, edits, diff, revert, and the rules that keep them consistent."""

import json

import numpy as np
import pytest
from service_fixtures import shot
from spatia.service.client import SpatiaClientError
from spatia.engine.memory import MemoryStore, delete_ids, parse_snapshot, snapshot_bytes


def test_memory_round_trip(server, client, world):
    wid = world["id"]
    v1, _ = parse_snapshot(client.get_memory(wid, 1))
    ids = v1.point_id.numpy()

    edit = client.edit_memory(wid, parent=1, message="tidy", delete_ids=ids[:10], move_ids=ids[10:12],
                              move_xyz=[[0, 0, 5], [0, 1, 5]], add_xyz=[[1, 1, 1], [2, 2, 2], [3, 3, 3]],
                              add_rgb=[[255, 0, 0]] * 3)
    assert edit == {"version": 2, "deleted": 10, "moved": 2, "added": 3,
                    "added_ids": [v1.next_id, v1.next_id + 1, v1.next_id + 2]}
    v2, meta = parse_snapshot(client.get_memory(wid, "latest"))
    assert meta["message"] == "tidy" and meta["parent"] == "1"
    assert len(v2) == len(v1) - 10 + 3
    moved = v2.xyz[v2.indices_of(ids[10:12])].numpy()
    np.testing.assert_allclose(moved, [[0, 0, 5], [0, 1, 5]])
    assert v2.rgb[v2.indices_of(edit["added_ids"])].tolist() == [[255, 0, 0]] * 3

    changes = client.diff_memory(wid, 1, 2)
    assert changes["deleted"] == sorted(ids[:10].tolist())
    assert changes["moved"] == sorted(ids[10:12].tolist())
    assert changes["added"] == edit["added_ids"]

    # push a snapshot made locally: the memory of version 2 without its first 5 points
    pushed = delete_ids(v2, v2.point_id[:5])
    version = client.put_memory(wid, snapshot_bytes(pushed), parent=2, message="local edit")
    assert version == 3
    assert client.diff_memory(wid, 2, 3) == {"deleted": sorted(v2.point_id[:5].tolist()), "moved": [], "added": []}

    assert client.revert_memory(wid, 1, parent=3) == 4
    v4, meta = parse_snapshot(client.get_memory(wid, 4))
    assert v4.sha256() == v1.sha256() and meta["message"] == "revert to version 1"
    history = client.memory_history(wid)
    assert [(h["version"], h["parent"]) for h in history] == [(1, None), (2, 1), (3, 2), (4, 3)]
    assert [h["points"] for h in history] == [len(v1), len(v2), len(pushed), len(v1)]
    assert client.get_world(wid)["memory_version"] == 4
    # every stored version loads with its hashes verified, and PLY export works
    for h in history:
        memory, meta = MemoryStore(server.data_dir / "worlds" / wid / "memory").load_with_meta(h["version"])
        assert meta["sha256"] == h["sha256"] == memory.sha256()
    assert client.get_memory(wid, 2, format="ply").startswith(b"ply")


def test_stale_parent_and_bad_edits_are_refused(client, world):
    wid = world["id"]
    v1, _ = parse_snapshot(client.get_memory(wid, 1))
    client.edit_memory(wid, parent=1, delete_ids=v1.point_id[:1])
    cases = [
        (dict(parent=1, delete_ids=[int(v1.point_id[5])]), 409, "parent"),
        (dict(parent=2, delete_ids=[v1.next_id + 100]), 422, "delete_ids"),
        (dict(parent=2, move_ids=[int(v1.point_id[5])], move_xyz=[]), 422, "move_xyz"),
        (dict(parent=2, move_ids=[int(v1.point_id[0])], move_xyz=[[0, 0, 0]]), 422, "move_ids"),  # deleted in v2
        (dict(parent=2, add_xyz=[[0, 0, 0]], add_rgb=[[1, 2, 3], [4, 5, 6]]), 422, "add_rgb"),
        (dict(parent=2), 422, "delete_ids"),
    ]
    for kwargs, status, field in cases:
        with pytest.raises(SpatiaClientError) as err:
            client.edit_memory(wid, **kwargs)
        assert (err.value.status, err.value.field) == (status, field), (kwargs, err.value)
    with pytest.raises(SpatiaClientError) as err:
        client.put_memory(wid, snapshot_bytes(v1), parent=1)
    assert err.value.status == 409 and err.value.current_version == 2 and "(2)" in err.value.message
    with pytest.raises(SpatiaClientError) as err:  # ids below next_id would be reused
        client.put_memory(wid, snapshot_bytes(v1.subset(np.arange(10)).replace(next_id=5)), parent=2)
    assert err.value.status == 422
    tampered = bytearray(snapshot_bytes(v1))
    header_size = int.from_bytes(tampered[:8], "little")
    xyz_start = json.loads(tampered[8:8 + header_size])["xyz"]["data_offsets"][0]
    tampered[8 + header_size + xyz_start] ^= 0x01  # a still-valid coordinate, one bit off
    with pytest.raises(SpatiaClientError) as err:
        client.put_memory(wid, bytes(tampered), parent=2)
    assert err.value.status == 422 and "sha256" in err.value.message
    with pytest.raises(SpatiaClientError) as err:
        client.get_memory(wid, 99)
    assert err.value.status == 404
    with pytest.raises(SpatiaClientError) as err:
        client.revert_memory(wid, 99, parent=2)
    assert err.value.status == 404
    assert [h["version"] for h in client.memory_history(wid)] == [1, 2]


def test_memory_is_read_only_while_a_job_runs(client, world):
    wid = world["id"]
    job = client.submit_job(wid, shot(generator="slow-preview"))
    try:
        for _ in range(200):
            if client.get_job(job["id"])["status"] == "running":
                break
            import time
            time.sleep(0.05)
        with pytest.raises(SpatiaClientError) as err:
            client.revert_memory(wid, 1, parent=1)
        assert err.value.status == 409 and "running" in err.value.message
        with pytest.raises(SpatiaClientError) as err:
            client.delete_world(wid)
        assert err.value.status == 409
    finally:
        client.cancel_job(job["id"])
    assert client.wait(job["id"], timeout=60)["status"] == "cancelled"
