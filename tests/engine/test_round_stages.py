"""The round as a pipeline of stages: each stage alone, the round record's stage timings, and the
commit writer that puts a round on disk behind the next one (overlap, errors, a crash mid-commit)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from spatia.cameras import Cameras, Trajectory
from spatia.engine.errors import WorldError
from spatia.engine.memory import SpatialMemory
from spatia.engine.models.preview import PreviewGenerator
from spatia.engine.plan import Round
from spatia.engine.settings import GenerateSettings
from spatia.engine.stages import commit, condition, generate, index, observe, retrieve
from spatia.engine.stages import pipeline
from spatia.engine.world import World

W, H, FRAMES = 40, 30, 25
SETTINGS = dict(first_round_frames=9, round_frames=9, overlap=2, update_fps=12.0, object_memory=False)
STAGES = ("condition_s", "retrieve_s", "generate_s", "observe_s", "update_s", "index_s", "commit_wait_s",
          "commit_s", "loop_closure_s", "total_s")


def path(frames: int = FRAMES) -> Trajectory:
    """A camera that slides sideways and turns a little, in front of a textured wall."""
    t = np.linspace(0.0, 1.0, frames)
    cams = [Cameras.look_at([0.6 * s, 0.0, 0.0], [0.4 * s, 3.0, 0.0], width=W, height=H) for s in np.sin(np.pi * t)]
    return Trajectory(Cameras(np.concatenate([c.intrinsics for c in cams]), np.concatenate([c.w2c for c in cams]),
                              W, H), fps=24.0)


def make_world(root) -> World:
    """A world seeded from a view of a random-textured wall 3 m ahead (exact depth)."""
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    cam = path().cameras[0]
    z = np.full((H, W), 3.0, np.float32)  # the wall's depth along the first camera's axis
    world = World.create(root, width=W, height=H, voxel_size=0.02)
    world.init_from_rgbd(rgb, z, cam)
    return world


class Recording(PreviewGenerator):
    """The preview, with a hook called at the start of every clip."""

    def __init__(self, before=None):
        super().__init__(workers=1)
        self.before, self.calls = before, 0

    def generate(self, request, progress=None, should_cancel=None):
        self.calls += 1
        if self.before is not None:
            self.before(self.calls)
        return super().generate(request, progress, should_cancel)


def camera_lines(root) -> int:
    return len((root / commit.CAMERAS_FILE).read_bytes().splitlines())


# --- stages, one at a time -----------------------------------------------------------------
def test_condition_renders_the_memory_and_marks_holes():
    cams = path().cameras
    wall = SpatialMemory.from_points(np.array([[x, 3.0, z] for x in np.linspace(-0.5, 0.5, 30)
                                               for z in np.linspace(-0.3, 0.3, 20)], np.float32),
                                     np.full((600, 3), 200, np.uint8), voxel_size=0.02)
    shown = condition.condition(wall, cams[:3], np.arange(3), 24.0)
    assert shown.rgb.shape == (3, H, W, 3) and shown.hole.shape == (3, H, W)
    assert 0.0 < shown.coverage < 1.0  # the patch covers part of the view, the rest is a hole
    assert (shown.depth[~shown.hole] > 2.5).all() and (shown.depth[shown.hole] == 0).all()
    assert shown.object_ids is None and shown.paths == {}
    empty = condition.condition(SpatialMemory.empty(0.02), cams[:2], np.arange(2), 24.0)
    assert empty.hole.all() and empty.coverage == 0.0


def test_retrieve_needs_a_past_and_a_wish_for_references():
    memory = SpatialMemory.empty(0.02)
    assert retrieve.retrieve(None, memory, path().cameras[:2], 0, k=7, scoring="iou", fps=24.0).indices == []
    assert retrieve.retrieve(index.ViewIndex(), memory, path().cameras[:2], 5, k=0, scoring="iou", fps=24.0).indices == []


def test_keyframes_and_index_grids_are_fixed_grids_of_video_frames():
    rnd = Round(index=1, start=7, end=16, overlap=2, prompt="p")
    assert observe.keyframes(rnd, 24.0, 12.0).tolist() == [10, 12, 14]  # the new frames 9..15, every other
    assert index.index_grid(9, 16, 24.0, 6.0) == [12]
    assert index.index_grid(0, 9, 24.0, 6.0) == [0, 4, 8]


def test_generate_pads_a_short_round_for_models_trained_on_full_rounds_and_checks_the_clip():
    rnd = Round(index=2, start=20, end=25, overlap=2, prompt="p", target=9)
    padded = type("Padded", (), {"pads_short_rounds": True})()
    assert generate.padding(rnd, padded).tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 4]
    assert generate.padding(rnd, PreviewGenerator()).tolist() == [0, 1, 2, 3, 4]

    class Wrong(PreviewGenerator):
        def generate(self, request, progress=None, should_cancel=None):
            out = super().generate(request, progress, should_cancel)
            return type(out)(out.frames[:, :-1], out.depth, out.info)

    cams = path().cameras[20:25]
    shown = condition.condition(SpatialMemory.empty(0.02), cams, np.arange(20, 25), 24.0)
    request = generate.make_request(rnd, cams, shown, SpatialMemory.empty(0.02), frame_index=np.arange(5), prompt="p",
                                    negative_prompt="", history=None, references=None, first_frame=None, fps=24.0,
                                    seed=0, steps=None, guidance=None, round_index=2)
    with pytest.raises(WorldError, match=r"expected \[5, 30, 40, 3\]"):
        generate.generate(Wrong(workers=1), request, rnd, (H, W))


def test_the_camera_file_appends_and_cuts_what_an_interrupted_commit_left(tmp_path):
    cams = path().cameras
    first = commit.append_cameras(tmp_path, commit.camera_lines(cams[:4]), 0)
    (tmp_path / commit.CAMERAS_FILE).open("ab").write(b'{"intrinsics": [1, 2')  # a torn append
    second = commit.append_cameras(tmp_path, commit.camera_lines(cams[4:9]), first)
    back = commit.read_cameras(tmp_path, 9, second, W, H)
    assert back.equals(cams[:9], atol=1e-12) and camera_lines(tmp_path) == 9
    assert commit.read_cameras(tmp_path, 4, first, W, H).equals(cams[:4], atol=1e-12)


# --- a whole round ---------------------------------------------------------------------------
def test_every_round_record_carries_each_stages_seconds_and_lands_whole(tmp_path):
    world = make_world(tmp_path / "w")
    records = world.generate(path(), ["a wall"], Recording(), GenerateSettings(**SETTINGS))
    assert [(r["start"], r["end"]) for r in records] == [(0, 9), (7, 16), (14, 23), (21, 25)]
    for record in records:
        assert set(STAGES) <= set(record["timings"]) and all(v >= 0 for v in record["timings"].values())
        on_disk = json.loads((world.root / "rounds" / f"{record['round']:04d}" / "round.json").read_text())
        assert on_disk["loop_closure"] == record["loop_closure"] and "memory_vs_first_psnr" in on_disk["loop_closure"]
    reopened = World.open(world.root)
    assert reopened.frame_count == FRAMES and camera_lines(world.root) == FRAMES
    assert reopened.cameras().equals(path().cameras, atol=1e-9)
    assert reopened.memory_version == records[-1]["memory_version_out"]
    np.testing.assert_array_equal(reopened.frames(range(FRAMES)), world.frames(range(FRAMES)))
    assert not list((world.root / "rounds").glob("*.partial"))


def test_a_round_is_generated_while_the_previous_one_is_being_written(tmp_path):
    """Round 2's generator runs while round 1's commit is still in progress: each waits for the
    other, which would deadlock (and time out) if the commit ran in line."""
    writing, generating = threading.Event(), threading.Event()

    def slow_write(files):
        if files.index == 0:
            writing.set()
            assert generating.wait(60), "the next round never started while this one was being written"
        return commit.write_round(files)

    def before(call):
        if call == 2:
            assert writing.wait(60)
            generating.set()

    world = make_world(tmp_path / "w")
    original = commit.CommitWriter.__init__
    try:
        commit.CommitWriter.__init__ = lambda self, write=slow_write: original(self, write)
        world.generate(path(16), ["a wall"], Recording(before), GenerateSettings(**SETTINGS))
    finally:
        commit.CommitWriter.__init__ = original
    assert generating.is_set() and World.open(world.root).frame_count == 16


def test_a_failed_commit_is_raised_and_the_world_stays_at_its_last_committed_round(tmp_path, monkeypatch):
    world = make_world(tmp_path / "w")
    real = commit.write_video

    def failing(target, frames, fps, **kwargs):
        if "0001.partial" in str(target):
            raise OSError("disk full")
        return real(target, frames, fps, **kwargs)

    monkeypatch.setattr(commit, "write_video", failing)
    with pytest.raises(OSError, match="disk full"):
        world.generate(path(), ["a wall"], Recording(), GenerateSettings(**SETTINGS))
    assert world.frame_count == 9 and World.open(world.root).frame_count == 9
    assert not list((world.root / "rounds").glob("*.partial"))
    monkeypatch.setattr(commit, "write_video", real)
    world.generate(path(), ["a wall"], Recording(), GenerateSettings(**SETTINGS))  # carries on from round 1
    assert World.open(world.root).frame_count == FRAMES and camera_lines(world.root) == FRAMES


CRASH = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from test_round_stages import make_world, path, Recording, SETTINGS
    from spatia.engine.settings import GenerateSettings
    from spatia.engine.stages import commit
    real = commit.write_frames
    def dying(target, frames, **kwargs):
        real(target, frames, **kwargs)
        if kwargs.get("start") == 9:  # round 2's frames are on disk, its record and state are not
            os._exit(17)
    commit.write_frames = dying
    make_world({root!r}).generate(path(), ["a wall"], Recording(), GenerateSettings(**SETTINGS))
""")


