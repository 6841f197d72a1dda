"""The extension's pure modules (no Blender): round plan, shot payload, memory diff, surface
sampling, safetensors, PNG, presets, HTTP client errors, the task runner."""

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from spatia_blender import client as client_mod
from spatia_blender import payloads, plan, presets, safetensors_io, tasks


# --- round plan --------------------------------------------------------------------------------
def test_prompts_needed_reads_as_english():
    assert plan.prompts_needed(1, 1) == "" and plan.prompts_needed(3, 1) == "" and plan.prompts_needed(3, 4) == ""
    assert plan.prompts_needed(1, 0) == "needs a prompt"
    assert plan.prompts_needed(3, 0) == "needs a prompt (one for all 3 rounds, or one per round)"
    assert plan.prompts_needed(3, 2) == "needs 3 prompts (one per round; 2 given) or a single prompt for all"
    for rounds in range(1, 6):
        for given in range(0, 7):
            text = plan.prompts_needed(rounds, given)
            assert "1 prompts" not in text and "or 1" not in text
            assert (text == "") == (given == 1 or given >= rounds > 0 and given > 0)


def test_round_count_matches_backend_plan():
    from spatia.engine.plan import PlanError, plan_rounds

    rng = np.random.default_rng(0)
    cases = [(n, 121, 81, 9, 0) for n in (1, 2, 120, 121, 122, 193, 194, 195, 1000)]
    for _ in range(400):
        first, later = int(rng.integers(2, 150)), int(rng.integers(2, 120))
        overlap = int(rng.integers(0, later))
        count = int(rng.integers(1, 800))
        start = int(rng.integers(0, count)) if rng.random() < 0.4 else 0
        cases.append((count, first, later, overlap, start))
    for count, first, later, overlap, start in cases:
        kwargs = dict(first_round_frames=first, round_frames=later, overlap=overlap, start_frame=start)
        expected = plan_rounds(count, ["p"], **kwargs)
        spans = plan.plan_spans(count, **kwargs)
        assert spans == [(r.start, r.end, r.overlap) for r in expected], (count, kwargs)
        assert plan.round_count(count, **kwargs) == len(expected)
    for bad in [dict(frame_count=0), dict(frame_count=10, overlap=81), dict(frame_count=10, start_frame=10)]:
        with pytest.raises(plan.PlanError):
            plan.plan_spans(**bad)
        args = dict(bad)
        with pytest.raises(PlanError):
            plan_rounds(args.pop("frame_count"), ["p"], **args)


def test_round_prompts():
    assert plan.round_prompts(["a"], 3) == ["a", "a", "a"]
    assert plan.round_prompts(["a", "b", "c"], 2) == ["a", "b"]
    with pytest.raises(plan.PlanError, match="fewer prompts than rounds"):
        plan.round_prompts(["a", "b"], 3)
    with pytest.raises(plan.PlanError):
        plan.round_prompts([" "], 1)


# --- shot payload -------------------------------------------------------------------------------
def _exported(n=5):
    from spatia.cameras import Cameras

    eyes = np.stack([np.linspace(0, 1, n), np.full(n, -3.0), np.full(n, 1.5)], axis=1)
    cams = Cameras.look_at(eyes, [0.0, 0.0, 1.0], width=64, height=48)
    return {"frames": list(range(10, 10 + n)), "intrinsics": cams.intrinsics, "w2c": cams.w2c, "width": 64, "height": 48,
            "fps": 24.0}


def test_build_shot_validates_with_backend_schema():
    from spatia.formats.shot import load_shot

    exported = _exported()
    shot = payloads.build_shot(exported, ["a room", " "], name="s", world="w1", generator="preview", seed=7,
                               dynamic_prompts=payloads.split_prompts("person, car\n dog"), steps=4,
                               rounds={"first_round_frames": 3, "round_frames": 3, "overlap": 1})
    json.dumps(shot, allow_nan=False)
    spec = load_shot(shot)
    assert spec.prompts == ["a room"] and spec.world == "w1" and spec.seed == 7 and spec.steps == 4
    assert spec.dynamic_prompts == ["person", "car", "dog"]
    assert spec.rounds.first_round_frames == 3 and spec.rounds.overlap == 1
    assert spec.frame_numbers.tolist() == exported["frames"]
    np.testing.assert_allclose(spec.keyframe_cameras().w2c, exported["w2c"], atol=1e-12)
    np.testing.assert_allclose(spec.keyframe_cameras().intrinsics, exported["intrinsics"], atol=1e-12)
    with pytest.raises(ValueError, match="prompt"):
        payloads.build_shot(exported, [" "])


