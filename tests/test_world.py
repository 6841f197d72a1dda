"""The world loop end to end on a scene rendered by Blender (Cycles colour + exact depth).

The oracle generator returns the Blender renders as the "generated" frames, so what is
measured is the memory pipeline: initialisation, retrieval, alignment, masking, fusion,
carving, versions on disk.
"""

import json

import numpy as np
import pytest

from spatia.cameras import Cameras, Trajectory
from spatia.engine.metrics import psnr
from spatia.engine.models.base import Cancelled, DepthEstimator, DepthResult, ModelRequirements
from spatia.engine.models.oracle import FrameTable, OracleGenerator
from spatia.engine.render import render_memory
from spatia.engine.update import coverage
from spatia.engine.world import GenerateSettings, World, WorldError

pytestmark = [pytest.mark.bpy, pytest.mark.slow]

FRAMES = 25
SETTINGS = dict(first_round_frames=13, round_frames=13, overlap=5, update_fps=12.0)  # every other frame updates


@pytest.fixture(scope="module")
def room():
    pytest.importorskip("bpy")
    from spatia.demo.scene import build_demo_room, keyframe_camera, look_away_and_back
    from spatia_blender.camera_export import export_camera
    from spatia_blender.render_rgbd import render_rgbd

    demo = build_demo_room(96, 64)
    keyframe_camera(demo.scene, demo.camera, look_away_and_back(FRAMES))
    frames, depth = [], []
    for f in range(demo.scene.frame_start, demo.scene.frame_end + 1):
        demo.scene.frame_set(f)
        r = render_rgbd(demo.scene, demo.camera, samples=4)
        frames.append(r["rgb"])
        depth.append(r["depth"])
    exported = export_camera(demo.scene, demo.camera)
    cams = Cameras(exported["intrinsics"], exported["w2c"], exported["width"], exported["height"])
    return Trajectory(cams, fps=24.0), np.stack(frames), np.stack(depth)


def new_world(tmp_path, room, name="w"):
    traj, frames, depth = room
    world = World.create(tmp_path / name, width=96, height=64, voxel_size=0.02)
    world.init_from_rgbd(frames[0], depth[0], traj.cameras[0])
    return world


def oracle(room):
    traj, frames, depth = room
    return OracleGenerator(FrameTable(traj.cameras, frames, depth))


def test_rounds_grow_the_memory_over_newly_seen_space(tmp_path, room):
    traj, frames, depth = room
    world = new_world(tmp_path, room)
    initial = world.memory()
    records = world.generate(traj, ["a room"], oracle(room), GenerateSettings(**SETTINGS))
    assert [(r["start"], r["end"]) for r in records] == [(0, 13), (8, 21), (16, 25)]
    assert world.frame_count == FRAMES and world.store.versions() == [1, 2, 3, 4]
    # The camera turns away (frame 6 is the far end of the swing): the first view alone
    # barely covers it; after the first round the memory does.
    before = coverage(initial, traj.cameras)
    after = coverage(world.memory(), traj.cameras)
    assert before[6] < 0.6
    assert after[6] > 0.9 and after.min() > 0.85
    assert len(world.memory()) > len(initial)
    # history and memory lineage on disk
    assert [json.loads((world.root / "rounds" / f"{i:04d}" / "round.json").read_text())["memory_version_in"]
            for i in range(3)] == [1, 2, 3]
    assert world.store.metadata(4)["parent"] in (3, "3")
    saved = world.frames(range(FRAMES))
    np.testing.assert_array_equal(saved[13:], frames[13:])


