import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spatia.cameras import Cameras
from spatia.engine.memory import (
    MemoryFormatError,
    SpatialMemory,
    VoxelRangeError,
    coarsen,
    fuse,
    fuse_points,
    points_from_depth,
    refine,
)
from spatia.engine.memory.voxels import point_keys

PLUS_X, MINUS_X, PLUS_Z = 0, 1, 4
TOWARD_MINUS_Z = np.array([[0.0, 0.0, -1.0]])  # viewing ray pointing down: side +z


def test_same_point_twice_becomes_one_point_with_summed_conf():
    memory = SpatialMemory.empty(0.5)
    for frame in (3, 7):
        memory = fuse(memory, [[0.25, 0.25, 0.25]], [[10, 20, 30]], [2.0], frame=frame, view_dirs=TOWARD_MINUS_Z)
    assert len(memory) == 1
    assert memory.point_id.tolist() == [0] and memory.next_id == 1
    assert memory.conf.tolist() == [4.0]
    assert memory.first_frame.tolist() == [3] and memory.last_frame.tolist() == [7]
    assert memory.side.tolist() == [PLUS_Z]


def test_merge_is_the_confidence_weighted_mean():
    memory = fuse(SpatialMemory.empty(1.0), [[0.25, 0.5, 0.125]], [[10, 20, 30]], [1.0], frame=0, view_dirs=TOWARD_MINUS_Z)
    memory = fuse(memory, [[0.5, 0.25, 0.625]], [[30, 40, 50]], [3.0], frame=1, view_dirs=TOWARD_MINUS_Z)
    # (0.25*1 + 0.5*3)/4 = 0.4375, (0.5 + 0.75)/4 = 0.3125, (0.125 + 1.875)/4 = 0.5
    assert memory.xyz.tolist() == [[0.4375, 0.3125, 0.5]]
    assert memory.rgb.tolist() == [[25, 35, 45]]
    assert memory.conf.tolist() == [4.0]


def test_new_points_in_one_voxel_merge_among_themselves_first():
    xyz = [[0.1, 0.1, 0.1], [0.3, 0.3, 0.3], [1.5, 0.1, 0.1]]
    memory = fuse(SpatialMemory.empty(1.0), xyz, [[0, 0, 0], [100, 100, 100], [7, 7, 7]], frame=2,
                  view_dirs=np.repeat(TOWARD_MINUS_Z, 3, 0))
    assert len(memory) == 2 and memory.next_id == 2
    by_x = memory.xyz[:, 0].argsort()
    np.testing.assert_allclose(memory.xyz[by_x].numpy(), [[0.2, 0.2, 0.2], [1.5, 0.1, 0.1]], rtol=1e-6)
    assert memory.rgb[by_x].tolist() == [[50, 50, 50], [7, 7, 7]]
    assert memory.conf[by_x].tolist() == [2.0, 1.0]
    assert sorted(memory.point_id.tolist()) == [0, 1]


def test_points_in_new_voxels_get_fresh_ids_and_old_points_keep_theirs():
    memory = fuse(SpatialMemory.empty(1.0), [[0.5, 0.5, 0.5]], [[1, 1, 1]], frame=0, view_dirs=TOWARD_MINUS_Z)
    memory = fuse(memory, [[0.6, 0.5, 0.5], [5.5, 0.5, 0.5]], [[1, 1, 1], [2, 2, 2]], frame=1,
                  view_dirs=np.repeat(TOWARD_MINUS_Z, 2, 0))
    assert memory.point_id.tolist() == [0, 1]
    assert memory.first_frame.tolist() == [0, 1] and memory.last_frame.tolist() == [1, 1]
    assert memory.xyz[1].tolist() == [5.5, 0.5, 0.5]


def test_zero_confidence_points_are_ignored():
    memory = fuse(SpatialMemory.empty(1.0), [[0.5, 0.5, 0.5], [3.5, 0.5, 0.5]], [[1, 1, 1]] * 2, [0.0, 1.0],
                  frame=0, view_dirs=np.repeat(TOWARD_MINUS_Z, 2, 0))
    assert memory.xyz.tolist() == [[3.5, 0.5, 0.5]]


