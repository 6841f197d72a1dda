"""The memory keeps what it saw: the user's image exact at its camera round after round (a deep
corridor, a generator that disagrees with the memory), nothing generated standing where the
user's view saw empty space (borders, refined and merged points included), recall that does not
sink as rounds go by, exact and near returns told apart, and the first memory handed to the
generator at the reference's density."""

import numpy as np
import pytest
import torch

from spatia.cameras import Cameras, Trajectory
from spatia.engine.memory import RANK_GENERATED, RANK_USER, SpatialMemory, points_from_depth
from spatia.engine.memory_map import MAP_VOXEL, map_points
from spatia.engine.models.base import GenerationRequest
from spatia.engine.models.disagree import Disagreement, DisagreeingGenerator, disagree
from spatia.engine.poses import exact_matches
from spatia.engine.recall import revisit_pairs, score_revisits
from spatia.engine.render import render_memory
from spatia.engine.render_control import control_voxel_size, voxel_downsample
from spatia.engine.update import (
    UpdateSettings, in_pinned_free_space, pinned_depth, splat_reach, update_memory,
)
from spatia.engine.world import GenerateSettings, World

CORRIDOR = (np.array([-1.0, -1.2, -1.0]), np.array([1.0, 1.0, 30.0]))  # x, y (down), z: 31 m deep
PILLAR = (np.array([0.25, -1.2, 3.0]), np.array([0.6, 1.0, 3.4]))  # a silhouette against the far walls


def _colour(points: np.ndarray, solid: np.ndarray) -> np.ndarray:
    """Smooth colours that vary along every wall (so recall measures something), and a colour
    that changes at the pillar's edges."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    r = 128 + 90 * np.sin(1.3 * z + 2.0 * x)
    g = 128 + 90 * np.sin(0.9 * y + 0.7 * z + 1.0)
    b = np.where(solid, 60.0, 128 + 90 * np.cos(1.1 * x + 0.5 * z))
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def corridor_views(cameras: Cameras) -> tuple[np.ndarray, np.ndarray]:
    """Exact colour and z-depth of the corridor (inside a box) with a pillar (outside of a box)."""
    k = cameras.intrinsics
    u = np.arange(cameras.width) + 0.5
    v = np.arange(cameras.height) + 0.5
    rays_cam = np.stack(np.broadcast_arrays((u[None, None, :] - k[:, 2, None, None]) / k[:, 0, None, None],
                                            (v[None, :, None] - k[:, 3, None, None]) / k[:, 1, None, None],
                                            np.ones((len(cameras), 1, 1))), -1)
    c2w = cameras.c2w
    rays = np.einsum("fij,fhwj->fhwi", c2w[:, :3, :3], rays_cam)
    origin = np.broadcast_to(c2w[:, None, None, :3, 3], rays.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = CORRIDOR
        t_wall = np.where(rays > 0, (hi - origin) / rays, (lo - origin) / rays)
        t_wall = np.where(np.isfinite(t_wall) & (t_wall > 0), t_wall, np.inf).min(-1)
        plo, phi = PILLAR
        t1, t2 = (plo - origin) / rays, (phi - origin) / rays
        near = np.nanmax(np.minimum(t1, t2), -1)
        far = np.nanmin(np.maximum(t1, t2), -1)
    hits_pillar = (near <= far) & (near > 0)
    t = np.where(hits_pillar & (near < t_wall), near, t_wall)
    point = origin + rays * t[..., None]
    return _colour(point, hits_pillar & (near < t_wall)), t.astype(np.float32)


W, H = 64, 40


def dolly(frames: int, back_at: int) -> Trajectory:
    """Into the corridor and back out to the first camera's exact pose at frame `back_at`."""
    t = np.arange(frames, dtype=np.float64)
    depth = np.where(t <= back_at / 2, t, back_at - t) * 0.12
    depth = np.where(t > back_at, (t - back_at) * 0.05, depth)
    eye = np.stack([0.05 * np.sin(t / 3) * (t != back_at) * (t > 0), np.zeros_like(t), depth], 1)
    return Trajectory(Cameras.look_at(eye, eye + [0.0, 0.0, 1.0], width=W, height=H, fov_x_deg=75.0,
                                      up=(0.0, -1.0, 0.0)), fps=24.0)