def test_closed_loop_projection_matches_the_first_frame(tmp_path, room):
    traj, frames, depth = room
    world = new_world(tmp_path, room)
    world.generate(traj, ["a room"], oracle(room), GenerateSettings(**SETTINGS))
    last = render_memory(world.memory(), traj.cameras[FRAMES - 1])
    covered = last.mask[0].numpy()
    surfaces = depth[0] > 0  # the room is open to the sky, which has no depth
    assert (covered & surfaces).sum() > 0.97 * surfaces.sum()
    # The memory blends every view into 2 cm voxels, about a pixel here, so it is compared at
    # half resolution (2x2 means, blocks fully covered).
    def half(a):
        return a.reshape(32, 2, 48, 2, -1).astype(np.float64).mean(axis=(1, 3))

    blocks = half(covered[..., None])[..., 0] == 1.0
    assert psnr(half(last.rgb[0].numpy()), half(frames[0]), blocks) > 23.0
    assert psnr(half(frames[8]), half(frames[0])) < 14.0  # what an unrelated view scores
    # exact depth in, exact depth out (up to splat size)
    err = np.abs(last.depth[0].numpy() - depth[0])[covered & (depth[0] > 0)]
    assert np.median(err) < 0.03


def test_dynamic_pixels_never_enter_the_memory(tmp_path, room):
    traj, frames, depth = room
    # A magenta "person" one metre in front of the camera, in every frame, marked dynamic.
    person = np.zeros(frames.shape[:3], dtype=bool)
    person[:, 20:50, 30:50] = True
    frames_p, depth_p = frames.copy(), depth.copy()
    frames_p[person] = (255, 0, 255)
    depth_p[person] = 1.0
    world = World.create(tmp_path / "w", width=96, height=64, voxel_size=0.02)
    world.init_from_rgbd(frames_p[0], depth_p[0], traj.cameras[0], dynamic=person[0])
    world.generate(traj, ["a room"], OracleGenerator(FrameTable(traj.cameras, frames_p, depth_p)),
                   GenerateSettings(**SETTINGS), user_masks=person)
    memory = world.memory()
    rgb = memory.rgb.numpy()
    assert not ((rgb[:, 0] > 200) & (rgb[:, 1] < 60) & (rgb[:, 2] > 200)).any()
    # no point sits where the person was: ~1 m in front of any camera, inside the box
    uv, z = traj.cameras.project(memory.xyz.numpy())
    inside = (uv[..., 0] >= 30) & (uv[..., 0] < 50) & (uv[..., 1] >= 20) & (uv[..., 1] < 50)
    assert not (inside & (np.abs(z - 1.0) < 0.1)).any()
    # the person hides the room behind it, which the memory still knows from other views
    assert len(memory) > 0.5 * len(new_world(tmp_path, room, "plain").memory())


def test_incremental_update_agrees_with_full_rebuild(tmp_path, room):
    traj, frames, depth = room
    incremental = new_world(tmp_path, room, "inc")
    incremental.generate(traj, ["a room"], oracle(room), GenerateSettings(**SETTINGS))
    rebuilt = new_world(tmp_path, room, "full")
    rebuilt.generate(traj, ["a room"], oracle(room), GenerateSettings(**SETTINGS, full_rebuild=True))
    a, b = incremental.memory(), rebuilt.memory()
    assert abs(len(a) - len(b)) <= 0.05 * len(a)
    views = traj.cameras[::4]
    ra, rb = render_memory(a, views), render_memory(b, views)
    both = (ra.mask & rb.mask).numpy()
    assert both.mean() > 0.85
    assert psnr(ra.rgb.numpy(), rb.rgb.numpy(), both) > 28.0
    assert np.median(np.abs(ra.depth.numpy()[both] - rb.depth.numpy()[both])) < 0.02


def test_reopening_continues_where_it_stopped(tmp_path, room):
    traj, frames, depth = room
    world = new_world(tmp_path, room)
    world.generate(traj[:13], ["a room"], oracle(room), GenerateSettings(**SETTINGS))
    assert world.frame_count == 13
    reopened = World.open(world.root)
    records = reopened.generate(traj, ["a room"], oracle(room), GenerateSettings(**SETTINGS))
    assert [(r["start"], r["overlap"]) for r in records] == [(8, 5), (16, 5)]
    assert reopened.frame_count == FRAMES and len(reopened.state["rounds"]) == 3
    # a trajectory that contradicts the frames already made is refused
    moved = Cameras(traj.cameras.intrinsics, traj.cameras.w2c.copy(), 96, 64)
    moved.w2c[3, 0, 3] += 0.5
    with pytest.raises(WorldError, match="differ from the frames"):
        reopened.generate(Trajectory(moved, 24.0), ["a room"], oracle(room))