def test_cameras_payload_shapes():
    body = payloads.cameras_payload(_exported(3))
    assert body["width"] == 64 and np.array(body["w2c"]).shape == (3, 4, 4) and np.array(body["intrinsics"]).shape == (3, 4)


# --- memory diff -------------------------------------------------------------------------------
def test_memory_edits_delete_move_duplicate_add():
    rng = np.random.default_rng(1)
    base_ids = np.arange(100, 110)
    base_xyz = rng.normal(size=(10, 3)).astype(np.float32)
    rgb = rng.integers(0, 255, size=(10, 3)).astype(np.uint8)
    keep = np.array([0, 1, 2, 4, 5, 6, 7, 9])  # 103 and 108 deleted
    ids, xyz, colors = base_ids[keep], base_xyz[keep].copy(), rgb[keep]
    xyz[1] += [0.5, 0, 0]  # 101 moved
    xyz[2] += [1e-6, 0, 0]  # 102: float noise, not a move
    # a duplicated vertex (same id) moved elsewhere, and a new vertex (id -1)
    ids = np.concatenate([ids, [104, -1]])
    xyz = np.concatenate([xyz, [[9, 9, 9], [7, 7, 7]]])
    colors = np.concatenate([colors, [[1, 2, 3], [4, 5, 6]]]).astype(np.uint8)
    edits = payloads.memory_edits(base_ids, base_xyz, ids, xyz, colors, parent=3, message="m",
                                  extra_xyz=[[0, 0, 0]], extra_rgb=[[10, 20, 30]])
    assert edits["parent"] == 3 and edits["message"] == "m"
    assert edits["delete_ids"] == [103, 108]
    assert edits["move_ids"] == [101]
    np.testing.assert_allclose(edits["move_xyz"], [xyz[1]], atol=1e-6)
    assert edits["add_xyz"] == [[9, 9, 9], [7, 7, 7], [0, 0, 0]]
    assert edits["add_rgb"] == [[1, 2, 3], [4, 5, 6], [10, 20, 30]]
    assert payloads.edits_summary(edits) == "2 deleted, 1 moved, 3 added"
    unchanged = payloads.memory_edits(base_ids, base_xyz, base_ids, base_xyz, rgb, parent=1)
    assert not (unchanged["delete_ids"] or unchanged["move_ids"] or unchanged["add_xyz"])


def test_sample_surface_density_and_colours():
    square = np.array([[[0, 0, 0], [1, 0, 0], [1, 1, 0]], [[0, 0, 0], [1, 1, 0], [0, 1, 0]]], dtype=float)
    xyz, rgb = payloads.sample_surface(square, np.array([[255, 0, 0], [0, 0, 255]]), spacing=0.05)
    assert abs(len(xyz) - (2 + 1 / 0.05**2)) < 60
    assert np.all(np.abs(xyz[:, 2]) < 1e-12) and xyz[:, :2].min() >= 0 and xyz[:, :2].max() <= 1
    lower = xyz[:, 0] > xyz[:, 1]  # first triangle: below the diagonal
    assert np.all(rgb[lower] == [255, 0, 0]) and np.all(rgb[~lower] == [0, 0, 255])
    corner = np.array([[[0, 0, 0], [255, 255, 255], [255, 255, 255]]] * 2, dtype=float)
    _, rgb2 = payloads.sample_surface(square, corner, spacing=0.2)
    assert rgb2.min() < rgb2.max()  # interpolated per corner
    few, _ = payloads.sample_surface(square, np.zeros((2, 3)), spacing=0.001, max_points=100)
    assert len(few) <= 110


def test_linear_to_srgb():
    assert payloads.linear_to_srgb([0.0, 1.0, 0.5, 0.002]).tolist() == [0, 255, 188, 7]