def request_for(cams: Cameras, **fields) -> GenerationRequest:
    shape = (len(cams), cams.height, cams.width)
    return GenerationRequest(prompt="corridor", projection=np.zeros(shape + (3,), np.uint8),
                             projection_depth=np.zeros(shape, np.float32), hole_mask=np.ones(shape, bool),
                             cameras=cams, fps=24.0, **fields)


def test_disagreeing_generator_is_seeded_and_disagrees_as_set():
    cams = dolly(12, 100).cameras
    request = request_for(cams, round_index=1, start_frame=40)
    gen = DisagreeingGenerator(corridor_views, seed=3)
    a, b = gen.generate(request), gen.generate(request)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert a.info["depth_in_memory_frame"] is False
    other = DisagreeingGenerator(corridor_views, seed=4).generate(request)
    assert not np.array_equal(other.frames, a.frames)
    truth_rgb, truth_depth = corridor_views(cams)
    # with displacement off, the colour error is the shift plus noise, and depth is off by its scale
    rgb, depth, drawn = disagree(truth_rgb, truth_depth, np.random.default_rng(0),
                                 Disagreement(colour_shift=5.0, colour_noise=2.0, depth_scale=0.04, depth_noise=0.0,
                                              displacement_px=0))
    error = rgb.astype(float) - truth_rgb
    inside = (truth_rgb > 20).all(-1) & (truth_rgb < 235).all(-1)  # away from clipping
    np.testing.assert_allclose(error[inside].mean(0), drawn["colour_shift"], atol=0.3)
    assert 1.5 < error[inside].std(0).mean() < 2.5
    np.testing.assert_allclose(depth / truth_depth, drawn["depth_scale"], rtol=1e-5)
    assert abs(drawn["depth_scale"] - 1) <= 0.04
    # history frames come back as they were given
    history = np.zeros((3, H, W, 3), np.uint8)
    with_history = gen.generate(request_for(cams, history=history))
    np.testing.assert_array_equal(with_history.frames[:3], history)


@pytest.fixture(scope="module")
def corridor_world(tmp_path_factory):
    """Five rounds into a deep corridor and back to the first camera with the disagreeing generator."""
    trajectory = dolly(17 + 4 * 8, back_at=40)
    world = World.create(tmp_path_factory.mktemp("corridor") / "w", width=W, height=H, voxel_size=0.02)
    first = trajectory.cameras[:1]
    rgb, depth = corridor_views(first)
    world.init_from_rgbd(rgb[0], depth[0], first)
    settings = GenerateSettings(first_round_frames=17, round_frames=13, overlap=5, update_fps=6.0, object_memory=False)
    records = world.generate(trajectory, ["a corridor"], DisagreeingGenerator(corridor_views, seed=1), settings)
    return world, records, rgb[0]


def test_the_first_image_comes_back_exact_every_round_with_a_disagreeing_generator(corridor_world):
    world, records, first = corridor_world
    assert len(records) == 5
    for record in records:
        closure = record["loop_closure"]
        assert closure["memory_vs_first_psnr"] >= 45.0, record["round"]
        assert closure["memory_vs_first_coverage"] > 0.99
    view = render_memory(world.memory(), world.first_camera(), pinned=world.first_camera())
    np.testing.assert_array_equal(view.rgb[0].numpy(), first)  # pixel for pixel, the pillar's edges included
    # without the pinned camera the same memory is rendered as any other view: splats widen edges
    loose = render_memory(world.memory(), world.first_camera())
    assert (loose.rgb[0].numpy() != first).any(-1).sum() > 0