def test_fuse_rejects_bad_input():
    empty = SpatialMemory.empty(1.0)
    with pytest.raises(MemoryFormatError, match="NaN or infinite"):
        fuse(empty, [[np.nan, 0, 0]], [[0, 0, 0]], frame=0, view_dirs=TOWARD_MINUS_Z)
    with pytest.raises(MemoryFormatError, match="rgb must have shape \\[1, 3\\]"):
        fuse(empty, [[0, 0, 0]], [[0, 0]], frame=0, view_dirs=TOWARD_MINUS_Z)
    with pytest.raises(MemoryFormatError, match="needs view_dirs"):
        fuse(empty, [[0, 0, 0]], [[0, 0, 0]], frame=0)
    with pytest.raises(VoxelRangeError, match="larger voxel size"):
        fuse(SpatialMemory.empty(1e-3), [[1e4, 0, 0]], [[0, 0, 0]], frame=0, view_dirs=TOWARD_MINUS_Z)


def look_along(eye, forward, up, width=40, height=30, fov=60.0) -> Cameras:
    return Cameras.look_at([eye], [np.add(eye, forward)], up=up, fov_x_deg=fov, width=width, height=height)


def test_thin_wall_seen_from_both_sides_stays_two_surfaces():
    voxel = 0.1
    gap = 0.3 * voxel  # face A at x = 0, face B at x = 0.03: closer than a voxel
    front = look_along([-2.0, 0.0, 0.0], [1, 0, 0], (0, 0, 1))
    back = look_along([2.0, 0.0, 0.0], [-1, 0, 0], (0, 0, 1))
    rgb = np.zeros((1, 30, 40, 3), np.uint8)
    seen_front = points_from_depth(np.full((1, 30, 40), 2.0), rgb, front, frames=[0])
    seen_back = points_from_depth(np.full((1, 30, 40), 2.0 - gap), rgb + 255, back, frames=[1])
    assert set(seen_front.side.tolist()) == {MINUS_X} and set(seen_back.side.tolist()) == {PLUS_X}

    only_front = fuse_points(SpatialMemory.empty(voxel), seen_front)
    only_back = fuse_points(SpatialMemory.empty(voxel), seen_back)
    both = fuse_points(only_front, seen_back)
    assert len(both) == len(only_front) + len(only_back)
    x = both.xyz[:, 0]
    on_a, on_b = x.abs() < 1e-5, (x - gap).abs() < 1e-5
    assert bool((on_a | on_b).all())  # nothing smeared in between
    assert bool((both.rgb[on_a] == 0).all()) and bool((both.rgb[on_b] == 255).all())
    assert both.side[on_a].unique().tolist() == [MINUS_X] and both.side[on_b].unique().tolist() == [PLUS_X]

    # Control: with the same side bin the two faces would be averaged into one layer.
    same_side = fuse(only_front, seen_back.xyz, seen_back.rgb, frame=1, side=seen_front.side[: len(seen_back)])
    assert len(same_side) < len(both)


def floor_depth(cameras: Cameras) -> np.ndarray:
    """Exact z-depth of the plane z = 0 for each pixel (inf where the ray misses it)."""
    u = np.arange(cameras.width) + 0.5
    v = np.arange(cameras.height) + 0.5
    fx, fy, cx, cy = cameras.intrinsics[0]
    rays = np.stack(np.broadcast_arrays((u[None] - cx) / fx, (v[:, None] - cy) / fy, 1.0), -1) @ cameras.c2w[0, :3, :3].T
    with np.errstate(divide="ignore"):
        t = -cameras.centers[0, 2] / rays[..., 2]
    return np.where(t > 0, t, np.inf)[None]


def test_a_floor_seen_at_grazing_angles_from_two_headings_keeps_one_side():
    # Looking along +x and along +y, 30 degrees down: the view rays differ, the floor normal does not.
    views = [look_along([0.0, 0.0, 1.0], forward, (0, 0, 1)) for forward in ([1, 0, -0.58], [0, 1, -0.58])]
    memory = SpatialMemory.empty(0.2)
    for frame, cameras in enumerate(views):
        depth = floor_depth(cameras)
        points = points_from_depth(depth, np.zeros((1, 30, 40, 3), np.uint8), cameras, frames=[frame])
        assert len(points) == np.isfinite(depth).sum()
        assert set(points.side.tolist()) == {PLUS_Z}
        memory = fuse_points(memory, points)
    assert set(memory.side.tolist()) == {PLUS_Z}
    assert int((memory.last_frame == 1).sum()) > int((memory.first_frame == 1).sum())  # second view re-hit voxels