def test_every_round_reports_loop_closure_and_reopening_rebuilds_the_same_view_index(tmp_path, room):
    traj, frames, depth = room
    world = new_world(tmp_path, room)
    seeded = render_memory(world.memory(), traj.cameras[:1])
    initial = psnr(seeded.rgb[0].numpy(), frames[0], seeded.mask[0].numpy())
    records = world.generate(traj, ["a room"], oracle(room), GenerateSettings(**SETTINGS))
    for record in records:  # the memory keeps what the first image showed
        closure = record["loop_closure"]
        assert closure["memory_vs_first_psnr"] > initial - 1.0 and closure["memory_vs_first_coverage"] > 0.85
    # the path ends where it began: the last frames revisit frame 0's camera and look the same
    revisits = records[-1]["loop_closure"]["revisits"]
    assert revisits and revisits[0]["earlier"] <= 1 and revisits[0]["psnr"] > 30
    assert records[0]["loop_closure"]["revisits"] == []
    # the last round retrieved frames from the index, which a reopened world rebuilds identically
    assert records[-1]["references"] and records[-1]["retrieval"] == "iou"
    live = world.view_index()
    assert sorted(live.frame_sizes) == list(range(0, FRAMES, 4))
    reopened = World.open(world.root).view_index()
    assert reopened.sets == live.sets and reopened.gone == live.gone
    assert reopened.frame_sizes == live.frame_sizes


def test_a_generator_trained_on_reference_retrieval_gets_it(tmp_path, room):
    traj, frames, depth = room

    class ReferenceOracle(OracleGenerator):
        retrieval_scoring = "reference"  # as spatia-5b

    world = new_world(tmp_path, room)
    records = world.generate(traj, ["a room"], ReferenceOracle(FrameTable(traj.cameras, frames, depth)),
                             GenerateSettings(**SETTINGS))
    assert [r["retrieval"] for r in records] == ["reference"] * 3 and records[-1]["references"]
    again = new_world(tmp_path, room, "iou")
    chosen = again.generate(traj, ["a room"], ReferenceOracle(FrameTable(traj.cameras, frames, depth)),
                            GenerateSettings(**SETTINGS, retrieval="iou"))
    assert chosen[-1]["retrieval"] == "iou"
    with pytest.raises(WorldError, match="retrieval must be one of"):
        new_world(tmp_path, room, "bad").generate(traj, ["a room"], oracle(room), GenerateSettings(**SETTINGS, retrieval="best"))


class PosedStandIn(DepthEstimator):
    """A stand-in for MapAnything (not the model): exact depth looked up from the rendered
    room, and a record of every call, to check what the posed rebuild asks of the model."""

    name = "map-anything stand-in"
    takes_poses = True

    def __init__(self, table):
        self.table, self.calls = table, []

    @property
    def requirements(self):
        return ModelRequirements()

    def check_available(self):
        return None

    def estimate(self, images, intrinsics=None, w2c=None):
        self.calls.append({"images": images.copy(), "intrinsics": np.asarray(intrinsics), "w2c": np.asarray(w2c)})
        _, depth = self.table(Cameras(intrinsics, w2c, 96, 64))
        return DepthResult(depth.astype(np.float32), np.asarray(intrinsics, np.float64), np.ones_like(depth, np.float32))


