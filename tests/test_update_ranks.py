"""The memory update weighs new pixels against what the memory holds: agreeing ones refine,
conflicting ones are kept out and counted, the user's observations outrank generated ones,
and fusion cells grow with distance."""

import numpy as np
import pytest
import torch

from spatia.cameras import Cameras
from spatia.engine.memory import RANK_GENERATED, RANK_USER, SpatialMemory
from spatia.engine.render import render_memory
from spatia.engine.update import UpdateSettings, update_memory

W, H = 48, 36
NO_ALIGN = UpdateSettings(align=False, max_points=None)


def camera(x: float = 0.0, f: float = 40.0) -> Cameras:
    w2c = np.eye(4)
    w2c[0, 3] = -x  # camera at (x, 0, 0) looking down +z
    return Cameras([f, f, W / 2, H / 2], w2c, W, H)


def plane_view(depth: float, colour=(200, 120, 40), shape=(1, H, W)):
    rgb = np.broadcast_to(np.asarray(colour, np.uint8), shape + (3,)).copy()
    # a gradient so colours are not all equal
    rgb[..., 0] = (np.arange(W) * 4 % 256).astype(np.uint8)
    return rgb, np.full(shape, depth, np.float32)


def seeded(rank: int, depth: float = 2.0, conf: float | None = None) -> SpatialMemory:
    rgb, d = plane_view(depth)
    confidence = None if conf is None else np.full(d.shape, conf, np.float32)
    memory, _, _ = update_memory(SpatialMemory.empty(0.02), rgb, d, camera(), [0], rank=rank,
                                 confidence=confidence, settings=NO_ALIGN)
    return memory


@pytest.mark.parametrize("rank", [RANK_GENERATED, RANK_USER])
def test_refusing_the_memorys_own_render_moves_nothing_and_adds_nothing(rank):
    memory = seeded(rank)
    for cam in (camera(), camera(0.05)):
        view = render_memory(memory, cam)
        depth = np.nan_to_num(view.depth.numpy(), posinf=0.0)
        after, _, stats = update_memory(memory, view.rgb.numpy(), depth, cam, [5], settings=NO_ALIGN)
        assert len(after) == len(memory) and stats.points_added == 0
        assert stats.reobserved_pixels > 0.9 * view.mask.sum()
        np.testing.assert_array_equal(after.xyz.numpy(), memory.xyz.numpy())
        np.testing.assert_array_equal(after.rgb.numpy(), memory.rgb.numpy())
        np.testing.assert_array_equal(after.point_id.numpy(), memory.point_id.numpy())


def test_a_consistent_reobservation_barely_moves_a_well_observed_surface():
    memory = seeded(RANK_GENERATED)
    rgb, depth = plane_view(2.0)
    for frame in range(1, 9):  # seen eight more times where it is
        memory, _, _ = update_memory(memory, rgb, depth, camera(), [frame], settings=NO_ALIGN)
    z_before = memory.xyz[:, 2].clone()
    moved, _, stats = update_memory(memory, rgb, np.full_like(depth, 2.03), camera(), [9], settings=NO_ALIGN)
    assert stats.points_added == 0 and stats.conflict_pixels == 0
    shift = (moved.xyz[:, 2] - z_before).numpy()
    assert (shift > 0).all() and shift.max() < 0.03 / 5  # 3 cm asked, well under a centimetre given
    assert len(moved) == len(memory)


def test_a_generated_frame_that_contradicts_the_users_surface_is_kept_out_and_counted():
    memory = seeded(RANK_USER)
    rgb, _ = plane_view(2.0, colour=(0, 255, 0))
    for wrong in (1.5, 3.0):  # something in front of the wall; the wall seen through
        after, _, stats = update_memory(memory, rgb, np.full((1, H, W), wrong, np.float32), camera(), [1],
                                        settings=NO_ALIGN)
        assert stats.conflict_pixels > 0.9 * H * W
        assert stats.carved == 0 and stats.points_added == 0
        np.testing.assert_array_equal(after.xyz.numpy(), memory.xyz.numpy())
        np.testing.assert_array_equal(after.rgb.numpy(), memory.rgb.numpy())