def test_points_from_depth_matches_unproject_and_masks():
    cameras = Cameras.look_at([[0.3, -0.2, -3.0], [1.0, 0.5, -2.5]], [0, 0, 0], up=(0, -1, 0), width=16, height=12)
    rng = np.random.default_rng(1)
    depth = rng.uniform(1.0, 4.0, (2, 12, 16))
    depth[0, 0, 0], depth[0, 1, 1], depth[1, 2, 2] = np.nan, -1.0, np.inf
    exclude = np.zeros((2, 12, 16), bool)
    exclude[1, 5, :] = True
    rgb = rng.integers(0, 256, (2, 12, 16, 3), dtype=np.uint8)
    points = points_from_depth(depth, rgb, cameras, exclude=exclude, frames=[40, 41])

    valid = np.isfinite(depth) & (depth > 0) & ~exclude
    assert len(points) == valid.sum() == 2 * 12 * 16 - 3 - 16
    np.testing.assert_allclose(points.xyz.numpy(), cameras.unproject(np.where(valid, depth, 1.0))[valid], atol=1e-5)
    np.testing.assert_array_equal(points.rgb.numpy(), rgb[valid])
    assert points.frame.tolist() == [40] * int(valid[0].sum()) + [41] * int(valid[1].sum())
    assert points.conf.tolist() == [1.0] * len(points)
    expected_dirs = cameras.unproject(np.where(valid, depth, 1.0))[valid] - np.repeat(cameras.centers, valid.reshape(2, -1).sum(1), 0)
    expected_dirs /= np.linalg.norm(expected_dirs, axis=1, keepdims=True)
    np.testing.assert_allclose(points.view_dirs.numpy(), expected_dirs, atol=1e-5)


def test_points_from_depth_rejects_wrong_shapes():
    cameras = look_along([0.0, 0.0, 0.0], [1, 0, 0], (0, 0, 1), width=8, height=6)
    with pytest.raises(MemoryFormatError, match="depth must have shape \\[1, 6, 8\\]"):
        points_from_depth(np.ones((1, 8, 6)), np.zeros((1, 6, 8, 3), np.uint8), cameras)
    with pytest.raises(MemoryFormatError, match="rgb must have shape"):
        points_from_depth(np.ones((1, 6, 8)), np.zeros((1, 6, 8), np.uint8), cameras)


VOXEL = 0.5


@st.composite
def batches(draw):
    """Batches of points placed well inside voxels (cells -4..4), so their voxel is unambiguous."""
    count = draw(st.integers(1, 4))
    out = []
    for _ in range(count):
        n = draw(st.integers(1, 12))
        cells = np.array(draw(st.lists(st.tuples(*[st.integers(-4, 4)] * 3), min_size=n, max_size=n)), dtype=np.float32)
        offsets = np.array(draw(st.lists(st.floats(0.2, 0.8), min_size=3 * n, max_size=3 * n)), dtype=np.float32)
        sides = np.array(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), dtype=np.uint8)
        conf = np.array(draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=n, max_size=n)), dtype=np.float32)
        out.append(((cells + offsets.reshape(n, 3)) * VOXEL, sides, conf))
    return out


@settings(max_examples=60, deadline=None)
@given(batches())
def test_fusion_keeps_ids_stable_and_conserves_counts(batch_list):
    memory = SpatialMemory.empty(VOXEL)
    seen_keys: set[tuple] = set()
    total_conf = 0.0
    for frame, (xyz, sides, conf) in enumerate(batch_list):
        before = dict(zip(memory.point_id.tolist(), memory.first_frame.tolist()))
        memory = fuse(memory, xyz, np.zeros((len(xyz), 3), np.uint8), conf, frame=frame, side=sides)
        cells = np.floor(xyz / VOXEL).astype(int)
        seen_keys |= {(*c, s) for c, s in zip(cells.tolist(), sides.tolist())}
        total_conf += float(conf.sum())
        after = dict(zip(memory.point_id.tolist(), memory.first_frame.tolist()))
        assert all(after[i] == first for i, first in before.items())  # no id lost, first_frame kept
        assert len(memory) == len(seen_keys) == memory.next_id  # one point per (voxel, side), ids never reused
        assert len(set(after)) == len(memory)
        assert float(memory.conf.sum()) == pytest.approx(total_conf)
        cached = memory.voxel_index()
        rebuilt = type(cached).build(memory.xyz, memory.side, VOXEL)
        assert torch.equal(cached.keys, rebuilt.keys)


