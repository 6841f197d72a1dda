"""The extension where artists work: Edit Mode, shot data beside the .blend, renders without the
memory, the token of each backend, jobs that are cancelled, interrupted or lose the backend.

Only the fake backend and the extension are needed (no torch, no `spatia`), so this file runs
under every supported Blender (`.ci/run` runs it on bpy 4.2, 4.5 and 5.0)."""

import io
import os
import tempfile
import time
import re

import numpy as np
import pytest

from spatia_blender import payloads
from spatia_blender.safetensors_io import write_safetensors

from ext_fake_backend import FakeBackend

pytestmark = pytest.mark.bpy


def snapshot(n, seed=0, first_id=0, z=None):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-3, 3, size=(n, 3)).astype(np.float32)
    if z is not None:
        xyz[:, 2] = z
    return {"xyz": xyz, "rgb": rng.integers(0, 256, size=(n, 3), dtype=np.uint8),
            "conf": rng.random(n).astype(np.float32), "point_id": np.arange(n, dtype=np.int64) * 3 + first_id}


def encoded(arrays, version):
    return write_safetensors(arrays, {"voxel_size": "0.1", "version": str(version)})


@pytest.fixture
def backend(addon):
    arrays = snapshot(500, seed=3, first_id=10)
    fake = FakeBackend({1: encoded(arrays, 1)}, voxel_size=0.1)
    prefs = addon.context.preferences.addons["spatia_blender"].preferences
    prefs.backend_url = fake.url
    fake.arrays = arrays
    yield fake
    fake.close()


def set_mode(bpy, obj, mode):
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    with bpy.context.temp_override(active_object=obj, object=obj):
        bpy.ops.object.mode_set(mode=mode)
    assert obj.mode == mode


def imported(bpy, backend, version=-1):
    bpy.context.scene.spatia.world_id = "w"
    assert bpy.ops.spatia.memory_import(version=version) == {"FINISHED"}, bpy.context.scene.spatia.status
    return bpy.data.objects["Spatia Memory"]


def add_camera(bpy, location=(0.0, 0.0, 5.0), rotation=(0.0, 0.0, 0.0)):
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location, cam.rotation_euler = location, rotation
    return cam


# --- Edit Mode -------------------------------------------------------------------------------
def test_push_from_edit_mode_sends_the_deletions_and_stays_in_edit_mode(addon, backend):
    bpy = addon
    import bmesh

    obj = imported(bpy, backend)
    set_mode(bpy, obj, "EDIT")
    bm = bmesh.from_edit_mesh(obj.data)
    bm.verts.ensure_lookup_table()
    bmesh.ops.delete(bm, geom=[bm.verts[i] for i in range(10)], context="VERTS")
    bmesh.update_edit_mesh(obj.data)

    assert bpy.ops.spatia.memory_push(message="cleanup") == {"FINISHED"}, bpy.context.scene.spatia.status
    (edits,) = backend.posted("/v1/worlds/w/memory/edits")
    assert sorted(edits["delete_ids"]) == backend.arrays["point_id"][:10].tolist()
    assert edits["move_ids"] == [] and edits["add_xyz"] == [] and edits["parent"] == 1
    (headers,) = backend.posted_headers("/v1/worlds/w/memory/edits")
    assert headers["If-Match"] == '"1"'
    # the new version replaced the geometry outside Edit Mode, and the artist is back in it
    assert obj.mode == "EDIT" and obj["spatia_memory_version"] == 2
    set_mode(bpy, obj, "OBJECT")
    assert len(obj.data.vertices) == 500


def test_import_while_in_edit_mode_keeps_the_new_points(addon, backend):
    bpy = addon

    obj = imported(bpy, backend)
    smaller = snapshot(300, seed=5, first_id=2000)
    backend.snapshots[2] = encoded(smaller, 2)
    set_mode(bpy, obj, "EDIT")
    assert bpy.ops.spatia.memory_import(version=2) == {"FINISHED"}
    assert obj.mode == "EDIT" and obj["spatia_memory_version"] == 2
    set_mode(bpy, obj, "OBJECT")
    assert len(obj.data.vertices) == 300
    from spatia_blender import memory_object

    np.testing.assert_array_equal(np.sort(memory_object.read_memory(obj)["point_id"]), np.sort(smaller["point_id"]))
    # nothing changed: nothing is pushed (no empty version on the backend)
    assert bpy.ops.spatia.memory_push() == {"FINISHED"}
    assert backend.posted("/v1/worlds/w/memory/edits") == []
    assert "no changes" in bpy.context.scene.spatia.status