def test_a_generated_frame_replaces_weakly_supported_generated_points():
    memory = seeded(RANK_GENERATED, conf=0.3)  # invented depth: little support
    rgb, _ = plane_view(2.0)
    after, _, stats = update_memory(memory, rgb, np.full((1, H, W), 3.0, np.float32), camera(), [1], settings=NO_ALIGN)
    assert stats.conflict_pixels == 0
    assert stats.carved > 0.9 * len(memory)
    assert float(after.xyz[:, 2].median()) == pytest.approx(3.0, abs=0.02)


def test_user_points_are_never_moved_by_generated_frames_but_user_frames_replace_generated_points():
    user = seeded(RANK_USER)
    rgb, _ = plane_view(2.0, colour=(0, 0, 255))
    after, _, _ = update_memory(user, rgb, np.full((1, H, W), 2.02, np.float32), camera(), [1], settings=NO_ALIGN)
    np.testing.assert_array_equal(after.xyz.numpy(), user.xyz.numpy())
    generated = seeded(RANK_GENERATED)
    after, _, stats = update_memory(generated, rgb, np.full((1, H, W), 2.02, np.float32), camera(), [1],
                                    rank=RANK_USER, settings=NO_ALIGN)
    # every pixel of the user's image is its own point, and the generated surface it saw gave way
    assert stats.replaced == len(generated) and len(after) == H * W
    assert bool((after.rank == RANK_USER).all())
    assert float(after.xyz[:, 2].min()) == pytest.approx(2.02, abs=1e-5)
    view = render_memory(after, camera(), pinned=camera())
    np.testing.assert_array_equal(view.rgb[0].numpy(), rgb[0])


def test_fusion_cells_follow_the_pixel_footprint():
    near_rgb, near = plane_view(1.0)
    far_rgb, far = plane_view(12.0)
    cam = camera(f=40.0)  # a pixel is 2.5 cm wide at 1 m, 30 cm at 12 m
    near_memory, _, _ = update_memory(SpatialMemory.empty(0.02), near_rgb, near, cam, [0], settings=NO_ALIGN)
    far_memory, _, _ = update_memory(SpatialMemory.empty(0.02), far_rgb, far, cam, [0], settings=NO_ALIGN)
    assert set(near_memory.level.tolist()) == {0}
    assert set(far_memory.level.tolist()) == {2}  # 8 cm cells: at most half a pixel wide at 12 m
    assert len(far_memory) > 0.5 * len(near_memory)  # far content still covers its pixels ...
    coverage = render_memory(far_memory, cam).mask.float().mean()
    assert float(coverage) > 0.95  # ... and splats sized by cell leave no pinholes
    fixed, _, _ = update_memory(SpatialMemory.empty(0.02), far_rgb, far, cam, [0],
                                settings=UpdateSettings(align=False, max_points=None, scale_aware=False))
    assert set(fixed.level.tolist()) == {0}


def test_what_a_pushed_edit_adds_or_moves_becomes_the_users(tmp_path):
    from spatia.engine.memory import merge, transform
    from spatia.engine.world import World

    world = World.create(tmp_path / "w", width=W, height=H, voxel_size=0.02)
    rgb, depth = plane_view(2.0)
    world.init_from_rgbd(rgb[0], depth[0], camera())
    generated = world.memory().replace(rank=torch.zeros(len(world.memory()), dtype=torch.uint8))
    world.push_memory(generated)
    assert set(world.memory().rank.tolist()) == {RANK_GENERATED}  # nothing changed: nothing claimed
    base = world.memory()
    moved_ids = base.point_id[:3]
    shift = np.eye(4)
    shift[0, 3] = 0.1
    edited = transform(base, moved_ids, shift)
    edited = edited.replace(rank=base.rank.clone())  # as a client that knows nothing of ranks sends it
    edited = merge(edited, SpatialMemory.from_points(np.array([[0, 0, 1.0], [0.1, 0, 1.0]]), voxel_size=0.02,
                                                     rank=RANK_GENERATED))
    world.push_memory(edited)
    after = world.memory()
    user = set(after.point_id[after.rank == RANK_USER].tolist())
    assert user == set(moved_ids.tolist()) | set(after.point_id[-2:].tolist())