def test_recall_of_fused_frames_does_not_sink_round_over_round(corridor_world):
    _, records, _ = corridor_world
    recall = [r["loop_closure"]["recall"] for r in records]
    assert all(r["psnr"] is not None and 0.9 < r["coverage"] <= 1.0 for r in recall)
    assert recall[1]["psnr"] > 18.0  # 19.7 measured: the cells of a 2 cm memory blur a 64x40 corridor's far end
    # the errors of a generator that disagrees do not pile up: earlier keyframes come back as well later
    assert recall[-1]["past_psnr"] >= recall[1]["psnr"] - 3.0
    assert min(r["psnr"] for r in recall[1:]) >= recall[1]["psnr"] - 3.0


def test_exact_returns_and_near_returns_are_reported_apart(corridor_world):
    world, records, _ = corridor_world
    back = [r for r in records if r["start"] <= 40 < r["end"]][0]
    rows = back["loop_closure"]["revisits"]
    assert any(r["frame"] == 40 and r["earlier"] == 0 and r["kind"] == "exact" for r in rows)
    assert all(r["kind"] == "near" for r in rows if r["distance_m"] > 1e-3 or r["angle_deg"] > 0.01)
    # a camera 2 mm or 0.05 degrees from an earlier one is a near return, not an exact one
    cams = world.cameras()
    w2c = np.concatenate([cams.w2c[:1], cams.w2c[:1], cams.w2c[:1]])
    w2c[1, 0, 3] += 0.002
    turn = np.radians(0.05)
    w2c[2, :3, :3] = np.array([[np.cos(turn), 0, np.sin(turn)], [0, 1, 0], [-np.sin(turn), 0, np.cos(turn)]]) @ w2c[2, :3, :3]
    probe = Cameras(np.repeat(cams.intrinsics[:1], 4, 0), np.concatenate([cams.w2c[:1], w2c]), W, H)
    pairs = revisit_pairs(probe, [1, 2, 3], 1)
    assert [(p[0], p[3]) for p in pairs] == [("exact", 1), ("near", 2), ("near", 3)] or \
        sorted((p[0], p[3]) for p in pairs) == [("exact", 1), ("near", 2), ("near", 3)]
    frames = corridor_views(probe)[0]
    scored = score_revisits(world.memory(), probe, pairs, lambda g: frames[g], lambda idx: frames[idx])
    near = [r for r in scored["revisits"] if r["kind"] == "near"]
    assert len(near) == 2 and all(r["memory_pose_psnr"] is not None for r in near)
    assert scored["revisit_psnr_mean"] == 100.0  # the exact return is the same view
    assert scored["revisit_near_psnr_mean"] < 100.0


def plane(depth: float, cams: Cameras, colour=(200, 120, 40)) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.broadcast_to(np.asarray(colour, np.uint8), (len(cams), cams.height, cams.width, 3)).copy()
    rgb[..., 0] = (np.arange(cams.width) * 5 % 256).astype(np.uint8)
    return rgb, np.full((len(cams), cams.height, cams.width), depth, np.float32)