def test_a_push_that_would_empty_the_memory_is_refused(addon, backend):
    bpy = addon

    obj = imported(bpy, backend)
    set_mode(bpy, obj, "EDIT")
    bpy.ops.mesh.select_all(action="SELECT")
    bpy.ops.mesh.delete(type="VERT")
    with pytest.raises(RuntimeError, match="delete all 500 points"):
        bpy.ops.spatia.memory_push()
    assert backend.posted("/v1/worlds/w/memory/edits") == [] and obj.mode == "EDIT"
    assert bpy.ops.spatia.memory_push(allow_empty=True) == {"FINISHED"}
    assert len(backend.posted("/v1/worlds/w/memory/edits")[0]["delete_ids"]) == 500


def test_a_stale_base_version_is_a_clear_conflict(addon, backend):
    bpy = addon

    obj = imported(bpy, backend, version=1)
    backend.snapshots[2] = backend.snapshots[1]  # someone else pushed meanwhile
    obj.data.vertices[0].co.x += 1.0
    with pytest.raises(RuntimeError, match=r"memory changed on the backend \(now version 2\); import the latest"):
        bpy.ops.spatia.memory_push()
    # a revert is made on top of the version the scene has, and says so
    settings = bpy.context.scene.spatia
    assert settings.memory_version == 1
    with pytest.raises(RuntimeError, match=r"now version 2"):
        bpy.ops.spatia.memory_revert(version=1)
    (body,) = backend.posted("/v1/worlds/w/memory/revert")
    assert body == {"version": 1, "parent": 1}
    assert backend.posted_headers("/v1/worlds/w/memory/revert")[0]["If-Match"] == '"1"'
    assert bpy.ops.spatia.memory_import() == {"FINISHED"} and settings.memory_version == 2
    assert bpy.ops.spatia.memory_revert(version=1) == {"FINISHED"}
    assert backend.posted("/v1/worlds/w/memory/revert")[-1] == {"version": 1, "parent": 2}
    assert settings.memory_version == 3


# --- generation, clips and where shot data lives -----------------------------------------------
def succeeding_job(backend, frames=2):
    image = payloads.encode_png(np.full((48, 64, 3), 90, np.uint8))
    backend.job_states = [("running", 0.5, "round 1/1: denoising"), ("succeeded", 1.0, "done")]
    backend.job_frames = [f"frames/{i:06d}.png" for i in range(frames)]
    backend.job_files = {"video.mp4": image, **{name: image for name in backend.job_frames}}


def shot_scene(bpy):
    scene = bpy.context.scene
    add_camera(bpy)
    scene.frame_start, scene.frame_end = 1, 2
    settings = scene.spatia
    settings.world_id, settings.world_frame_start = "w", 1
    settings.prompts.add().text = "a quiet street"
    return scene, settings


