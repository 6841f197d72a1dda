"""Initialising a world: from RGB + depth, from a point cloud (PLY or snapshot), and the
errors that protect a world from bad input."""

import numpy as np
import pytest

from spatia.cameras import Cameras
from spatia.engine.memory import SpatialMemory, export_ply, save_snapshot
from spatia.engine.world import World, WorldError


def plane_view(width=32, height=24, depth=2.0):
    cam = Cameras([30.0, 30.0, width / 2, height / 2], np.eye(4), width, height)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = 200
    return cam, rgb, np.full((height, width), depth, np.float32)


def test_init_from_rgbd_back_projects_every_pixel_to_its_depth(tmp_path):
    cam, rgb, depth = plane_view()
    world = World.create(tmp_path / "w", width=32, height=24, voxel_size=0.01)
    assert world.init_from_rgbd(rgb, depth, cam) == 1
    memory = world.memory()
    assert np.allclose(memory.xyz[:, 2].numpy(), 2.0)
    assert (memory.rgb[:, 0] == 200).all()
    np.testing.assert_array_equal(world.first_frame(), rgb)
    with pytest.raises(WorldError, match="already initialised"):
        world.init_from_rgbd(rgb, depth, cam)


@pytest.mark.parametrize("suffix", [".ply", ".safetensors"])
def test_init_from_points_keeps_the_cloud(tmp_path, suffix):
    rng = np.random.default_rng(1)
    source = SpatialMemory.from_points(rng.normal(size=(500, 3)).astype(np.float32),
                                       rng.integers(0, 256, (500, 3)).astype(np.uint8), voxel_size=0.05)
    path = tmp_path / f"cloud{suffix}"
    export_ply(source, path) if suffix == ".ply" else save_snapshot(path, source)
    world = World.create(tmp_path / "w", width=32, height=24, voxel_size=0.05)
    world.init_from_points(path)
    memory = world.memory()
    np.testing.assert_array_equal(memory.xyz.numpy(), source.xyz.numpy())
    np.testing.assert_array_equal(memory.rgb.numpy(), source.rgb.numpy())


def test_bad_inputs_name_the_problem_and_leave_the_world_untouched(tmp_path):
    cam, rgb, depth = plane_view()
    world = World.create(tmp_path / "w", width=32, height=24)
    with pytest.raises(WorldError, match="uint8 \\[24, 32, 3\\]"):
        world.init_from_rgbd(rgb[:10], depth, cam)
    with pytest.raises(WorldError, match="one camera of 32x24"):
        world.init_from_rgbd(rgb, depth, cam.resized(64, 48))
    with pytest.raises(WorldError, match="expected a .ply or .safetensors"):
        world.init_from_points(tmp_path / "points.xyz")
    with pytest.raises(WorldError, match="no memory yet"):
        world.memory()
    assert World.open(world.root).memory_version is None
    with pytest.raises(WorldError, match="already holds a world"):
        World.create(tmp_path / "w", width=32, height=24)
    with pytest.raises(WorldError, match="not a world"):
        World.open(tmp_path)