def test_fuse_leaves_the_input_memory_unchanged():
    memory = fuse(SpatialMemory.empty(1.0), [[0.5, 0.5, 0.5]], [[10, 10, 10]], frame=0, view_dirs=TOWARD_MINUS_Z)
    before = memory.sha256()
    fused = fuse(memory, [[0.7, 0.5, 0.5], [3.5, 0.5, 0.5]], [[30, 30, 30]] * 2, frame=1,
                 view_dirs=np.repeat(TOWARD_MINUS_Z, 2, 0))
    assert memory.sha256() == before and len(memory) == 1
    assert fused.conf.tolist() == [2.0, 1.0]


def test_coarsen_keeps_the_most_confident_id_per_coarse_voxel():
    xyz = [[0.25, 0.25, 0.25], [0.75, 0.25, 0.25], [0.25, 0.75, 0.25], [0.75, 0.75, 0.75], [1.5, 0.5, 0.5]]
    memory = SpatialMemory.from_points(xyz, [[0, 0, 0]] * 4 + [[9, 9, 9]], [1.0, 3.0, 3.0, 1.0, 2.0], voxel_size=0.5)
    memory = memory.replace(first_frame=torch.tensor([4, 1, 2, 3, 0], dtype=torch.int32),
                            last_frame=torch.tensor([9, 5, 6, 7, 0], dtype=torch.int32))
    coarse = coarsen(memory, 1.0)
    assert coarse.voxel_size == 1.0 and coarse.next_id == 5
    assert coarse.point_id.tolist() == [1, 4]  # conf 3 twice: the smaller id wins
    assert coarse.conf.tolist() == [8.0, 2.0]
    # x: (0.25 + 2.25 + 0.75 + 0.75) / 8 = 0.5; y: (0.25 + 0.75 + 2.25 + 0.75) / 8 = 0.5; z: (0.25*7 + 0.75) / 8
    np.testing.assert_allclose(coarse.xyz.numpy(), [[0.5, 0.5, 0.3125], [1.5, 0.5, 0.5]])
    assert coarse.first_frame.tolist() == [1, 0] and coarse.last_frame.tolist() == [9, 0]


@pytest.mark.cuda
def test_fusion_on_cuda_matches_cpu():
    cameras = look_along([0.0, 0.0, 1.0], [1, 0, -0.58], (0, 0, 1))
    depth = floor_depth(cameras)
    rgb = np.random.default_rng(0).integers(0, 256, (1, 30, 40, 3), dtype=np.uint8)
    on_cpu = fuse_points(SpatialMemory.empty(0.05), points_from_depth(depth, rgb, cameras))
    on_gpu = fuse_points(SpatialMemory.empty(0.05, device="cuda"),
                         points_from_depth(torch.from_numpy(depth).cuda(), rgb, cameras))
    assert on_gpu.device.type == "cuda"
    assert on_gpu.point_id.tolist() == on_cpu.point_id.tolist()
    np.testing.assert_allclose(on_gpu.xyz.cpu().numpy(), on_cpu.xyz.numpy(), atol=1e-5)
    assert on_gpu.conf.cpu().tolist() == on_cpu.conf.tolist()


def test_refinement_that_moves_points_across_cells_keeps_the_voxel_index_exact():
    rng = np.random.default_rng(5)
    xyz = rng.uniform(-2, 2, (3000, 3)).astype(np.float32)
    memory = fuse(SpatialMemory.empty(0.1), xyz, np.zeros((3000, 3), np.uint8), frame=0,
                  side=rng.integers(0, 6, 3000).astype(np.uint8))
    memory.voxel_index()  # cached, as fusion leaves it
    rows = torch.as_tensor(rng.choice(len(memory), 800, replace=False))
    shift = torch.as_tensor(rng.normal(scale=0.3, size=(800, 3)), dtype=torch.float32)  # many leave their cells
    moved = refine(memory, rows, shift, torch.zeros(800) + 1.0, torch.zeros(800, 3), torch.ones(800, dtype=torch.int64))
    cached = moved._index
    assert cached is not None
    rebuilt = type(cached).build(moved.xyz, moved.side, moved.voxel_size, moved.level)
    assert torch.equal(cached.keys, rebuilt.keys)  # the same sorted keys, so lookups by key agree
    own = point_keys(moved.xyz, moved.side, moved.voxel_size, moved.level)
    assert torch.equal(own[cached.order], cached.keys)  # and each entry names a point holding its key
    assert torch.equal(torch.sort(cached.order).values, torch.arange(len(moved)))
    found, _ = cached.lookup(own)
    assert torch.equal(own[found], own)