def test_generate_imports_the_clip_and_the_data_moves_with_the_blend(addon, backend, tmp_path):
    bpy = addon
    from spatia_blender import compat, runtime

    succeeding_job(backend)
    scene, settings = shot_scene(bpy)
    assert bpy.ops.spatia.generate() == {"FINISHED"}, settings.status
    strips = compat.strips(scene.sequence_editor)
    assert [s.name for s in strips] == ["Spatia j1"]
    assert settings.memory_version == 2 and bpy.data.objects["Spatia Memory"]["spatia_memory_version"] == 2
    assert len(settings.clips) == 1 and settings.job_status == "succeeded"
    # unsaved: the data waits in the user folder
    unsaved = runtime.unsaved_dir()
    assert os.path.isfile(os.path.join(unsaved, "worlds", "w", "clips", "j1", "video.mp4"))
    assert settings.clips[0].video.startswith(unsaved)

    # the first save moves it beside the .blend and every path becomes relative
    blend = tmp_path / "shots" / "street.blend"
    blend.parent.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    data = tmp_path / "shots" / "spatia" / "worlds" / "w"
    for name in ("clips/j1/video.mp4", "clips/j1/frames/000001.png", "memory/v000002.safetensors"):
        assert (data / name).is_file(), name
    assert list((data / "shots").glob("shot-*.json"))
    assert not os.path.exists(os.path.join(unsaved, "worlds"))

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    clip, strip = bpy.data.images["Spatia j1"], compat.strips(scene.sequence_editor)["Spatia j1"]
    item = scene.spatia.clips[0]
    for path in (clip.filepath, strip.directory, item.video, item.frames_dir):
        assert path.startswith("//spatia/worlds/w/clips/j1"), path
        assert os.path.exists(bpy.path.abspath(path)), path

    # a saved file writes straight beside itself
    backend.job_polls, backend.job_memory_version = 0, None
    assert bpy.ops.spatia.generate() == {"FINISHED"}, scene.spatia.status
    assert (data / "memory" / "v000003.safetensors").is_file()
    assert scene.spatia.clips[-1].video == "//spatia/worlds/w/clips/j1/video.mp4"

    # Save As into another folder: the shot's data comes along, the old .blend keeps its own
    elsewhere = tmp_path / "elsewhere" / "street-v2.blend"
    elsewhere.parent.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(elsewhere))
    moved = tmp_path / "elsewhere" / "spatia" / "worlds" / "w"
    for name in ("clips/j1/video.mp4", "clips/j1/frames/000001.png", "memory/v000003.safetensors"):
        assert (moved / name).is_file() and (data / name).is_file(), name
    assert len(list((moved / "shots").glob("shot-*.json"))) == 2
    bpy.ops.wm.open_mainfile(filepath=str(elsewhere))
    scene = bpy.context.scene
    clip, strip = bpy.data.images["Spatia j1"], compat.strips(scene.sequence_editor)["Spatia j1"]
    for path in (clip.filepath, strip.directory, scene.spatia.clips[0].video, scene.spatia.clips[-1].frames_dir):
        assert path.startswith("//spatia/worlds/w/clips/j1"), path
        assert bpy.path.abspath(path).startswith(str(tmp_path / "elsewhere")) and os.path.exists(bpy.path.abspath(path))
    assert runtime.shot_dir(scene, "worlds", "w", "memory", create=False) == str(moved / "memory")


def test_shot_data_folder_is_a_scene_setting_and_the_backend_data_outlives_the_extension(addon, backend, tmp_path):
    bpy = addon
    from spatia_blender import runtime

    scene, settings = shot_scene(bpy)
    assert settings.data_dir == "//spatia"
    settings.data_dir = str(tmp_path / "farm" / "shot010")
    succeeding_job(backend)
    assert bpy.ops.spatia.generate() == {"FINISHED"}, settings.status
    assert (tmp_path / "farm" / "shot010" / "worlds" / "w" / "clips" / "j1" / "video.mp4").is_file()
    # the local backend's worlds and token: the same default as `spatia serve`, not the extension's folder
    prefs = bpy.context.preferences.addons["spatia_blender"].preferences
    assert prefs.data_dir == os.path.join("~", ".spatia", "service")
    assert runtime.data_dir() == os.path.expanduser(os.path.join("~", ".spatia", "service"))
    assert not runtime.data_dir().startswith(runtime.user_dir())


def test_in_the_interface_the_clip_comes_a_step_per_timer_tick(addon, backend, monkeypatch):
    """With timers (the interface), the job's landing tick brings the memory and the Clips entry;
    the clip's background, strip and the retiring of earlier clips follow, one per tick."""
    bpy = addon
    from spatia_blender import clip_import, compat, runtime

    succeeding_job(backend, frames=3)
    scene, settings = shot_scene(bpy)
    monkeypatch.setattr(runtime, "blocking", lambda: False)
    ticks = []
    try:
        assert bpy.ops.spatia.generate() == {"FINISHED"}, settings.status
        assert settings.memory_version == 2 and len(settings.clips) == 1
        assert settings.status.endswith("showing the clip...") and clip_import.queue.pending == 3
        editor = scene.sequence_editor
        assert len(scene.camera.data.background_images) == 0 and (editor is None or not len(compat.strips(editor)))
        while clip_import.queue.pending:
            clip_import.queue.tick()
            editor = scene.sequence_editor
            ticks.append((len(scene.camera.data.background_images), 0 if editor is None else len(compat.strips(editor))))
    finally:
        clip_import.queue.clear()
    assert ticks == [(1, 0), (1, 1), (1, 1)]
    assert settings.status.startswith("clip Spatia j1") and "shown from frame 1" in settings.status
    strip = compat.strips(scene.sequence_editor)["Spatia j1"]
    assert (strip.frame_final_start, strip.frame_final_duration, strip.type) == (1, 3, "IMAGE")


