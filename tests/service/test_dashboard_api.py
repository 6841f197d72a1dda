"""The dashboard's server side without a browser: pages and their policies, 404/405, sign-in codes
and the session cookie, the routes the pages read, binary points, previews."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_fixtures import HEIGHT, WIDTH, first_view, png_bytes

from spatia.service.app import create_app
from spatia.service.auth import SignInCodes
from spatia.service.config import ServiceConfig
from spatia.service.pointcloud import decode_chunk, encode_chunk
from spatia.service.previews import contact_sheet
from spatia.service.web import STATIC_DIR

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def app_client(tmp_path):
    app = create_app(ServiceConfig(data_dir=tmp_path / "data", require_token=True))
    with TestClient(app, base_url=BASE) as client:
        yield app, client


def _auth(app):
    return {"Authorization": f"Bearer {app.state.service.token}"}


def test_pages_are_served_with_a_policy_that_forbids_other_hosts(app_client):
    _, client = app_client
    for path in ("/", "/login", "/docs"):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert response.headers["x-frame-options"] == "DENY"


def test_no_packaged_page_or_script_names_another_host():
    """Every script, style and page the dashboard and /docs load is in the package; none of ours
    refers to an http(s) address (the vendored Swagger UI only mentions specifications' URLs in
    strings it never fetches, and the policy above would block them anyway)."""
    ours = [p for p in (STATIC_DIR / "dashboard").iterdir() if p.suffix in (".html", ".js", ".css")]
    assert {p.name for p in ours} >= {"index.html", "app.js", "viewer.js", "charts.js", "login.html", "docs.html"}
    for path in ours:
        text = path.read_text()
        for url in re.findall(r"https?://[^\s\"')]+", text):
            assert url == "http://www.w3.org/2000/svg", (path.name, url)
        for ref in re.findall(r'(?:src|href)="([^"]+)"', text):
            assert ref.startswith(("/", "#", "data:")), (path.name, ref)
            if ref.startswith("/static/"):
                assert (STATIC_DIR / ref.removeprefix("/static/")).is_file(), ref
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"):
        assert (STATIC_DIR / "vendor" / "swagger-ui" / name).is_file()


def test_unknown_urls_answer_404_and_known_paths_405(app_client):
    _, client = app_client
    for path in ("/nope", "/v1/nope", "/static/nope.js"):
        assert client.get(path).status_code == 404, path
    response = client.delete("/v1/jobs")
    assert response.status_code == 405 and "GET" in response.headers["allow"]
    assert response.json()["error"]["type"] == "method_not_allowed"
    assert client.options("/v1/jobs").status_code == 204


def test_a_sign_in_code_works_once_and_the_cookie_stands_for_the_token(app_client):
    app, client = app_client
    assert client.get("/v1/dashboard/jobs").status_code == 401
    assert client.post("/v1/session/links").status_code == 401  # only a holder of the token may ask
    link = client.post("/v1/session/links", headers=_auth(app)).json()
    assert link["path"] == f"/login#code={link['code']}" and app.state.service.token not in link["path"]
    client.cookies.clear()
    assert client.post("/v1/session", json={"code": "made-up"}).status_code == 401
    response = client.post("/v1/session", json={"code": link["code"]})
    assert response.status_code == 204
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and app.state.service.token not in cookie
    assert client.get("/v1/dashboard/jobs").status_code == 200
    assert client.get("/v1/session").json()["signed_in"] is True
    client.cookies.clear()
    assert client.post("/v1/session", json={"code": link["code"]}).status_code == 401  # spent
    client.cookies.set("spatia_session", "0" * 64)
    assert client.get("/v1/dashboard/jobs").status_code == 401  # a forged cookie
    client.cookies.clear()
    assert client.post("/v1/session", json={"token": app.state.service.token}).status_code == 204
    # a state-changing request from another site is refused before the cookie is looked at
    response = client.post("/v1/jobs/j-000000000000/cancel", headers={"Origin": "https://attacker.example"})
    assert response.status_code == 403


def test_expired_codes_are_refused(monkeypatch):
    codes = SignInCodes()
    code = codes.grant(ttl_s=-1)
    assert not codes.redeem(code)
    fresh = codes.grant(ttl_s=60)
    assert codes.redeem(fresh) and not codes.redeem(fresh)


def test_points_arrive_as_a_binary_level_of_detail_sample_of_the_memory(app_client):
    app, client = app_client
    rgb, depth, camera = first_view()
    import json

    files = {"image": ("rgb.png", png_bytes(rgb), "image/png"),
             "depth": ("depth.npy", __import__("service_fixtures").npy_bytes(depth), "application/octet-stream")}
    data = {"name": "wall", "kind": "rgbd", "width": str(WIDTH), "height": str(HEIGHT), "camera": json.dumps(camera)}
    world = client.post("/v1/worlds", headers=_auth(app), data=data, files=files)
    assert world.status_code == 201, world.text
    wid = world.json()["id"]
    first = client.get(f"/v1/worlds/{wid}/points?limit=500", headers=_auth(app))
    total, offset, xyz, colours = decode_chunk(first.content)
    assert offset == 0 and len(xyz) == 500 and total > 1000
    rest = decode_chunk(client.get(f"/v1/worlds/{wid}/points?offset=500&limit={total}", headers=_auth(app)).content)
    every = np.concatenate([xyz, rest[2]])
    memory = app.state.service.memory(app.state.service.storage.open(wid), None)[1]
    truth = memory.xyz.numpy()
    # the same points, each once, in another order
    np.testing.assert_allclose(np.sort(every, axis=0), np.sort(truth, axis=0), atol=0)
    assert len(np.unique(every, axis=0)) == len(np.unique(truth, axis=0)) and not np.array_equal(every, truth)
    # the first chunk is spread over the whole memory (the wall's rows, here), not its first rows
    for axis in (0, 1):
        assert xyz[:, axis].max() - xyz[:, axis].min() > 0.9 * (truth[:, axis].max() - truth[:, axis].min())
    cams = client.get(f"/v1/worlds/{wid}/cameras", headers=_auth(app)).json()
    assert cams["width"] == WIDTH
    assert client.get(f"/v1/worlds/{wid}/rounds", headers=_auth(app)).json() == []
    assert client.get(f"/v1/worlds/{wid}/frames/abc", headers=_auth(app)).status_code == 422
    assert client.get(f"/v1/worlds/{wid}/frames/5", headers=_auth(app)).status_code == 404


@pytest.mark.parametrize("total", [1, 2, 5, 63, 64, 1000, 123_457, 1_000_003])
def test_the_level_of_detail_order_is_a_permutation_whose_prefixes_spread(total):
    xyz = np.arange(total, dtype=np.float32)[:, None].repeat(3, axis=1)  # each point's x is its index
    rgb = (np.arange(total) % 256).astype(np.uint8)[:, None].repeat(3, axis=1)
    chunks, offset = [], 0
    for limit in (7, 1000, 50_000, 10**6):
        total_, start, a, b = decode_chunk(encode_chunk(xyz, rgb, offset, limit))
        assert total_ == total and start == offset
        np.testing.assert_array_equal(b[:, 0], (a[:, 0].astype(np.int64) % 256).astype(np.uint8))  # rows stay paired
        chunks.append(a[:, 0].astype(np.int64))
        offset += len(a)
    order = np.concatenate(chunks)
    assert sorted(order.tolist()) == list(range(total))  # every point once
    if total >= 1000:  # the first 1/8 of the order covers the whole index range evenly
        head = np.sort(order[: total // 8])
        assert head[0] < total / 50 and head[-1] > total * 0.98 and np.diff(head).max() < total / 20
        # and every column of an image the points could have come from, row by row
        for width in (64, 100, 1248):
            if total // 8 >= 50 * width:  # at least 50 samples a column on average
                columns = np.bincount(order[: total // 8] % width, minlength=width)
                assert columns.min() > 0.5 * columns.mean(), width


def test_previews_reach_the_job_routes(app_client):
    app, client = app_client
    service = app.state.service
    job, _ = service.jobs.submit("w-000000000000", {"name": "x"}, None)
    assert client.get(f"/v1/jobs/{job['id']}/preview", headers=_auth(app)).status_code == 404
    frames = np.zeros((9, 4, 6, 3), np.uint8)
    frames[4] = 200
    sink = service.previews.sink(job["id"], every=3)
    assert sink.every == 3
    sink(3, 10, frames)
    response = client.get(f"/v1/jobs/{job['id']}/preview", headers=_auth(app))
    assert response.status_code == 200 and response.headers["x-preview-step"] == "3"
    from PIL import Image
    import io

    sheet = np.asarray(Image.open(io.BytesIO(response.content)))
    np.testing.assert_array_equal(sheet, contact_sheet(frames))
    assert sheet.shape == (8, 42, 3) and sheet[:4, 24:30].min() == 200  # frame 4: row 0, column 4


def test_contact_sheet_rejects_wrong_frames():
    with pytest.raises(ValueError, match="uint8"):
        contact_sheet(np.zeros((2, 4, 4, 3), np.float32))


def test_runs_outside_the_service_are_listed_read_only(app_client, tmp_path, monkeypatch):
    from spatia.formats.runs import RunRecord

    app, client = app_client
    monkeypatch.setenv("SPATIA_RUNS_DIR", str(tmp_path / "runs"))
    run = RunRecord("batch", "street", world=str(tmp_path / "out" / "shots" / "street"))
    run.progress(0.25, "round 1/4: denoising")
    rows = client.get("/v1/dashboard/jobs", headers=_auth(app)).json()
    (row,) = [r for r in rows if r["id"] == run.record["id"]]
    assert row["origin"] == "batch" and row["shot"] == "street" and row["world_id"] == "street"
    assert row["status"] == "running" and row["fraction"] == 0.25
    run.finish("succeeded")
    (row,) = [r for r in client.get("/v1/dashboard/jobs", headers=_auth(app)).json() if r["id"] == run.record["id"]]
    assert row["status"] == "succeeded"
