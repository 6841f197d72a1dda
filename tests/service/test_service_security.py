"""Token, upload limits and the `spatia serve` command."""

import os
import stat
import subprocess
import sys
import time

import pytest
import requests
from service_fixtures import free_port, start_server
from spatia.service.client import SpatiaClient, SpatiaClientError
from spatia.service.config import ServiceConfig, is_loopback


@pytest.mark.slow
def test_token_required_with_require_token(tmp_path):
    server = start_server(tmp_path / "data", "--require-token", "--max-upload-mb", "0.01")
    try:
        token_file = tmp_path / "data" / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = server.token
        assert len(token) >= 40
        health = f"{server.url}/v1/health"
        missing = requests.get(health, timeout=10)
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "unauthorized"
        assert requests.get(health, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        assert requests.get(health, headers={"Authorization": token}, timeout=10).status_code == 401
        assert requests.get(health, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
        with pytest.raises(SpatiaClientError) as err:
            SpatiaClient(server.url).list_worlds()
        assert err.value.status == 401
        client = SpatiaClient(server.url, token=token)
        assert client.list_worlds() == []
        # bodies over --max-upload-mb: 413, whether the length is declared or streamed
        big = b"x" * 20_000
        response = requests.post(f"{server.url}/v1/worlds", headers={"Authorization": f"Bearer {token}"},
                                 files={"points": ("p.ply", big)}, data={"name": "n", "kind": "points"}, timeout=10)
        assert response.status_code == 413 and "0.01 MB" in response.json()["error"]["message"]
        chunked = requests.post(f"{server.url}/v1/worlds",
                                headers={"Authorization": f"Bearer {token}",
                                         "Content-Type": "multipart/form-data; boundary=x"},
                                data=iter([big[:5000]] * 4), timeout=10)
        assert chunked.status_code == 413
    finally:
        server.stop()
    # the token survives restarts
    server = start_server(tmp_path / "data")
    try:
        assert server.token == token
        # optional on loopback, but a wrong one is still refused
        assert requests.get(f"{server.url}/v1/health", timeout=10).status_code == 200
        assert requests.get(f"{server.url}/v1/health", headers={"Authorization": "Bearer nope"},
                            timeout=10).status_code == 401
    finally:
        server.stop()


def test_token_needed_off_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    assert ServiceConfig("d", host="0.0.0.0").token_required
    assert not ServiceConfig("d").token_required
    assert ServiceConfig("d", require_token=True).token_required
    with pytest.raises(ValueError, match="workers"):
        ServiceConfig("d", workers=0)


@pytest.mark.slow
def test_spatia_serve_command(tmp_path):
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    process = subprocess.Popen([sys.executable, "-m", "spatia.cli", "serve", "--port", str(port), "--data-dir",
                                str(tmp_path / "data"), "--require-token", "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                response = requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert response.status_code == 401
        token = (tmp_path / "data" / "token").read_text().strip()
        assert SpatiaClient(f"http://127.0.0.1:{port}/v1", token=token).health()["api_version"] == 1
        for folder in ("worlds", "jobs", "logs"):
            assert (tmp_path / "data" / folder).is_dir()
        assert (tmp_path / "data" / "jobs.sqlite").is_file()
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert "token: required" in output
    assert token not in output  # the token is never printed