def test_a_clip_that_cannot_be_shown_still_brings_the_memory(addon, backend, monkeypatch):
    bpy = addon
    from spatia_blender import clip_import

    succeeding_job(backend)
    scene, settings = shot_scene(bpy)

    def broken(*args, **kwargs):
        raise AttributeError("'SequenceEditor' object has no attribute 'strips'")

    monkeypatch.setattr(clip_import.ClipImport, "strip", broken)
    with pytest.raises(RuntimeError, match="strips"):
        bpy.ops.spatia.generate()
    # Blender and the backend agree on the memory version, so the next push is not a conflict
    assert settings.memory_version == 2 and bpy.data.objects["Spatia Memory"]["spatia_memory_version"] == 2


def test_cancel_is_not_an_error_and_an_interrupted_job_resumes(addon, backend):
    bpy = addon
    from spatia_blender import ui

    scene, settings = shot_scene(bpy)
    backend.job_states = [("running", 0.3, "round 1/1"), ("cancelled", 0.3, "cancelled")]
    assert bpy.ops.spatia.generate() == {"CANCELLED"}
    assert settings.job_status == "cancelled" and settings.job_error == ""
    assert not settings.status.startswith("Error") and ui.panel_state(settings) == "cancelled"

    backend.job_polls = 0
    backend.job_states = [("running", 0.3, "round 1/1"), ("interrupted", 0.3, "round 1/1")]
    with pytest.raises(RuntimeError, match="press Resume"):
        bpy.ops.spatia.generate()
    assert settings.job_status == "interrupted" and ui.panel_state(settings) == "failed"
    from test_ext_register import FakeLayout

    log = []
    ui.draw_generate(FakeLayout(bpy, log), bpy.context)
    assert ("operator", "spatia.resume") in log
    texts = [entry[1] for entry in log if entry[0] == "label"]
    assert sum("press Resume" in text for text in texts) == 1  # the error is drawn once
    assert not any("POST" in text for text in texts)

    succeeding_job(backend)
    assert bpy.ops.spatia.resume() == {"FINISHED"}, settings.status
    assert backend.posted("/v1/jobs/j1/resume") == [{}]
    assert settings.job_status == "succeeded" and len(settings.clips) == 1


def test_the_follower_survives_a_short_outage_and_says_when_the_backend_is_lost(backend):
    from spatia_blender.client import BackendUnavailable, Client

    client = Client(backend.url)
    succeeding_job(backend)
    backend.unreachable_polls = 3
    lost, pauses = [], []
    job = client.follow("j1", on_lost=lambda seconds, exc: lost.append(seconds), sleep=pauses.append)
    assert job["status"] == "succeeded" and len(lost) == 3
    assert pauses[:3] == [0.5, 1.0, 2.0]  # backing off

    ticks = iter(range(0, 10_000, 20))
    backend.job_polls, backend.unreachable_polls = 0, 10_000
    with pytest.raises(BackendUnavailable, match="lost the backend .* press Follow Job"):
        client.follow("j1", sleep=lambda s: None, clock=lambda: next(ticks), lost_after=60)


# --- renders ---------------------------------------------------------------------------------
def multipart_field(body: bytes, name: str) -> bytes:
    match = re.search(rb'name="' + name.encode() + rb'"(?:; filename="[^"]*")?\r\n(?:Content-Type: [^\r]*\r\n)?\r\n(.*?)\r\n--',
                      body, re.S)
    assert match, name
    return match.group(1)


