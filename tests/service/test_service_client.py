"""spatia.service.client: generate_remote end to end, error reporting, and following a job without SSE."""

import json

import numpy as np
import pytest
import requests
from service_fixtures import first_view, npy_bytes, png_bytes, shot
from spatia.service.client import SpatiaClient, SpatiaClientError, generate_remote
from spatia.formats.video import read_image, read_video


def test_generate_remote_from_a_shot_file(server, tmp_path):
    rgb, depth, _ = first_view()
    (tmp_path / "first.png").write_bytes(png_bytes(rgb))
    (tmp_path / "depth.npy").write_bytes(npy_bytes(depth))
    spec = shot(18, first_round=12)
    spec["init"] = {"kind": "render", "image": "first.png", "depth": "depth.npy"}
    (tmp_path / "shot.json").write_text(json.dumps(spec))
    seen = []
    report = generate_remote(server.url, tmp_path / "shot.json", tmp_path / "out",
                             progress=lambda fraction, stage: seen.append(fraction))
    summary = report["summary"]
    assert summary["frames"] == [0, 18] and summary["rounds"] == 2 and seen[-1] == 1.0
    out = tmp_path / "out"
    assert read_video(out / "video.mp4").shape[0] == 18
    assert len(list((out / "frames").glob("*.png"))) == 18
    np.testing.assert_array_equal(read_image(out / "frames" / "000000.png"), rgb)
    assert (out / "memory.ply").read_bytes().startswith(b"ply")
    assert json.loads((out / "report.json").read_text())["summary"] == summary
    world = SpatiaClient(server.url).get_world(summary["world_id"])
    assert world["frames"] == 18 and world["name"] == "pan"

    # continuing that world by naming it in the shot
    longer = shot(24, first_round=12)
    longer["world"] = summary["world_id"]
    (tmp_path / "longer.json").write_text(json.dumps(longer))
    again = generate_remote(server.url, tmp_path / "longer.json", tmp_path / "out2")
    assert again["summary"]["frames"] == [18, 24] and again["summary"]["world_id"] == summary["world_id"]


def test_errors_carry_the_servers_message(server, client):
    with pytest.raises(SpatiaClientError) as err:
        client.get_job("j-000000000000")
    assert err.value.status == 404 and err.value.type == "not_found" and "j-000000000000" in err.value.message
    with pytest.raises(SpatiaClientError) as err:
        SpatiaClient("http://127.0.0.1:9", timeout=2).health()
    assert err.value.status is None and "cannot reach" in err.value.message


def test_wait_falls_back_to_polling(client, world, monkeypatch):
    def broken_stream(*args, **kwargs):
        raise requests.ConnectionError("stream dropped")
        yield  # a generator, like the real one

    monkeypatch.setattr(client, "events", broken_stream)
    job = client.submit_job(world["id"], shot(12, first_round=12))
    stages = []
    done = client.wait(job["id"], progress=lambda fraction, stage: stages.append(stage), poll_interval=0.05)
    assert done["status"] == "succeeded" and stages[-1] == "succeeded"


def test_cli_generate_with_server(server, tmp_path, capsys):
    from spatia.cli.main import main

    rgb, depth, _ = first_view()
    (tmp_path / "first.png").write_bytes(png_bytes(rgb))
    (tmp_path / "depth.npy").write_bytes(npy_bytes(depth))
    spec = shot(12, first_round=12)
    spec["init"] = {"kind": "render", "image": "first.png", "depth": "depth.npy"}
    (tmp_path / "shot.json").write_text(json.dumps(spec))
    assert main(["generate", "--shot", str(tmp_path / "shot.json"), "--out", str(tmp_path / "out"),
                 "--server", server.url]) == 0
    assert read_video(tmp_path / "out" / "video.mp4").shape[0] == 12
    assert main(["generate", "--case", str(tmp_path), "--out", str(tmp_path / "o2"), "--server", server.url]) == 2
    assert "--server needs --shot" in capsys.readouterr().err