# --- encodings ----------------------------------------------------------------------------------
def test_coverage_bars_geometry_and_colour():
    frames, coverage = np.array([10, 11, 12]), np.array([0.0, 0.5, 1.0])
    verts, colours, indices = payloads.coverage_bars(frames, coverage, frame_to_x=(20.0, -100.0), bottom=16, height=18)
    assert verts.shape == (12, 2) and colours.shape == (12, 4) and indices.shape == (6, 3)
    quads = verts.reshape(3, 4, 2)
    np.testing.assert_allclose(quads[:, :, 0].mean(axis=1), frames * 20.0 - 100.0)  # centred on the frame
    assert (quads[:, :, 0].max(axis=1) < quads[1:, :, 0].min(axis=1).tolist() + [np.inf]).all()  # bars do not overlap
    np.testing.assert_allclose(quads[:, 2, 1] - 16, [18 * 0.04, 9.0, 18.0], rtol=1e-5)  # height follows coverage, never zero
    np.testing.assert_allclose(colours[0], payloads.COVERAGE_LOW)  # red where the model must invent
    np.testing.assert_allclose(colours[-1], payloads.COVERAGE_HIGH)
    assert indices.max() == 11 and set(np.unique(indices[:2])) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="2 coverage values for 3 frames"):
        payloads.coverage_bars(frames, coverage[:2], frame_to_x=(1, 0), bottom=0, height=1)


def test_png_and_npy_decode():
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(payloads.encode_png(image))))
    np.testing.assert_array_equal(decoded, image)
    depth = np.random.default_rng(1).random((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.load(io.BytesIO(payloads.encode_npy(depth)), allow_pickle=False), depth)


def test_safetensors_reader_matches_package_on_snapshot(tmp_path):
    from safetensors.numpy import load_file

    from spatia.engine.memory import SpatialMemory
    from spatia.engine.memory.store import save_snapshot

    rng = np.random.default_rng(0)
    n = 1000
    memory = SpatialMemory.from_points(rng.normal(size=(n, 3)).astype(np.float32),
                                       rng.integers(0, 256, size=(n, 3), dtype=np.uint8),
                                       rng.random(n).astype(np.float32), voxel_size=0.05, first_id=17)
    path = save_snapshot(tmp_path / "v.safetensors", memory, {"version": 4})
    ours, meta = safetensors_io.read_safetensors(path.read_bytes())
    theirs = load_file(str(path))
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        assert ours[name].dtype == theirs[name].dtype, name
        np.testing.assert_array_equal(ours[name], theirs[name])
    from safetensors import safe_open

    with safe_open(str(path), "np") as handle:
        assert meta == handle.metadata()
    assert meta["version"] == "4" and meta["sha256"] == memory.sha256()


def test_safetensors_writer_round_trip_and_errors():
    from safetensors.numpy import load

    tensors = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": np.ones((0, 3), np.float32),
               "c": np.array([1, 2], np.uint8)}
    data = safetensors_io.write_safetensors(tensors, {"k": 1})
    loaded = load(data)
    for name, value in tensors.items():
        np.testing.assert_array_equal(loaded[name], value)
    back, meta = safetensors_io.read_safetensors(data)
    assert meta == {"k": "1"} and back["a"].tolist() == tensors["a"].tolist()
    with pytest.raises(safetensors_io.SafetensorsError, match="truncated|claims"):
        safetensors_io.read_safetensors(data[:20])
    with pytest.raises(safetensors_io.SafetensorsError, match="spans"):
        safetensors_io.read_safetensors(data[:-1])


# --- presets ------------------------------------------------------------------------------------
def test_preset_names_from_folder_and_builtins(tmp_path):
    assert [i[0] for i in presets.preset_items("quality", None)][0] == "standard"
    assert "preview" in [i[0] for i in presets.preset_items("generator", None)]
    (tmp_path / "quality").mkdir()
    (tmp_path / "quality" / "fast.json").write_text(json.dumps({"description": "quick", "steps": 4}))
    (tmp_path / "quality" / "standard.toml").write_text('steps = 30\n')
    (tmp_path / "vram.json").write_text(json.dumps({"8gb": {"description": "small GPU"}, "auto": {}}))
    (tmp_path / "models.json").write_text(json.dumps([{"name": "preview"}, {"name": "spatia-5b"}]))
    quality = presets.preset_items("quality", tmp_path)
    assert [i[0] for i in quality] == ["standard", "fast"] and quality[1][2] == "quick"
    assert [i[0] for i in presets.preset_items("vram", tmp_path)] == ["auto", "8gb"]
    assert [i[0] for i in presets.preset_items("generator", tmp_path)] == ["preview", "spatia-5b"]