def test_memory_stays_out_of_renders_and_of_the_world_from_render(addon, backend):
    bpy = addon

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 32, 24, 100
    bpy.ops.mesh.primitive_plane_add(size=200.0, location=(0.0, 0.0, 0.0))
    add_camera(bpy)  # 5 m above the plane, looking straight down
    obj = imported(bpy, backend)
    assert obj.hide_render  # new memory objects stay out of the artist's renders
    points = snapshot(4000, seed=1, z=2.0)  # a dense layer 3 m in front of the camera
    points["xyz"][:, :2] *= 0.4
    backend.snapshots[2] = encoded(points, 2)
    assert bpy.ops.spatia.memory_import(version=2) == {"FINISHED"}
    obj.hide_render = False  # the artist shows it in renders; the world-from-render pass still leaves it out
    scene.frame_start = scene.frame_current = 1
    # a clip imported earlier sits in the sequencer: the render is the camera's view, not the strip
    from spatia_blender import clip_import

    folder = os.path.join(bpy.app.tempdir or tempfile.gettempdir(), "spatia-strip")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "000000.png"), "wb") as handle:
        handle.write(payloads.encode_png(np.full((24, 32, 3), 200, np.uint8)))
    clip_import.import_clip(scene, None, clip_import.clip_frames("Spatia earlier", folder, ["000000.png"], 1))
    assert bpy.ops.spatia.world_from_render(samples=1) == {"FINISHED"}, scene.spatia.status
    (body,) = backend.posted("/v1/worlds")
    depth = np.load(io.BytesIO(multipart_field(body, "depth")))
    assert depth.shape == (24, 32)
    np.testing.assert_allclose(depth, 5.0, atol=1e-3)  # the plane everywhere, no memory point
    assert obj.hide_render is False


def test_world_from_render_checks_the_backend_before_rendering(addon, monkeypatch):
    bpy = addon
    import socket

    from spatia_blender import render_rgbd

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bpy.context.preferences.addons["spatia_blender"].preferences.backend_url = f"http://127.0.0.1:{port}"
    add_camera(bpy)
    rendered = []
    monkeypatch.setattr(render_rgbd, "RGBDPasses", lambda *args, **kwargs: rendered.append(1))
    with pytest.raises(RuntimeError, match="cannot reach the Spatia backend"):
        bpy.ops.spatia.world_from_render(samples=1)
    assert rendered == []


def test_world_from_render_runs_in_steps_with_progress_and_cancels_cleanly(addon, backend):
    """The interactive path: each pass is one render job (here rendered at once; Blender reports
    its end through the render handlers), so the interface is free between and during them."""
    bpy = addon
    from spatia_blender import runtime
    from spatia_blender.operators import world

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 32, 24, 100
    bpy.ops.mesh.primitive_plane_add(size=200.0, location=(0.0, 0.0, 0.0))
    add_camera(bpy)
    obj = imported(bpy, backend)
    scene.frame_start, scene.frame_end = 1, 10
    scene.frame_set(4)
    client = runtime.client()
    check = runtime.runner.submit("world-check", lambda task, report: client.health())
    job = world.RenderToWorld(bpy.context, client, 1, world.render_blocking, check=check)
    stages = [job.stage]
    for _ in range(10):
        if job.step() != "running":
            break
        stages.append(job.stage)
    assert job.state == "done", job.error
    assert stages[0] == "checking the backend..." and job.fraction == 1.0
    np.testing.assert_allclose(job.shot["depth"], 5.0, atol=1e-3)
    assert scene.frame_current == 4 and obj.hide_render  # the scene is as it was
    assert job._complete not in bpy.app.handlers.render_complete

    # cancelled while the colour pass renders (Esc in the render window): nothing is sent, all restored
    filepath = scene.render.filepath
    job = world.RenderToWorld(bpy.context, client, 1, lambda scene: True)
    assert job.step() == "running" and "colour pass (1/2)" in job.stage
    assert scene.render.filepath != filepath and scene.frame_current == 1
    job._cancelled()  # what Blender's render_cancel handler calls
    assert job.step() == "cancelled"
    assert scene.render.filepath == filepath and scene.frame_current == 4 and obj.hide_render
    assert job._cancelled not in bpy.app.handlers.render_cancel
    # or cancelled by the artist before any render
    job = world.RenderToWorld(bpy.context, client, 1, lambda scene: True)
    assert job.cancel() == "cancelled" and job.step() == "cancelled"
    assert backend.posted("/v1/worlds") == []


