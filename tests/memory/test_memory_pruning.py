import numpy as np
import pytest
import torch

from spatia.cameras import Cameras
from spatia.memory import BYTES_PER_POINT, MemoryFormatError, SpatialMemory, apply_budget, budget_score, carve


def camera_at_origin() -> Cameras:
    """Looking down +z with the identity pose, 8x6 pixels, fx = fy = 4, principal point (4, 3)."""
    return Cameras(np.array([4.0, 4.0, 4.0, 3.0]), np.eye(4), 8, 6)


POINTS = {
    "seen_through": [0.0, 0.0, 2.0],  # the camera sees a wall at 5 m through it
    "behind_wall": [0.0, 0.0, 6.0],
    "within_margin": [0.0, 0.0, 4.9],  # 5 - 4.9 < 0.05 + 0.02 * 4.9
    "out_of_view": [100.0, 0.0, 2.0],
    "behind_camera": [0.0, 0.0, -2.0],
}


def memory_of(points: dict) -> SpatialMemory:
    return SpatialMemory.from_points(np.array(list(points.values())), voxel_size=0.1)


def names_left(memory: SpatialMemory) -> set:
    names = list(POINTS)
    return {names[i] for i in memory.point_id.tolist()}


@pytest.mark.parametrize("window", [0, 1])
def test_carve_removes_only_points_seen_through(window):
    carved, removed = carve(memory_of(POINTS), np.full((1, 6, 8), 5.0), camera_at_origin(),
                            margin_abs=0.05, margin_rel=0.02, window=window)
    assert removed == 1
    assert names_left(carved) == set(POINTS) - {"seen_through"}


def test_carve_ignores_invalid_depth_and_masked_pixels():
    # (0, 0, 2) projects to u = 4, v = 3: pixel column 4, row 3.
    depth = np.full((1, 6, 8), 5.0)
    depth[0, 3, 4] = np.nan
    _, removed = carve(memory_of(POINTS), depth, camera_at_origin(), margin_abs=0.05, margin_rel=0.02, window=0)
    assert removed == 0
    valid = np.ones((1, 6, 8), bool)
    valid[0, 3, 4] = False
    _, removed = carve(memory_of(POINTS), np.full((1, 6, 8), 5.0), camera_at_origin(), margin_abs=0.05,
                       margin_rel=0.02, valid=valid, window=0)
    assert removed == 0


def test_carve_window_spares_points_next_to_a_silhouette():
    depth = np.full((1, 6, 8), 5.0)
    depth[0, 3, 3] = 2.0  # a foreground object's edge beside the point's pixel
    kwargs = dict(margin_abs=0.05, margin_rel=0.02)
    assert carve(memory_of(POINTS), depth, camera_at_origin(), window=0, **kwargs)[1] == 1
    assert carve(memory_of(POINTS), depth, camera_at_origin(), window=1, **kwargs)[1] == 0


def test_carve_uses_every_view_and_keeps_ids():
    second = Cameras(np.array([4.0, 4.0, 4.0, 3.0]), np.diag([-1.0, 1.0, -1.0, 1.0]), 8, 6)  # looking down -z
    cameras = camera_at_origin().concat(second)
    depth = np.stack([np.full((6, 8), 1.0), np.full((6, 8), 5.0)])  # first view: wall in front of everything
    carved, removed = carve(memory_of(POINTS), depth, cameras, margin_abs=0.05, margin_rel=0.02)
    assert removed == 1
    assert names_left(carved) == set(POINTS) - {"behind_camera"}


def test_carve_validates_shapes_and_margins():
    with pytest.raises(MemoryFormatError, match="depth must have shape \\[1, 6, 8\\]"):
        carve(memory_of(POINTS), np.ones((6, 8)), camera_at_origin(), margin_abs=0.1, margin_rel=0.0)
    with pytest.raises(MemoryFormatError, match="non-negative"):
        carve(memory_of(POINTS), np.ones((1, 6, 8)), camera_at_origin(), margin_abs=-0.1, margin_rel=0.0)


def ranked_memory() -> SpatialMemory:
    memory = SpatialMemory.from_points(np.arange(30.0).reshape(10, 3), conf=np.arange(1.0, 11.0), voxel_size=0.5)
    return memory


def test_budget_keeps_the_most_confident_points():
    kept = apply_budget(ranked_memory(), max_points=3)
    assert sorted(kept.conf.tolist()) == [8.0, 9.0, 10.0]
    assert sorted(kept.point_id.tolist()) == [7, 8, 9]
    assert apply_budget(ranked_memory(), max_bytes=4 * BYTES_PER_POINT + 5).point_id.tolist() == [6, 7, 8, 9]
    assert len(apply_budget(ranked_memory(), max_points=20)) == 10


def test_budget_prefers_recent_points_of_equal_confidence():
    memory = SpatialMemory.from_points(np.zeros((4, 3)), conf=[2.0, 2.0, 2.0, 2.0], voxel_size=0.5)
    memory = memory.replace(last_frame=torch.tensor([0, 480, 240, 480], dtype=torch.int32))
    score = budget_score(memory, half_life_frames=240)
    assert score.tolist() == [0.5, 2.0, 1.0, 2.0]
    assert apply_budget(memory, max_points=2, half_life_frames=240).point_id.tolist() == [1, 3]
    assert apply_budget(memory, max_points=3, half_life_frames=240).point_id.tolist() == [1, 2, 3]


def test_budget_coarsens_when_far_over_the_cap():
    grid = np.stack(np.meshgrid(np.arange(64), np.arange(64), indexing="ij"), -1).reshape(-1, 2) * 0.01 + 0.005
    xyz = np.concatenate([grid, np.zeros((len(grid), 1))], 1)
    memory = SpatialMemory.from_points(xyz, voxel_size=0.01)
    kept = apply_budget(memory, max_points=100)
    # 4096 -> 0.02: 1024 -> 0.04: 256 (<= 4 * 100), then the 100 best.
    assert kept.voxel_size == 0.04
    assert len(kept) == 100
    assert set(kept.point_id.tolist()) <= set(range(4096))
    assert kept.conf.tolist() == [16.0] * 100  # each coarse point carries its 16 fine points' support


def test_carving_keeps_the_voxel_index_consistent():
    memory = memory_of(POINTS)
    memory.voxel_index()
    carved, _ = carve(memory, np.full((1, 6, 8), 5.0), camera_at_origin(), margin_abs=0.05, margin_rel=0.02)
    cached = carved.voxel_index()
    rebuilt = type(cached).build(carved.xyz, carved.side, carved.voxel_size)
    assert torch.equal(cached.keys, rebuilt.keys)
    assert torch.equal(carved.point_id[cached.order], carved.point_id[rebuilt.order])
