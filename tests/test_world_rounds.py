"""How a world assembles each round's request: the seed, the memory's points for the control
render, a short last round padded to the full round length (for generators trained on full
rounds) and cropped, and round 0's first frame for a world seeded from points. CPU, no Blender."""

import numpy as np
import pytest

from spatia.cameras import Cameras, Trajectory
from spatia.engine.memory import SpatialMemory, save_snapshot
from spatia.engine.memory_map import map_points
from spatia.engine.models.preview import PreviewGenerator
from spatia.engine.render import control_voxel_size, render_control, voxel_downsample
from spatia.engine.world import GenerateSettings, World

W, H, FRAMES = 64, 48, 17
SETTINGS = dict(first_round_frames=9, round_frames=9, overlap=3, update_fps=6.0)  # rounds 0-9, 6-15, 12-17


class Recording(PreviewGenerator):
    def __init__(self, pads: bool):
        super().__init__(workers=1)
        self.pads_short_rounds = pads
        self.requests = []

    def generate(self, request, progress=None, should_cancel=None):
        self.requests.append(request)
        return super().generate(request, progress, should_cancel)


def box_points(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform([-2, -2, 3], [2, 2, 3.2], (n, 3)).astype(np.float32)
    return xyz, rng.integers(0, 256, (n, 3), dtype=np.uint8)


@pytest.fixture()
def seeded_world(tmp_path):
    xyz, rgb = box_points()
    path = save_snapshot(tmp_path / "points.safetensors", SpatialMemory.from_points(xyz, rgb, voxel_size=0.02))
    world = World.create(tmp_path / "w", width=W, height=H, voxel_size=0.02)
    world.init_from_points(path)
    eye = np.stack([np.linspace(-0.3, 0.3, FRAMES), np.zeros(FRAMES), np.zeros(FRAMES)], axis=1)
    cams = Cameras.look_at(eye, eye + [0, 0, 1], up=(0, -1, 0), width=W, height=H, fov_x_deg=60)
    return world, Trajectory(cams, fps=24.0)


def test_a_short_last_round_is_padded_with_its_last_camera_and_cropped(seeded_world):
    world, traj = seeded_world
    gen = Recording(pads=True)
    records = world.generate(traj, ["a wall"], gen, GenerateSettings(seed=7, **SETTINGS))
    assert [(r["start"], r["end"]) for r in records] == [(0, 9), (6, 15), (12, 17)]
    last = gen.requests[-1]
    assert last.num_frames == 9  # 5 frames of the round + 4 repeats of its last camera, as the reference
    np.testing.assert_array_equal(last.cameras.w2c[5:], np.repeat(traj.cameras.w2c[16:17], 4, axis=0))
    np.testing.assert_array_equal(last.projection[5:], np.repeat(last.projection[4:5], 4, axis=0))
    assert world.frame_count == FRAMES and len(world.cameras()) == FRAMES  # the repeats were cropped
    unpadded = Recording(pads=False)
    world2 = World.create(world.root.parent / "w2", width=W, height=H, voxel_size=0.02)
    world2.init_from_points(world.root.parent / "points.safetensors")
    world2.generate(traj, ["a wall"], unpadded, GenerateSettings(seed=7, **SETTINGS))
    assert unpadded.requests[-1].num_frames == 5


def test_every_round_gets_the_same_seed_and_the_memory_as_the_references_map(seeded_world):
    world, traj = seeded_world
    gen = Recording(pads=True)
    world.generate(traj, ["a wall"], gen, GenerateSettings(seed=7, **SETTINGS))
    assert [r.seed for r in gen.requests] == [7, 7, 7]
    assert [r.round_index for r in gen.requests] == [0, 1, 2]
    for i, request in enumerate(gen.requests):
        memory = world.memory(i + 1)  # the version the round rendered (version 1 is the seed)
        # the memory averaged per 1 cm voxel, as the reference's map build leaves it
        xyz, rgb = map_points(memory)
        assert request.points_xyz.dtype == np.float32 and 0 < len(request.points_xyz) <= len(memory)
        np.testing.assert_array_equal(request.points_xyz, xyz)
        np.testing.assert_array_equal(request.points_rgb, rgb)


def test_seed_can_change_per_round_when_asked(seeded_world):
    world, traj = seeded_world
    gen = Recording(pads=False)
    world.generate(traj, ["a wall"], gen, GenerateSettings(seed=7, seed_per_round=True, **SETTINGS))
    assert [r.seed for r in gen.requests] == [7, 8, 9]


def test_a_world_seeded_from_points_starts_from_the_control_render(seeded_world):
    world, traj = seeded_world
    gen = Recording(pads=False)
    memory = world.memory()
    world.generate(traj[:9], ["a wall"], gen, GenerateSettings(**SETTINGS))
    first = gen.requests[0].first_frame
    assert first is not None and first.shape == (H, W, 3) and first.dtype == np.uint8
    xyz, rgb = voxel_downsample(memory.xyz, memory.rgb, control_voxel_size(0))
    expected, _ = render_control(xyz, rgb, traj.cameras[:1]).to_uint8()
    np.testing.assert_array_equal(first, expected[0])
    assert first.any()


class FlatDepth:
    """A depth estimator that says every pixel is 3.1 m away (the seeded wall's depth)."""

    name = "flat"

    def check_available(self):
        pass

    def estimate(self, images, intrinsics=None):
        from spatia.engine.models.base import DepthResult

        f, h, w = images.shape[:3]
        return DepthResult(np.full((f, h, w), 3.1, np.float32), np.asarray(intrinsics, np.float64).reshape(f, 4),
                           np.ones((f, h, w), np.float32))


@pytest.mark.slow
def test_spatia_5b_in_a_world_gets_the_control_render_full_rounds_and_one_seed(tmp_path):
    import torch

    from spatia.engine.models.gpu import RuntimeOptions
    from spatia.engine.models.spatia import SpatiaGenerator
    from spatia.engine.models.spatia.tiny import tiny_spatia_pipeline

    xyz, rgb = box_points(4000)
    path = save_snapshot(tmp_path / "points.safetensors", SpatialMemory.from_points(xyz, rgb, voxel_size=0.02))
    world = World.create(tmp_path / "w", width=32, height=32, voxel_size=0.02)
    world.init_from_points(path)
    eye = np.stack([np.linspace(-0.2, 0.2, 14), np.zeros(14), np.zeros(14)], axis=1)
    traj = Trajectory(Cameras.look_at(eye, eye + [0, 0, 1], up=(0, -1, 0), width=32, height=32, fov_x_deg=60), fps=24.0)
    pipe = tiny_spatia_pipeline()
    frames_seen = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: frames_seen.append(kwargs["control_latents"].shape[2]), with_kwargs=True)
    try:
        records = world.generate(traj, ["a wall"], SpatiaGenerator(pipeline=pipe, runtime=RuntimeOptions(device="cpu")),
                                 GenerateSettings(seed=5, steps=1, guidance=1.0, first_round_frames=9, round_frames=9,
                                                  overlap=3, update_fps=6.0), depth_estimator=FlatDepth())
    finally:
        hook.remove()
    assert [(r["start"], r["end"]) for r in records] == [(0, 9), (6, 14)]
    info = [r["generator_info"] for r in records]
    assert [i["control"] for i in info] == ["render_control"] * 2
    assert [i["control_voxel_size"] for i in info] == pytest.approx([0.01, 0.015])
    assert [r["seed"] for r in records] == [5, 5]
    assert frames_seen == [3, 3]  # both rounds at the full 9 frames (3 latent frames): the short one was padded
    assert world.frame_count == 14
    assert torch.is_tensor(world.memory().xyz)


def test_a_short_round_retrieves_over_its_padded_cameras_and_keeps_every_assigned_reference(seeded_world):
    """As the reference: the targets are sampled (2 fps) from the padded round, and a target whose
    best frame shares nothing still gets one, so the model gets as many references as targets."""
    world, traj = seeded_world
    slow = Trajectory(traj.cameras, fps=4.0)  # at 4 fps every frame is indexed and every other one a target
    for pads, targets in ((True, 5), (False, 3)):
        gen = Recording(pads=pads)
        gen.retrieval_scoring = "reference"  # as spatia-5b
        fresh = World.create(world.root.parent / f"pads-{pads}", width=W, height=H, voxel_size=0.02, fps=4.0)
        fresh.init_from_points(world.root.parent / "points.safetensors")
        records = fresh.generate(slow, ["a wall"], gen, GenerateSettings(seed=7, **SETTINGS))
        last, request = records[-1], gen.requests[-1]
        assert last["retrieval"] == "reference" and (last["start"], last["end"]) == (12, 17)
        assert len(last["references"]) == len(request.references) == targets
        assert all(frame < 12 for frame in last["references"])