def test_world_from_render_invoked_runs_through_its_timer_modal_and_handlers(addon, backend, monkeypatch):
    """The interactive operator as a window runs it, as far as background mode allows: invoke,
    the backend check on a worker thread, the extension's timer draining the results, the modal
    handler on every timer event, Blender's render job reporting its end through render_complete,
    progress in the window manager, then the world created off the main thread and imported.
    What only a window shows (the render window, Esc reaching Blender's render job, the status
    bar's progress) is docs/blender-interactive.md's list."""
    import types

    bpy = addon
    from spatia_blender import runtime
    from spatia_blender.operators import world

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 32, 24, 100
    bpy.ops.mesh.primitive_plane_add(size=200.0, location=(0.0, 0.0, 0.0))
    add_camera(bpy)
    scene.frame_start = scene.frame_current = 1
    monkeypatch.setattr(runtime.runner, "_blocking", lambda: False)  # worker threads, as in a window
    renders = []

    def render_job(scene):  # Blender's render job: runs, then calls the render_complete handlers
        renders.append(scene.frame_current)
        bpy.ops.render.render(write_still=True, scene=scene.name)
        return True

    monkeypatch.setattr(world, "start_render_job", render_job)

    class WindowManager:
        def __init__(self):
            self.calls = []

        def event_timer_add(self, step, window=None):
            self.calls.append(("timer_add", step))
            return "timer"

        def event_timer_remove(self, timer):
            self.calls.append(("timer_remove", timer))

        def modal_handler_add(self, op):
            self.calls.append(("modal", op))

        def progress_begin(self, low, high):
            self.calls.append(("begin", low, high))

        def progress_update(self, value):
            self.calls.append(("update", value))

        def progress_end(self):
            self.calls.append(("end",))

    wm = WindowManager()
    context = types.SimpleNamespace(scene=scene, window=None, window_manager=wm)
    cls = world.SPATIA_OT_world_from_render
    reports = []
    op = types.SimpleNamespace(samples=1, report=lambda kind, text: reports.append((set(kind), text)))
    for name in ("_end", "modal"):
        setattr(op, name, types.MethodType(getattr(cls, name), op))
    assert cls.invoke(op, context, None) == {"RUNNING_MODAL"} and not cls.poll(bpy.context)
    timer = types.SimpleNamespace(type="TIMER", value="NOTHING")
    other = types.SimpleNamespace(type="MOUSEMOVE", value="NOTHING")
    statuses, result = [], None
    for _ in range(400):
        runtime._tick()  # the timer the extension registers to drain worker results
        assert op.modal(context, other) == {"PASS_THROUGH"}  # the interface stays live
        result = op.modal(context, timer)
        statuses.append(scene.spatia.status)
        if result != {"PASS_THROUGH"}:
            break
        time.sleep(0.01)
    assert result == {"FINISHED"}, (reports, statuses[-3:])
    for _ in range(400):  # the world is created on a worker thread; the timer brings it in
        runtime._tick()
        if not runtime.runner.pending:
            break
        time.sleep(0.01)
    runtime._tick()
    assert renders == [1, 1]  # the colour and the depth pass, each as a render job, at the first frame
    assert statuses[0] == "checking the backend..." and statuses[-1] == "creating the world..."
    assert [c[0] for c in wm.calls[:3]] == ["timer_add", "modal", "begin"] and wm.calls[-2:] == [
        ("timer_remove", "timer"), ("end",)]
    assert all(0 <= c[1] <= 100 for c in wm.calls if c[0] == "update")
    (body,) = backend.posted("/v1/worlds")
    np.testing.assert_allclose(np.load(io.BytesIO(multipart_field(body, "depth"))), 5.0, atol=1e-3)
    assert scene.spatia.world_id and "Spatia Memory" in bpy.data.objects
    assert world._running == [] and cls.poll(bpy.context)
    assert not [h for h in bpy.app.handlers.render_complete if getattr(h, "__self__", None) is not None
                and type(h.__self__).__name__ == "RenderToWorld"]
    assert "Spatia Depth Override" not in bpy.data.materials  # nothing of the render stays in the file