def test_camera_paths():
    base = np.eye(4)
    base[:3, 3] = [0, -5, 1]
    base[:3, :3] = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])  # camera looks along +y, up +z
    forward = -base[:3, 2]
    assert np.allclose(forward, [0, 1, 0])
    dolly = presets.camera_path(presets.BUILTIN_CAMERA_PATHS["dolly_in"], base, 11)
    assert np.allclose(dolly[-1][:3, 3], [0, -3, 1]) and np.allclose(dolly[-1][:3, :3], base[:3, :3])
    orbit = presets.camera_path(presets.BUILTIN_CAMERA_PATHS["orbit"], base, 5)
    pivot = base[:3, 3] + 3 * forward
    for m in orbit:
        assert np.linalg.norm(m[:3, 3] - pivot) == pytest.approx(3.0)
        assert np.allclose(m[:3, 3] - 3 * m[:3, 2], pivot)  # still looking at the pivot
    assert np.allclose(orbit[2][:3, 3], [0, 1, 1])  # half way round the pivot at (0, -2, 1)
    loop = presets.camera_path(presets.BUILTIN_CAMERA_PATHS["look_away_and_back"], base, 9)
    assert np.allclose(loop[0], base) and np.allclose(loop[-1], base) and not np.allclose(loop[2], base)
    pan = presets.camera_path(presets.BUILTIN_CAMERA_PATHS["pan"], base, 3)
    assert np.allclose(pan[-1][:3, 3], base[:3, 3]) and -pan[-1][0, 2] > 0.8  # turned to the right (+x)
    keys = presets.camera_path({"keys": [{"t": 0}, {"t": 1, "offset": [1, 0, 0]}]}, base, 3)
    assert np.allclose(keys[1][:3, 3], [0.5, -5, 1])
    for m in orbit + loop + pan:
        assert np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3))
    with pytest.raises(ValueError, match="unknown type"):
        presets.camera_path({"type": "spiral"}, base, 3)


def test_camera_presets_from_files(tmp_path):
    (tmp_path / "cameras").mkdir()
    (tmp_path / "cameras" / "crane.json").write_text(json.dumps({"keys": [{"t": 0}, {"t": 1, "offset": [0, 2, 0]}]}))
    (tmp_path / "cameras" / "broken.json").write_text("{")
    found = presets.camera_presets(tmp_path)
    assert {"orbit", "dolly_in", "pan", "look_away_and_back", "crane"} <= set(found) and "broken" not in found
    assert found["crane"]["name"] == "Crane"


# --- client -------------------------------------------------------------------------------------
def test_url_policy():
    assert client_mod.normalize_url("localhost:9000/v1/") == "http://localhost:9000"
    assert client_mod.is_loopback("http://127.0.0.1:1") and client_mod.is_loopback("http://[::1]:1")
    assert not client_mod.is_loopback("http://192.168.1.5:8765")
    client_mod.check_url_allowed("http://localhost:8765", online_access=False)
    client_mod.check_url_allowed("http://gpu-box:8765", online_access=True)
    with pytest.raises(client_mod.OnlineAccessDenied, match="online access"):
        client_mod.Client("http://gpu-box:8765", online_access=False)


class _Handler(BaseHTTPRequestHandler):
    api_version = 1

    def log_message(self, *args):
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer good":
            return self._send(401, {"error": {"type": "unauthorized", "message": "bad token", "field": None}})
        if self.path == "/v1/health":
            return self._send(200, {"version": "9.9", "api_version": type(self).api_version, "device": "cuda",
                                    "gpu_name": "Test GPU", "vram_free_gb": 7.5})
        if self.path.startswith("/elsewhere/"):  # not a Spatia backend: a plain 404 page
            data = b"<html><body>404 Not Found</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        if self.path.startswith("/v1/jobs/"):
            type(self).polls = getattr(type(self), "polls", 0) + 1
            status = "running" if type(self).polls < 3 else "succeeded"
            return self._send(200, {"id": "j", "status": status, "fraction": 0.5, "stage": "x"})
        return self._send(404, {"error": {"type": "not_found", "message": "no such world", "field": "world_id"}})


