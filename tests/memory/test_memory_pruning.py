import numpy as np
import pytest
import torch

from spatia.cameras import Cameras
from spatia.engine.memory import (
    BYTES_PER_POINT, RANK_GENERATED, RANK_USER, MemoryFormatError, SpatialMemory, apply_budget, budget_score, carve, coarsen_to_budget, merge,
)


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


def plane(n: int, spacing: float, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    grid = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2) * spacing + spacing / 2
    return np.concatenate([grid, np.zeros((len(grid), 1))], 1) + np.asarray(origin)


def occupied_cells(xyz, cell: float) -> set:
    return set(map(tuple, np.floor(np.asarray(xyz) / cell).astype(np.int64).tolist()))


def test_budget_merges_cells_and_never_forgets_a_place():
    xyz = np.concatenate([plane(64, 0.01), [[5.0, 5.0, 5.0]]])  # a dense patch and one lone point
    memory = SpatialMemory.from_points(xyz, voxel_size=0.01, rank=RANK_GENERATED)
    kept, merges = coarsen_to_budget(memory, 100)
    assert len(kept) <= 100
    # every 16 cm region that held points still holds one; the lone point is still there
    assert occupied_cells(kept.xyz.numpy(), 0.16) == occupied_cells(xyz, 0.16)
    assert ((kept.xyz.numpy() - [5.0, 5.0, 5.0]) ** 2).sum(1).min() < 1e-9
    # support is merged, not lost; merges name ids that are gone and survivors that remain
    assert float(kept.conf.sum()) == pytest.approx(len(xyz))
    assert len(merges) == len(memory) - len(kept)
    assert not set(merges.ids.tolist()) & set(kept.point_id.tolist())
    assert set(merges.into.tolist()) <= set(kept.point_id.tolist())
    assert apply_budget(memory, max_points=100).point_id.tolist() == kept.point_id.tolist()
    # survivors keep the memory's row order (a version stays a small delta of its parent) ...
    order = memory.indices_of(kept.point_id)
    assert bool((order[1:] > order[:-1]).all())
    # ... and the cached cell index matches one built from scratch
    cached = kept.voxel_index()
    rebuilt = type(cached).build(kept.xyz, kept.side, kept.voxel_size, kept.level)
    assert torch.equal(cached.keys, rebuilt.keys)
    assert torch.equal(kept.point_id[cached.order], kept.point_id[rebuilt.order])
    assert len(apply_budget(memory, max_points=10_000)) == len(memory)


def test_budget_merges_far_and_rarely_seen_points_first():
    near = SpatialMemory.from_points(plane(16, 0.01), conf=np.full(256, 10.0), voxel_size=0.01, rank=RANK_GENERATED)
    far = SpatialMemory.from_points(plane(16, 0.08, origin=(3.0, 0.0, 0.0)), voxel_size=0.01, first_id=256,
                                    rank=RANK_GENERATED)
    far = far.replace(level=torch.full((256,), 3, dtype=torch.uint8))  # cells of 8 cm: seen from afar
    memory = merge(near, far)
    kept, _ = coarsen_to_budget(memory, 400)
    assert len(kept) <= 400
    assert set(range(256)) <= set(kept.point_id.tolist())  # the near, well-seen patch is untouched


def test_budget_never_merges_the_users_pinned_points():
    pinned = SpatialMemory.from_points(plane(64, 0.002), voxel_size=0.01)  # many user points per cell
    generated = SpatialMemory.from_points(plane(64, 0.01, origin=(2.0, 0.0, 0.0)), voxel_size=0.01, first_id=4096,
                                          rank=RANK_GENERATED)
    memory = merge(pinned, generated)
    kept, merges = coarsen_to_budget(memory, 4096 + 100)
    assert len(kept) <= 4096 + 100
    users = kept.rank == RANK_USER
    assert int(users.sum()) == 4096
    np.testing.assert_array_equal(kept.xyz[users].numpy(), pinned.xyz.numpy())
    assert not set(merges.ids.tolist()) & set(range(4096))
    # a budget below what the user gave keeps all of it (and one point per place of the rest)
    assert int((apply_budget(memory, max_points=10).rank == RANK_USER).sum()) == 4096


def test_budget_stays_above_the_cap_rather_than_drop_a_place():
    xyz = np.arange(10)[:, None] * np.array([[10.0, 0.0, 0.0]])  # ten points 10 m apart: nothing to merge
    memory = SpatialMemory.from_points(xyz, voxel_size=0.01)
    kept = apply_budget(memory, max_points=3)
    assert sorted(kept.point_id.tolist()) == list(range(10))
    assert apply_budget(memory, max_bytes=4 * BYTES_PER_POINT).point_id.tolist() == list(range(10))


def test_budget_score_decays_with_age_and_level():
    memory = SpatialMemory.from_points(np.zeros((4, 3)), conf=[2.0, 2.0, 2.0, 2.0], voxel_size=0.5)
    memory = memory.replace(last_frame=torch.tensor([0, 480, 240, 480], dtype=torch.int32),
                            level=torch.tensor([0, 0, 0, 1], dtype=torch.uint8))
    assert budget_score(memory, half_life_frames=240).tolist() == pytest.approx([0.5, 2.0, 1.0, 2 ** 0.5])


def test_carving_keeps_the_voxel_index_consistent():
    memory = memory_of(POINTS)
    memory.voxel_index()
    carved, _ = carve(memory, np.full((1, 6, 8), 5.0), camera_at_origin(), margin_abs=0.05, margin_rel=0.02)
    cached = carved.voxel_index()
    rebuilt = type(cached).build(carved.xyz, carved.side, carved.voxel_size)
    assert torch.equal(cached.keys, rebuilt.keys)
    assert torch.equal(carved.point_id[cached.order], carved.point_id[rebuilt.order])