def test_a_crash_in_the_middle_of_a_commit_leaves_the_last_committed_round(tmp_path):
    root = tmp_path / "w"
    code = CRASH.format(tests=str(__import__("pathlib").Path(__file__).parent), root=str(root))
    assert subprocess.run([sys.executable, "-c", code], timeout=300).returncode == 17
    world = World.open(root).recover()
    assert world.frame_count == 9 and len(world.state["rounds"]) == 1 and len(world.cameras()) == 9
    assert camera_lines(root) == 9 or (root / commit.CAMERAS_FILE).stat().st_size > world.state["camera_bytes"]
    assert not list((root / "rounds").glob("*.partial")) and (root / "rounds" / "0000" / "round.json").exists()
    world.generate(path(), ["a wall"], Recording(), GenerateSettings(**SETTINGS))
    again = World.open(root)
    assert again.frame_count == FRAMES and camera_lines(root) == FRAMES
    assert again.cameras().equals(path().cameras, atol=1e-9)


def test_a_world_with_the_older_camera_file_carries_on(tmp_path):
    world = make_world(tmp_path / "w")
    world.generate(Trajectory(path().cameras[:16], fps=24.0), ["a wall"], Recording(), GenerateSettings(**SETTINGS))
    cams = world.cameras()
    (world.root / commit.CAMERAS_FILE).unlink()  # as an earlier version left it: cameras.json, no byte count
    (world.root / "cameras.json").write_text(json.dumps({"width": W, "height": H, "fps": 24.0,
                                                         "intrinsics": cams.intrinsics.tolist(),
                                                         "w2c": cams.w2c.tolist()}))
    state = json.loads((world.root / "world.json").read_text())
    state.pop("camera_bytes")
    (world.root / "world.json").write_text(json.dumps(state))
    old = World.open(world.root)
    assert old.cameras().equals(cams, atol=1e-12)
    old.generate(path(), ["a wall"], Recording(), GenerateSettings(**SETTINGS))
    assert World.open(world.root).cameras().equals(path().cameras, atol=1e-9) and camera_lines(world.root) == FRAMES


def test_the_pipeline_never_reaches_into_the_world():
    import ast
    import inspect

    source = ast.parse(inspect.getsource(pipeline))
    names = {n.id for n in ast.walk(source) if isinstance(n, ast.Name)}
    assert "World" not in names