def side_camera(x: float = 0.0, yaw_deg: float = 0.0, f: float = 40.0) -> Cameras:
    c2w = np.eye(4)
    a = np.radians(yaw_deg)
    c2w[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    c2w[0, 3] = x
    return Cameras([f, f, 24.0, 18.0], np.linalg.inv(c2w), 48, 36)


def test_a_view_overlapping_the_first_images_border_cannot_overwrite_its_pixels():
    first = side_camera()
    rgb, depth = plane(3.0, first)
    memory, _, _ = update_memory(SpatialMemory.empty(0.02), rgb, depth, first, [0], rank=RANK_USER,
                                 settings=UpdateSettings(align=False, max_points=None))
    # a generated frame turned 40 degrees to the left: an object 1 m away across its whole view,
    # a part of it just outside the first image, where only the splats reach in
    other = side_camera(x=-0.3, yaw_deg=-40.0)
    grey, near = plane(1.0, other, colour=(20, 20, 20))
    candidates = points_from_depth(near, grey, other)
    z, col, row, k = splat_reach(candidates.xyz, torch.full((len(candidates),), 0.06), first, 0)
    reaching = (z > 0) & (col < 0) & (col >= -k) & (row >= 0) & (row < 36)
    assert int(reaching.sum()) > 0  # the case the test is about does occur
    after, _, stats = update_memory(memory, grey, near, other, [5], anchors=first,
                                    settings=UpdateSettings(align=False, max_points=None))
    assert stats.conflict_pixels > 0 and stats.points_added > 0  # the rest of the object is kept
    view = render_memory(after, first, pinned=first)
    np.testing.assert_array_equal(view.rgb[0].numpy(), rgb[0])  # not one border pixel lost
    generated = after.subset(after.rank == RANK_GENERATED)
    assert not bool(in_pinned_free_space(generated.xyz, 0.06, first, pinned_depth(after, first, RANK_GENERATED)).any())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refined_and_merged_points_never_stand_where_the_users_view_saw_empty_space(seed):
    rng = np.random.default_rng(seed)
    first = side_camera()
    rgb, depth = plane(3.0, first)
    memory, _, _ = update_memory(SpatialMemory.empty(0.02), rgb, depth, first, [0], rank=RANK_USER,
                                 settings=UpdateSettings(align=False, max_points=None))
    settings = UpdateSettings(align=False, max_points=len(memory) + 400)  # tight: generated points merge
    for frame in range(1, 7):
        cam = side_camera(x=float(rng.uniform(-0.6, 0.6)), yaw_deg=float(rng.uniform(-35, 35)))
        # surfaces at random depths, some in front of the user's wall: refinement and merging move points
        grey, d = plane(float(rng.uniform(0.8, 3.2)), cam, colour=(int(rng.integers(255)), 90, 90))
        d = d * (1 + 0.05 * rng.standard_normal(d.shape)).astype(np.float32)
        memory, _, _ = update_memory(memory, grey, d, cam, [frame], anchors=first, settings=settings)
        anchor = pinned_depth(memory, first, RANK_GENERATED)
        generated = memory.subset(memory.rank == RANK_GENERATED)
        sizes = render_sizes(generated)
        assert not bool(in_pinned_free_space(generated.xyz, sizes, first, anchor).any())
        view = render_memory(memory, first, pinned=first)
        np.testing.assert_array_equal(view.rgb[0].numpy(), rgb[0])
    assert int((memory.rank == RANK_USER).sum()) == 48 * 36  # the user's points are all still there


def render_sizes(memory):
    from spatia.engine.render import point_sizes

    return point_sizes(memory)


def test_the_first_memory_reaches_the_generator_at_the_references_density():
    cams = Cameras.look_at(np.array([[0.0, 0.0, 0.2]]), np.array([[0.1, 0.05, 1.2]]), width=320, height=180,
                           fov_x_deg=75.0, up=(0.0, -1.0, 0.0))
    rgb, depth = corridor_views(cams)
    world = World.create(__import__("tempfile").mkdtemp() + "/w", width=320, height=180, voxel_size=0.02)
    world.init_from_rgbd(rgb[0], depth[0], cams)
    memory = world.memory()
    assert len(memory) == 320 * 180  # every pixel of the first image is its own point
    # the reference: every pixel back-projected, voxel_down_sample at its map voxel, then again
    # at the control voxel of round 0 before rendering
    pixels = points_from_depth(depth, rgb, cams)
    ref_xyz, ref_rgb = voxel_downsample(pixels.xyz, pixels.rgb, MAP_VOXEL)
    reference = len(voxel_downsample(ref_xyz, ref_rgb, control_voxel_size(0))[0])
    ours_xyz, ours_rgb = map_points(memory)
    ours = len(voxel_downsample(ours_xyz, ours_rgb, control_voxel_size(0))[0])
    assert abs(ours - reference) <= 0.01 * reference
    # a first memory fused in 2 cm cells (the earlier design) misses it by far
    coarse = SpatialMemory.empty(0.02)
    coarse, _, _ = update_memory(coarse, rgb, depth, cams, [0], settings=UpdateSettings(align=False, max_points=None))
    coarse_count = len(voxel_downsample(*map_points(coarse), control_voxel_size(0))[0])
    assert abs(coarse_count - reference) > 0.05 * reference
    assert exact_matches(cams, world.first_camera()).all()