@pytest.fixture
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    _Handler.api_version = 1
    _Handler.polls = 0


def test_client_errors_are_user_messages(fake_server):
    good = client_mod.Client(fake_server, "good")
    health = good.health()
    assert health["gpu_name"] == "Test GPU"
    with pytest.raises(client_mod.AuthError, match="refused the token"):
        client_mod.Client(fake_server, "bad").health()
    with pytest.raises(client_mod.ApiError, match="no such world") as info:
        good.world("nope")
    assert info.value.status == 404 and info.value.field == "world_id"
    _Handler.api_version = 2
    with pytest.raises(client_mod.VersionSkew, match="API version 2"):
        good.health()
    updates = []
    job = good.follow("j", updates.append, interval=0.01)
    assert job["status"] == "succeeded" and len(updates) == 3


def test_wrong_url_path_and_missing_token_say_what_to_fix(fake_server):
    with pytest.raises(client_mod.ApiError, match=r"/elsewhere/v1/health does not exist: is .* the address of a Spatia "
                                                  r"backend") as info:
        client_mod.Client(fake_server + "/elsewhere", "good").health()
    assert info.value.status == 404
    with pytest.raises(client_mod.AuthError, match="needs a token and none is set"):
        client_mod.Client(fake_server).health()


def test_client_backend_down():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(client_mod.BackendUnavailable, match="cannot reach"):
        client_mod.Client(f"http://127.0.0.1:{port}").health()


# --- tasks --------------------------------------------------------------------------------------
def test_task_runner_threads_and_main_thread_callbacks():
    runner = tasks.TaskRunner()
    main = threading.get_ident()
    seen = []

    def work(task, report):
        report(1)
        report(2)
        assert threading.get_ident() != main
        return "ok"

    task = runner.submit("a", work, on_progress=lambda p: seen.append(("p", p, threading.get_ident())),
                         on_done=lambda r: seen.append(("done", r, threading.get_ident())))
    with pytest.raises(RuntimeError, match="already running"):
        runner.submit("a", work)
    deadline = time.monotonic() + 5
    while runner.pending and time.monotonic() < deadline:
        runner.drain()
        time.sleep(0.01)
    assert [s[:2] for s in seen] == [("p", 1), ("p", 2), ("done", "ok")]
    assert all(s[2] == main for s in seen)
    assert not runner.busy("a") and task.done.is_set() and task.result == "ok"

    errors = []
    runner.submit("b", lambda t, r: 1 / 0, on_error=errors.append)
    deadline = time.monotonic() + 5
    while runner.pending and time.monotonic() < deadline:
        runner.drain()
        time.sleep(0.01)
    assert isinstance(errors[0], ZeroDivisionError)


def test_task_runner_blocking_mode():
    runner = tasks.TaskRunner(blocking=lambda: True)
    seen = []
    task = runner.submit("a", lambda t, report: report(5) or 7, on_progress=seen.append, on_done=seen.append)
    assert task.done.is_set() and seen == [5, 7] and not runner.busy()
    with pytest.raises(ZeroDivisionError):
        runner.submit("b", lambda t, r: 1 / 0)


def test_clip_span_whole_video_or_new_frames_only():
    whole = {"result": {"frames": [10, 15], "files": {"frames": [f"frames/{i:06d}.png" for i in range(15)]}}}
    start, count, new = payloads.clip_span(whole)
    assert (start, count) == (0, 15) and new == [f"frames/{i:06d}.png" for i in range(10, 15)]
    only_new = {"result": {"frames": [10, 15], "files": {"frames": [f"f{i}.png" for i in range(5)]}}}
    assert payloads.clip_span(only_new) == (10, 5, [f"f{i}.png" for i in range(5)])
    assert payloads.clip_span({"result": {"frames": [0, 4], "files": {}}}) == (0, 4, [])
