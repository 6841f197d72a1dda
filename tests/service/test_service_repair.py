"""Stored damage is the server's state, not a bad request (409), and can be repaired through the
API; numbers are whole numbers; voxel sizes are sizes; a cached full snapshot is served only if
its content still checks out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
from service_fixtures import HEIGHT, WIDTH, first_view, npy_bytes, png_bytes
from spatia.engine.memory import SpatialMemory, parse_snapshot, snapshot_bytes
from spatia.service.client import SpatiaClientError


def flip_data_byte(path, tensor: str | None = None) -> None:
    """Alter one byte of a tensor's data (the first tensor's unless named); the header stays valid."""
    data = bytearray(path.read_bytes())
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_size])
    tensor = tensor or sorted(k for k in header if k != "__metadata__" and header[k]["data_offsets"][1] >
                              header[k]["data_offsets"][0])[0]
    data[8 + header_size + header[tensor]["data_offsets"][0]] ^= 0x01
    path.write_bytes(bytes(data))


def _version_file(server, wid: str, version: int):
    return server.data_dir / "worlds" / wid / "memory" / f"v{version:06d}.safetensors"


def test_a_damaged_current_version_answers_409_and_is_repaired_by_a_push_or_a_revert(server, client, world):
    wid = world["id"]
    v1 = parse_snapshot(client.get_memory(wid, 1))[0]
    assert client.edit_memory(wid, parent=1, delete_ids=[int(v1.point_id[0])])["version"] == 2
    flip_data_byte(_version_file(server, wid, 2))
    # reading it: 409 stored_damage naming the version (the request was fine), and the 1st version still serves
    for url in (f"{server.url}/v1/worlds/{wid}/memory/2", f"{server.url}/v1/worlds/{wid}/memory/latest"):
        response = requests.get(url, timeout=30)
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["type"] == "stored_damage" and error["damaged_version"] == 2 and "version 2" in error["message"]
    assert parse_snapshot(client.get_memory(wid, 1))[0].sha256() == v1.sha256()
    # repair by a push on the damaged version: accepted, ids still never reused
    with pytest.raises(SpatiaClientError) as err:
        client.put_memory(wid, snapshot_bytes(v1.subset(np.arange(10)).replace(next_id=5)), parent=2)
    assert err.value.status == 422 and "next_id" in err.value.message
    assert client.put_memory(wid, snapshot_bytes(v1), parent=2) == 3
    assert parse_snapshot(client.get_memory(wid, "latest"))[0].sha256() == v1.sha256()
    # damage again; repair by reverting to a good version
    flip_data_byte(_version_file(server, wid, 3))
    response = requests.post(f"{server.url}/v1/worlds/{wid}/memory/revert", json={"version": 1, "parent": 3},
                             timeout=30)
    assert response.status_code == 201, response.text
    assert parse_snapshot(client.get_memory(wid, "latest"))[0].sha256() == v1.sha256()


def test_a_tampered_cached_full_snapshot_is_rebuilt_before_it_is_served(server, client, world):
    wid = world["id"]
    v1 = parse_snapshot(client.get_memory(wid, 1))[0]
    assert client.edit_memory(wid, parent=1, move_ids=[int(v1.point_id[3])], move_xyz=[[0.5, 0.25, 2.0]])["version"] == 2
    first = parse_snapshot(client.get_memory(wid, 2))[0]  # a delta: its full snapshot is built and kept
    cached = server.data_dir / "worlds" / wid / "memory" / "full" / "v000002.safetensors"
    assert cached.is_file()
    flip_data_byte(cached, "xyz")  # the header still says the right hash; the points do not match it
    served = parse_snapshot(client.get_memory(wid, 2))[0]  # parse_snapshot verifies the content hash
    assert served.sha256() == first.sha256()


def test_voxel_sizes_out_of_range_are_refused(server, client):
    rgb, depth, camera = first_view()
    for voxel in (1e-30, 1e30):
        memory = SpatialMemory.empty(voxel)
        response = requests.post(f"{server.url}/v1/worlds", timeout=30,
                                 data={"name": "v", "kind": "points", "width": str(WIDTH), "height": str(HEIGHT)},
                                 files={"points": ("p.safetensors", snapshot_bytes(memory))})
        assert response.status_code == 422 and "voxel_size" in response.text, (voxel, response.text)
        response = requests.post(f"{server.url}/v1/worlds", timeout=30,
                                 data={"name": "v", "kind": "rgbd", "width": str(WIDTH), "height": str(HEIGHT),
                                       "camera": json.dumps(camera), "voxel_size": repr(voxel)},
                                 files={"image": ("i.png", png_bytes(rgb)), "depth": ("d.npy", npy_bytes(depth))})
        assert response.status_code == 422 and response.json()["error"]["field"] == "voxel_size", response.text


def test_numbers_that_are_not_whole_numbers_are_refused(server, client, world):
    wid = world["id"]
    base = f"{server.url}/v1/worlds/{wid}"
    box = {"min": [-5, -5, 0], "max": [5, 5, 5]}
    assert requests.post(f"{base}/query/points-in-box", json={**box, "limit": 3}, timeout=30).status_code == 200
    for limit in (False, True, 1.0, "3"):
        response = requests.post(f"{base}/query/points-in-box", json={**box, "limit": limit}, timeout=30)
        assert response.status_code == 422 and response.json()["error"]["field"] == "limit", (limit, response.text)
    for path in ("objects/1.0/points", "objects/1e0/points", "objects/+1/points", "memory/diff?from=1.0&to=1",
                 "objects?version=1.0", "objects?version=true"):
        response = requests.get(f"{base}/{path}", timeout=30)
        assert response.status_code == 422, (path, response.status_code, response.text)
    response = requests.post(f"{base}/memory/edits", json={"parent": 1.0, "delete_ids": [1]}, timeout=30)
    assert response.status_code == 422 and response.json()["error"]["field"] == "parent"
    response = requests.post(f"{base}/memory/edits", json={"parent": 1, "delete_ids": [True]}, timeout=30)
    assert response.status_code == 422
    rgb, depth, camera = first_view()
    response = requests.post(f"{server.url}/v1/worlds", timeout=30,
                             data={"name": "w", "kind": "rgbd", "width": f"{WIDTH}.0", "height": str(HEIGHT),
                                   "camera": json.dumps(camera)},
                             files={"image": ("i.png", png_bytes(rgb)), "depth": ("d.npy", npy_bytes(depth))})
    assert response.status_code == 422 and response.json()["error"]["field"] == "width"
    assert np.isfinite(depth).all()


def test_every_route_answers_hostile_input_with_a_4xx_naming_it(server, client, world):
    """Each route of the API (from its own OpenAPI document) with hostile path values and bodies:
    never a 500, every error body names its type, and the world's memory is untouched."""
    wid = world["id"]
    before = client.get_memory(wid, "latest")
    spec = requests.get(f"{server.url}/openapi.json", timeout=30).json()
    values = ["1.0", "-1", "0", "99999999999999999999999", "true", "%00", "..%2F..", "x" * 300, "latest", "1e3"]
    bodies = [None, b"{", b'{"parent": 1.5, "limit": false}', b"\xff\xfe"]
    problems, requests_made = [], 0
    for path, methods in spec["paths"].items():
        for method in methods:
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            for value in values:
                # the real world only for reads: a write must be refused for its other inputs, not its id
                url = path.replace("{world_id}", wid if value == "latest" and method == "get" else value)
                for name in ("version", "object_id", "job_id", "token", "index", "name", "path"):
                    url = url.replace("{" + name + "}", value)
                if "{" in url:
                    url = url.split("{", 1)[0] + value + url.split("}", 1)[1]
                for body in (bodies if method != "get" else [None]):
                    headers = {"Content-Type": "application/json"} if body is not None else {}
                    response = requests.request(method.upper(), f"{server.url}{url}", data=body, headers=headers,
                                                timeout=30, stream=True)
                    requests_made += 1
                    status = response.status_code
                    if status >= 500:
                        problems.append(f"{method.upper()} {url} {body!r:.30}: {status} {response.text[:200]}")
                    elif status >= 400 and "json" in response.headers.get("content-type", ""):
                        error = response.json().get("error") or {}
                        if not error.get("type") or not error.get("message"):
                            problems.append(f"{method.upper()} {url}: {status} without an error type and message")
                    response.close()
    assert requests_made > 200
    assert not problems, "\n".join(problems[:20])
    assert client.get_memory(wid, "latest") == before
