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
from spatia.service.pointcloud import decode_chunk, encode_chunk, shuffled
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
    code = codes.issue(ttl_s=-1)
    assert not codes.redeem(code)
    fresh = codes.issue(ttl_s=60)
    assert codes.redeem(fresh) and not codes.redeem(fresh)


def test_points_arrive_as_a_shuffled_binary_sample_of_the_memory(app_client):
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
    # the same points, in another order
    np.testing.assert_allclose(np.sort(every, axis=0), np.sort(truth, axis=0), atol=0)
    assert not np.array_equal(every, truth)
    # the first chunk is spread over the whole memory, not its first rows
    assert xyz[:, 0].max() - xyz[:, 0].min() > 0.8 * (truth[:, 0].max() - truth[:, 0].min())
    cams = client.get(f"/v1/worlds/{wid}/cameras", headers=_auth(app)).json()
    assert cams["width"] == WIDTH
    assert client.get(f"/v1/worlds/{wid}/rounds", headers=_auth(app)).json() == []
    assert client.get(f"/v1/worlds/{wid}/frames/abc", headers=_auth(app)).status_code == 422
    assert client.get(f"/v1/worlds/{wid}/frames/5", headers=_auth(app)).status_code == 404


def test_binary_chunks_round_trip_and_clip_to_the_end():
    rng = np.random.default_rng(0)
    xyz, rgb = shuffled(rng.normal(size=(1000, 3)).astype(np.float32), rng.integers(0, 256, (1000, 3), dtype=np.uint8))
    total, offset, a, b = decode_chunk(encode_chunk(xyz, rgb, 900, 500))
    assert (total, offset, len(a)) == (1000, 900, 100)
    np.testing.assert_array_equal(a, xyz[900:])
    np.testing.assert_array_equal(b, rgb[900:])


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