def test_the_papers_posed_rebuild_sees_every_frame_so_far_with_its_known_pose(tmp_path, room):
    traj, frames, depth = room
    world = new_world(tmp_path, room)
    model = PosedStandIn(FrameTable(traj.cameras, frames, depth))
    settings = GenerateSettings(**SETTINGS, update_mode="mapanything-rebuild")
    records = world.generate(traj, ["a room"], oracle(room), settings, depth_estimator=model)
    grid = [list(range(0, end, 2)) for end in (13, 21, 25)]  # update_fps 12 at 24 fps: every other frame
    assert len(model.calls) == 3
    for call, wanted in zip(model.calls, grid):
        np.testing.assert_allclose(call["w2c"], traj.cameras.w2c[wanted], atol=1e-6)
        np.testing.assert_allclose(call["intrinsics"], traj.cameras.intrinsics[wanted])
        np.testing.assert_array_equal(call["images"][0], frames[0])  # the first image is always in
        np.testing.assert_array_equal(call["images"][1:], np.stack([world.frames([g])[0] for g in wanted[1:]]))
    memory = world.memory()
    assert memory.voxel_size == 0.01 and len(memory) > 1000
    assert records[-1]["references"]  # the view index was rebuilt for the new ids
    assert World.open(world.root).view_index().frame_sizes == world.view_index().frame_sizes
    with pytest.raises(WorldError, match="takes known poses"):
        new_world(tmp_path, room, "other").generate(traj, ["a room"], oracle(room), settings)


def test_cancel_leaves_the_world_as_it_was(tmp_path, room):
    traj, frames, depth = room
    world = new_world(tmp_path, room)
    world.generate(traj[:13], ["a room"], oracle(room), GenerateSettings(**SETTINGS))
    state = json.loads((world.root / "world.json").read_text())
    calls = []

    def cancel_during_second_round():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        world.generate(traj, ["a room"], oracle(room), GenerateSettings(**SETTINGS),
                       should_cancel=cancel_during_second_round)
    assert json.loads((world.root / "world.json").read_text()) == state
    assert not list((world.root / "rounds").glob("*.partial"))
    assert World.open(world.root).frame_count == 13
    # a crash leaves a partial round folder: opening only reads, recover() clears it
    (world.root / "rounds" / "0001.partial").mkdir()
    assert (world.root / "rounds" / "0001.partial").exists() and World.open(world.root)
    World.open(world.root).recover()
    assert not list((world.root / "rounds").glob("*.partial"))


def test_estimated_depth_with_a_scale_error_is_aligned_to_the_memory(tmp_path, room):
    """A depth model that is 30% off: fitted to the memory, the update stays metric."""
    from spatia.engine.models.base import DepthEstimator, DepthResult, GenerationResult, ModelRequirements

    traj, frames, depth = room
    table = FrameTable(traj.cameras, frames, depth)

    class FramesOnly(OracleGenerator):  # a generator that knows no depth, like a diffusion model
        def generate(self, request, progress=None, should_cancel=None):
            return GenerationResult(frames=super().generate(request).frames)

    class ScaledDepth(DepthEstimator):
        name = "scaled"
        requirements = ModelRequirements()

        def check_available(self):
            return None

        def estimate(self, images, intrinsics=None):
            index = [int(np.argmin(np.abs(frames.astype(int) - im.astype(int)).reshape(len(frames), -1).sum(1)))
                     for im in images]
            d = depth[index] * 1.3
            return DepthResult(d.astype(np.float32), np.asarray(intrinsics), (d > 0).astype(np.float32))

    world = new_world(tmp_path, room)
    records = world.generate(traj, ["a room"], FramesOnly(table), GenerateSettings(**SETTINGS),
                             depth_estimator=ScaledDepth())
    scales = [a["scale"] for r in records for a in r["update"]["alignment"] if a["fitted"]]
    assert scales and all(abs(s - 1 / 1.3) < 0.02 for s in scales)
    views = render_memory(world.memory(), traj.cameras[::6])
    known = (views.mask.numpy() & (depth[::6] > 0))
    assert np.median(np.abs(views.depth.numpy() - depth[::6])[known]) < 0.03