# --- tokens, polls ---------------------------------------------------------------------------
def test_the_local_token_only_goes_to_the_local_backend(addon, backend, tmp_path):
    bpy = addon
    from spatia_blender import runtime

    prefs = bpy.context.preferences.addons["spatia_blender"].preferences
    prefs.data_dir = str(tmp_path / "local")
    os.makedirs(prefs.data_dir)
    (tmp_path / "local" / "token").write_text("local-secret\n")
    prefs.port = 8799
    prefs.backend_url = "http://127.0.0.1:8799"
    assert runtime.token() == "local-secret"
    prefs.backend_url = "localhost:8799/v1"
    assert runtime.token() == "local-secret"
    prefs.backend_url = backend.url  # another backend: the local token is not sent there
    assert runtime.token() == ""
    backend.token = "remote-secret"
    with pytest.raises(RuntimeError, match="needs a token and none is set"):
        bpy.ops.spatia.test_connection()
    assert all("Authorization" not in headers for _, _, headers in backend.headers)
    prefs.token = "remote-secret"  # typed for this URL
    assert prefs.token_url == backend.url
    assert bpy.ops.spatia.test_connection() == {"FINISHED"}
    assert backend.headers[-1][2]["Authorization"] == "Bearer remote-secret"
    # pointing the URL elsewhere: the typed token stays with its backend
    prefs.backend_url = "http://127.0.0.1:8799"
    assert runtime.token() == "local-secret"
    prefs.backend_url = "http://127.0.0.1:9"
    assert runtime.token() == ""
    prefs.backend_url = backend.url + "/"
    assert runtime.token() == "remote-secret"


def test_blender_just_started_checks_the_connection_by_itself(addon, backend):
    from spatia_blender import operators, runtime

    assert not runtime.connection.connected
    operators._first_connection_check()  # what the timer runs at start in the interface
    assert runtime.connection.connected and runtime.connection.health["version"] == "fake"


def test_every_greyed_out_operator_says_why(addon, monkeypatch):
    bpy = addon
    from spatia_blender import operators

    said = {}
    for cls in operators.CLASSES:
        if "poll" in cls.__dict__:
            monkeypatch.setattr(cls, "poll_message_set", classmethod(lambda c, text, *a: said.__setitem__(c.bl_idname, text)),
                                raising=False)
    greyed = [cls for cls in operators.CLASSES if "poll" in cls.__dict__ and not cls.poll(bpy.context)]
    # a fresh scene: no camera, no world, no memory, no job, no backend started
    assert {cls.bl_idname for cls in greyed} >= {"spatia.generate", "spatia.memory_push", "spatia.memory_import",
                                                 "spatia.memory_revert", "spatia.cancel", "spatia.follow",
                                                 "spatia.resume", "spatia.world_from_render", "spatia.backend_stop"}
    for cls in greyed:
        assert said.get(cls.bl_idname), cls.bl_idname


# --- the local backend, refresh, follow, cancel ----------------------------------------------------
def test_start_a_local_backend_connect_refresh_and_stop(addon, tmp_path):
    bpy = addon
    import socket
    import stat
    import sys

    from spatia_blender import runtime

    python = tmp_path / "python"  # stands in for the backend environment's python
    serve = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ext_fake_serve.py")
    python.write_text(f'#!/bin/sh\nshift 2\nexec "{sys.executable}" "{serve}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefs = bpy.context.preferences.addons["spatia_blender"].preferences
    prefs.python_path, prefs.port, prefs.data_dir = str(python), port, str(tmp_path / "local")
    prefs.backend_url = "http://127.0.0.1:1"
    try:
        assert bpy.ops.spatia.backend_start() == {"FINISHED"}
        assert prefs.backend_url == f"http://127.0.0.1:{port}"
        assert runtime.token() == "local-token"  # written by the backend it started, sent only to it
        assert bpy.ops.spatia.test_connection() == {"FINISHED"} and runtime.connection.connected
        assert bpy.ops.spatia.world_refresh() == {"FINISHED"}, bpy.context.scene.spatia.status
        assert [w.name for w in bpy.context.scene.spatia.known_worlds] == ["w"]
        assert not bpy.ops.spatia.backend_start.poll()
    finally:
        assert bpy.ops.spatia.backend_stop() == {"FINISHED"}
    with pytest.raises(RuntimeError, match="cannot reach"):
        bpy.ops.spatia.test_connection()
    assert bpy.ops.spatia.backend_log() == {"FINISHED"}
    assert "spatia.cli serve" in bpy.data.texts["Spatia backend log"].as_string()


def test_cancel_and_follow_a_running_job(addon, backend):
    bpy = addon

    scene, settings = shot_scene(bpy)
    settings.job_id, settings.job_status = "j1", "running"
    assert bpy.ops.spatia.cancel() == {"FINISHED"}
    assert backend.posted("/v1/jobs/j1/cancel") == [{}] and settings.job_stage == "cancelling"
    succeeding_job(backend)
    assert bpy.ops.spatia.follow() == {"FINISHED"}, settings.status
    assert settings.job_status == "succeeded" and settings.memory_version == 2 and len(settings.clips) == 1
