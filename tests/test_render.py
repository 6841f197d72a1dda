from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spatia.cameras import Cameras
from spatia.engine.render import RenderError, render, render_memory

W, H = 64, 48
F = 100.0  # focal length in pixels; principal point at the image centre (32, 24)


def identity_camera(width: int = W, height: int = H, translate=(0.0, 0.0, 0.0)) -> Cameras:
    w2c = np.eye(4)
    w2c[:3, 3] = translate
    return Cameras([F, F, width / 2, height / 2], w2c, width, height)


def plane_points(z0: float, spacing: float, half_x: float, half_y: float) -> np.ndarray:
    """A square grid of points on z = z0, symmetric about the optical axis."""
    nx, ny = round(2 * half_x / spacing), round(2 * half_y / spacing)
    xs = (np.arange(nx + 1) - nx / 2) * spacing
    ys = (np.arange(ny + 1) - ny / 2) * spacing
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, z0)], axis=1).astype(np.float32)


def grey(n: int, value: int = 200) -> np.ndarray:
    return np.full((n, 3), value, dtype=np.uint8)


def test_single_point_lands_on_hand_computed_pixel_with_its_colour():
    # u = 100 * 0.113 / 2 + 32 = 37.65 -> column 37;  v = 100 * -0.047 / 2 + 24 = 21.65 -> row 21
    xyz = np.array([[0.113, -0.047, 2.0]], dtype=np.float32)
    rgb = np.array([[10, 20, 30]], dtype=np.uint8)
    out = render(xyz, rgb, identity_camera(), point_size=0.0, return_index=True)
    assert out.mask.shape == (1, H, W)
    assert out.mask.sum().item() == 1 and bool(out.mask[0, 21, 37])
    assert out.rgb[0, 21, 37].tolist() == [10, 20, 30]
    assert out.depth[0, 21, 37].item() == 2.0
    assert out.index[0, 21, 37].item() == 0
    assert out.rgb.sum().item() == 60  # every other pixel is black


def test_splat_is_the_square_of_half_width_ceil_radius_minus_half():
    # stretch at the corner: sqrt(1 + 0.32^2 + 0.24^2) = sqrt(1.16); radius = 100 * sqrt(1.16) * 0.1 / 4 = 2.69 px
    # -> half-width ceil(2.19) = 3 -> a 7x7 square around (21, 37)
    xyz = np.array([[0.113, -0.047, 2.0]], dtype=np.float32)
    out = render(xyz, grey(1), identity_camera(), point_size=0.1)
    expected = torch.zeros((H, W), dtype=torch.bool)
    expected[18:25, 34:41] = True
    assert torch.equal(out.mask[0], expected)
    assert torch.all(out.depth[0][expected] == 2.0)
    # point_size 0.08: radius 2.15 px -> half-width 2 -> 5x5
    assert render(xyz, grey(1), identity_camera(), point_size=0.08).mask.sum().item() == 25


def test_splat_is_clamped_to_max_radius():
    xyz = np.array([[0.113, -0.047, 2.0]], dtype=np.float32)
    out = render(xyz, grey(1), identity_camera(), point_size=0.1, max_radius_px=1)
    assert out.mask.sum().item() == 9


def test_point_just_outside_the_image_reaches_in_with_its_splat():
    # u = 100 * -0.33 / 1 + 32 = -1.0 -> column -1; radius 100 * 1.077 * 0.06 / 2 = 3.2 px -> half-width 3 -> columns 0..2
    xyz = np.array([[-0.33, 0.005, 1.0]], dtype=np.float32)  # v = 24.5 -> row 24
    out = render(xyz, grey(1), identity_camera(), point_size=0.06)
    cols = torch.nonzero(out.mask[0].any(dim=0)).flatten().tolist()
    rows = torch.nonzero(out.mask[0].any(dim=1)).flatten().tolist()
    assert cols == [0, 1, 2]
    assert rows == [21, 22, 23, 24, 25, 26, 27]


def test_nearer_point_occludes_farther_in_the_same_pixel():
    # Both land in pixel (row 24, col 32); the farther one comes first in the array.
    xyz = np.array([[0.004, 0.004, 3.0], [0.002, 0.002, 2.0]], dtype=np.float32)
    rgb = np.array([[255, 0, 0], [0, 255, 0]], dtype=np.uint8)
    out = render(xyz, rgb, identity_camera(), point_size=0.0, return_index=True)
    assert out.rgb[0, 24, 32].tolist() == [0, 255, 0]
    assert out.depth[0, 24, 32].item() == 2.0
    assert out.index[0, 24, 32].item() == 1
    assert out.mask.sum().item() == 1


def test_equal_depth_tie_goes_to_the_lower_index():
    xyz = np.array([[0.002, 0.002, 2.0], [0.003, 0.003, 2.0]], dtype=np.float32)
    out = render(xyz, grey(2), identity_camera(), point_size=0.0, return_index=True)
    assert out.index[0, 24, 32].item() == 0


def test_packed_keys_order_by_depth_then_index_and_read_back_exactly():
    from spatia.engine.render import MAX_POINTS, _depth_keys, _key_depths, _key_indices

    rng = np.random.default_rng(5)
    depth = torch.tensor(np.concatenate([rng.uniform(1e-3, 1e4, 998), [np.inf, 2.0]]), dtype=torch.float32)
    index = torch.tensor(np.concatenate([rng.integers(0, MAX_POINTS, 998), [MAX_POINTS - 1, 0]]))
    depth[10], index[10], index[11] = depth[11], 7, 3  # a tie in depth: the lower index first
    keys = (_depth_keys(depth) | index).view(10, 100)  # a canvas' rows, as the renderer reads them
    np.testing.assert_array_equal(_key_depths(keys).reshape(-1).numpy(), depth.numpy())
    np.testing.assert_array_equal(_key_indices(keys).reshape(-1).numpy(), index.numpy())
    order = torch.argsort(keys.reshape(-1))
    expected = np.lexsort((index.numpy(), depth.numpy()))  # by depth, ties by index
    np.testing.assert_array_equal(order.numpy(), expected)
    # a view's slice (the canvas without its padding) reads back as well
    np.testing.assert_array_equal(_key_depths(keys[2:5, 3:40]).numpy(), depth.view(10, 100)[2:5, 3:40].numpy())


def test_points_in_a_strided_tensor_render_as_their_contiguous_copy():
    xyz = plane_points(3.0, 0.02, 0.8, 0.6)
    wide = torch.zeros((len(xyz), 4))
    wide[:, :3] = torch.from_numpy(xyz)
    strided = wide[:, :3]  # every fourth float skipped: not contiguous
    assert not strided.is_contiguous() and len(xyz) > 4096  # several runs of points, the last one partial
    a = render(strided, grey(len(xyz)), identity_camera(), point_size=0.02, return_index=True)
    b = render(torch.from_numpy(xyz), grey(len(xyz)), identity_camera(), point_size=0.02, return_index=True)
    assert torch.equal(a.index, b.index) and torch.equal(a.depth, b.depth)


def test_nearer_splat_covers_a_farther_splat_inside_its_footprint():
    # Near point: z=1, pixel (24, 32), radius 100 * 1.077 * 0.1 / 2 = 5.4 px, clamped to half-width 3 -> rows 21..27,
    # cols 29..35. Far point: z=4, pixel (24, 34), radius 1.35 px -> half-width 1 -> rows 23..25, cols 33..35, all
    # behind the near one.
    xyz = np.array([[0.0005, 0.0025, 1.0], [0.0825, 0.0101, 4.0]], dtype=np.float32)
    out = render(xyz, grey(2), identity_camera(), point_size=0.1, max_radius_px=3, return_index=True)
    assert torch.all(out.index[0, 21:28, 29:36] == 0)
    assert out.mask.sum().item() == 49
    # Alone, the far point shows its own 3x3 splat.
    alone = render(xyz[1:], grey(1), identity_camera(), point_size=0.1, max_radius_px=3)
    assert torch.nonzero(alone.mask[0]).tolist() == [[r, c] for r in (23, 24, 25) for c in (33, 34, 35)]


def test_plane_at_known_depth_renders_that_depth_without_pinholes():
    z0, spacing = 2.5, 0.06  # 2.4 px between neighbours -> radius 1.2 * 1.077 = 1.29 px -> half-width 1
    xyz = plane_points(z0, spacing, half_x=0.48, half_y=0.27)  # centres at u in [12.8, 51.2], v in [13.2, 34.8]
    out = render(xyz, grey(len(xyz)), identity_camera(), point_size=spacing)
    covered = out.mask[0]
    # Centre pixels span columns 12..51 and rows 13..34; splats add one pixel all round.
    assert torch.nonzero(covered.any(dim=0)).flatten().tolist() == list(range(11, 53))
    assert torch.nonzero(covered.any(dim=1)).flatten().tolist() == list(range(12, 36))
    assert bool(covered[12:36, 11:53].all())  # no pinholes inside the plane
    assert torch.all(out.depth[0][covered] == np.float32(z0))


def test_plane_filling_the_view_covers_every_pixel():
    z0, spacing = 2.0, 0.05  # 2.5 px apart -> radius 1.35 px -> half-width 1
    xyz = plane_points(z0, spacing, half_x=0.8, half_y=0.6)
    out = render(xyz, grey(len(xyz)), identity_camera(), point_size=spacing)
    assert bool(out.mask.all())
    assert torch.allclose(out.depth, torch.full_like(out.depth, z0), rtol=1e-6, atol=0)


def test_empty_pixels_are_masked_black_infinite_and_index_minus_one():
    xyz = np.array([[0.0, 0.0, -2.0], [0.1, 0.1, 0.005], [50.0, 0.0, 1.0]], dtype=np.float32)  # behind, too near, outside
    out = render(xyz, grey(3), identity_camera(), point_size=0.0, return_index=True)
    assert not bool(out.mask.any())
    assert bool(torch.isinf(out.depth).all())
    assert out.rgb.sum().item() == 0
    assert bool((out.index == -1).all())


def test_an_empty_cloud_renders_empty_frames():
    out = render(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), identity_camera(), point_size=0.1)
    assert out.depth.shape == (1, H, W) and not bool(out.mask.any()) and bool(torch.isinf(out.depth).all())


def test_each_point_lands_where_cameras_project_puts_it():
    rng = np.random.default_rng(0)
    xyz = (rng.random((300, 3)) * [2.0, 1.5, 3.0] + [-1.0, -0.75, 1.0]).astype(np.float32)
    cameras = Cameras.look_at([[0.1, 0.2, -1.0], [0.5, -0.2, -0.5]], [[0, 0, 2], [0, 0, 2]], up=(0, -1, 0), width=W, height=H)
    out = render(xyz, grey(300), cameras, point_size=0.0, return_index=True)
    uv, z = cameras.project(xyz)
    for frame in range(2):
        rows, cols = torch.nonzero(out.mask[frame], as_tuple=True)
        winners = out.index[frame, rows, cols].numpy()
        np.testing.assert_array_equal(np.floor(uv[frame, winners, 0]), cols.numpy())
        np.testing.assert_array_equal(np.floor(uv[frame, winners, 1]), rows.numpy())
        np.testing.assert_allclose(out.depth[frame, rows, cols].numpy(), z[frame, winners], rtol=1e-5)


def test_frames_see_the_scene_from_their_own_pose():
    xyz = np.array([[0.113, -0.047, 2.0]], dtype=np.float32)
    cameras = identity_camera().concat(identity_camera(translate=(0.1, 0.0, 1.0)))  # second: x + 0.1, z + 1
    out = render(xyz, grey(1), cameras, point_size=0.0)
    assert bool(out.mask[0, 21, 37])
    # u = 100 * 0.213 / 3 + 32 = 39.1 -> 39;  v = 100 * -0.047 / 3 + 24 = 22.43 -> 22
    assert bool(out.mask[1, 22, 39]) and out.depth[1, 22, 39].item() == 3.0


def random_scene(n: int = 4000, seed: int = 1):
    rng = np.random.default_rng(seed)
    xyz = (rng.random((n, 3)) * [3.0, 2.0, 0.5] + [-1.5, -1.0, 2.0]).astype(np.float32)
    xyz[n // 2:] = xyz[: n - n // 2]  # duplicated points make exact depth ties
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    cameras = Cameras.look_at(rng.normal(scale=0.2, size=(5, 3)), [[0, 0, 2.2]] * 5, up=(0, -1, 0), width=W, height=H)
    return xyz, rgb, cameras


def test_depth_only_matches_full_render():
    xyz, rgb, cameras = random_scene()
    full = render(xyz, rgb, cameras, point_size=0.03)
    depth_only = render(xyz, None, cameras, point_size=0.03, depth_only=True)
    assert depth_only.rgb is None
    assert torch.equal(full.depth, depth_only.depth)
    assert torch.equal(full.mask, depth_only.mask)


def test_runs_and_chunk_sizes_give_identical_results():
    xyz, rgb, cameras = random_scene()
    first = render(xyz, rgb, cameras, point_size=0.03, return_index=True, chunk=1)
    second = render(xyz, rgb, cameras, point_size=0.03, return_index=True, chunk=1)
    batched = render(torch.from_numpy(xyz), torch.from_numpy(rgb), cameras, point_size=0.03, return_index=True, chunk=3)
    for other in (second, batched):
        for name in ("depth", "mask", "rgb", "index"):
            assert torch.equal(getattr(first, name), getattr(other, name)), name


def test_render_memory_reads_voxel_size_from_the_object():
    xyz = np.array([[0.113, -0.047, 2.0]], dtype=np.float32)
    memory = SimpleNamespace(xyz=xyz, rgb=np.array([[1, 2, 3]], dtype=np.uint8), voxel_size=0.1)
    out = render_memory(memory, identity_camera())
    assert out.mask.sum().item() == 49
    assert out.rgb[0, 21, 37].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(xyz=np.zeros((3, 2), np.float32)), "xyz must have shape"),
        (dict(xyz=np.array([[0, 0, np.nan]], np.float32)), "NaN"),
        (dict(rgb=np.zeros((1, 3), np.float32)), "rgb must be uint8"),
        (dict(rgb=np.zeros((2, 3), np.uint8)), r"rgb must have shape \[1, 3\]"),
        (dict(point_size=-1.0), "point_size"),
        (dict(near=-1.0), "near"),
        (dict(chunk=0), "chunk"),
        (dict(cameras="camera"), "cameras must be"),
    ],
)
def test_bad_input_raises_a_clear_render_error(kwargs, message):
    args = dict(xyz=np.zeros((1, 3), np.float32), rgb=np.zeros((1, 3), np.uint8), cameras=identity_camera(), point_size=0.1)
    args.update(kwargs)
    with pytest.raises(RenderError, match=message):
        render(args.pop("xyz"), args.pop("rgb"), args.pop("cameras"), **args)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    xyz, rgb, cameras = random_scene(20000)
    cpu = render(xyz, rgb, cameras, point_size=0.03, return_index=True)
    gpu = render(xyz, rgb, cameras, point_size=0.03, return_index=True, device="cuda")
    for name in ("depth", "mask", "rgb", "index"):
        assert torch.equal(getattr(cpu, name), getattr(gpu, name).cpu()), name


# --- render_control: the authors' soft disks and score video -------------------------------------
from spatia.engine.render import ControlRender, control_voxel_size, render_control, voxel_downsample  # noqa: E402
from spatia.engine.render_control import ControlRenderError  # noqa: E402

# A 41x21 image: s = min(W, H) = 21, so u = 20 + 1.05 (fx X/Z - (cx - 20)) and v = 10 + 1.05 (fy Y/Z - (cy - 10));
# radius_ndc 0.4 -> 0.4 * 21 / 2 = 4.2 px, r^2 = 17.64.
CW, CH, CR, CR2 = 41, 21, 0.4, 17.64


def control_camera(cx: float = 20.0, cy: float = 10.0, fx: float = 20.0, fy: float = 20.0) -> Cameras:
    return Cameras([fx, fy, cx, cy], np.eye(4), CW, CH)


def point_at(u: float, v: float, z: float, cx: float = 20.0, cy: float = 10.0, f: float = 20.0) -> list[float]:
    """The world point (identity camera) the authors' mapping puts at pixel (u, v)."""
    x = ((u - 20) / 1.05 + (cx - 20)) / f * z
    y = ((v - 10) / 1.05 + (cy - 10)) / f * z
    return [x, y, z]


def test_one_point_is_a_disk_of_the_ndc_radius_with_alpha_one_minus_d2_over_r2():
    xyz = np.array([point_at(20, 10, 3.0)], np.float32)
    out = render_control(xyz, np.array([[255, 128, 0]], np.uint8), control_camera(), radius_ndc=CR)
    assert isinstance(out, ControlRender) and out.rgb.shape == (1, CH, CW, 3) and out.score.shape == (1, CH, CW)
    red = out.rgb[0, ..., 0]
    # Pixels whose centre is strictly within 4.2 px: rows dy = 0, +-1, +-2, +-3, +-4 hold 9, 9, 7, 5, 3 of them.
    assert int((red > 0).sum()) == 9 + 2 * (9 + 7 + 5 + 3)
    assert red[10, 20].item() == pytest.approx(1.0)  # centre: alpha 1
    assert red[10, 24].item() == pytest.approx(1 - 16 / CR2, abs=1e-5)  # d = 4
    assert red[12, 23].item() == pytest.approx(1 - 13 / CR2, abs=1e-5)  # d^2 = 3^2 + 2^2
    assert red[10, 25].item() == 0 and red[14, 22].item() == 0  # d = 5; d^2 = 20 > 17.64
    assert out.rgb[0, 12, 23, 1].item() == pytest.approx((1 - 13 / CR2) * 128 / 255, abs=1e-5)
    assert out.rgb[0, ..., 2].abs().max().item() == 0
    # The disk's size does not depend on depth.
    far = render_control(np.array([point_at(20, 10, 30.0)], np.float32), np.array([[255, 128, 0]], np.uint8),
                         control_camera(), radius_ndc=CR)
    torch.testing.assert_close(far.rgb, out.rgb, atol=1e-5, rtol=0)


def test_pixel_mapping_follows_the_authors_scale_and_principal_point_sign():
    # cx = 21, cy = 9, fx X/Z = 4, fy Y/Z = -2: u = 20 + 1.05 (4 - 1) = 23.15, v = 10 + 1.05 (-2 + 1) = 8.95
    xyz = np.array([[4 / 20 * 2.0, -2 / 20 * 2.0, 2.0]], np.float32)
    out = render_control(xyz, np.array([[255, 255, 255]], np.uint8), control_camera(cx=21, cy=9), radius_ndc=CR)
    score = out.score[0]
    assert score[9, 23].item() == pytest.approx((0.15**2 + 0.05**2) / CR2, abs=1e-5)  # 1 - alpha at the nearest pixel
    assert score[9, 27].item() == pytest.approx((3.85**2 + 0.05**2) / CR2, abs=1e-5)
    assert score[9, 28].item() == 1.0 and score[9, 18].item() == 1.0  # 4.85 and 5.15 px away


def test_two_overlapping_points_composite_front_to_back():
    near = point_at(20, 10, 2.0)
    far = point_at(22, 10, 5.0)
    rgb = np.array([[0, 0, 255], [255, 0, 0]], np.uint8)  # near blue, far red
    for order in ([0, 1], [1, 0]):  # the order of the points in the cloud does not matter
        xyz = np.array([near, far], np.float32)[order]
        out = render_control(xyz, rgb[order], control_camera(), radius_ndc=CR)
        a_near, a_far = 1 - 1 / CR2, 1 - 1 / CR2  # pixel (10, 21) is 1 px from both centres
        assert out.rgb[0, 10, 21, 2].item() == pytest.approx(a_near, abs=1e-5)
        assert out.rgb[0, 10, 21, 0].item() == pytest.approx((1 - a_near) * a_far, abs=1e-5)
        assert out.score[0, 10, 21].item() == pytest.approx((1 - a_near) * (1 - a_far), abs=1e-5)
        # pixel (10, 20): the near centre (alpha 1) hides the far point entirely
        assert out.rgb[0, 10, 20].tolist() == pytest.approx([0, 0, 1], abs=1e-6)
        # pixel (10, 22): the far centre behind the near disk's edge (d = 2)
        a = 1 - 4 / CR2
        assert out.rgb[0, 10, 22, 0].item() == pytest.approx(1 - a, abs=1e-5)
        assert out.score[0, 10, 22].item() == pytest.approx(0.0, abs=1e-6)
    one = render_control(np.array([near, far], np.float32), rgb, control_camera(), radius_ndc=CR, points_per_pixel=1)
    assert one.rgb[0, 10, 21, 0].item() == 0  # only the nearest point per pixel


def test_score_is_one_in_holes_zero_under_a_centre_fractional_at_the_edge():
    out = render_control(np.array([point_at(10, 10, 1.0)], np.float32), np.zeros((1, 3), np.uint8),
                         control_camera(), radius_ndc=CR)
    score = out.score[0]
    assert score[10, 10].item() == 0.0
    assert score[10, 14].item() == pytest.approx(16 / CR2, abs=1e-5)
    assert score[0, 0].item() == 1.0 and score[10, 30].item() == 1.0
    assert bool(((score > 0) & (score < 1)).any())
    assert float(out.rgb.abs().max()) == 0.0  # black points: the rgb video stays black, the score does not
    rgb_u8, score_u8 = out.to_uint8()
    assert score_u8.dtype == np.uint8 and score_u8[0, 10, 10] == 0 and score_u8[0, 0, 0] == 255
    # the authors' video: 255 - floor(255 * (1 - score))
    assert score_u8[0, 10, 14] == 255 - int(255 * (1 - 16 / CR2))


def test_points_behind_the_camera_or_off_screen_are_skipped():
    xyz = np.array([point_at(20, 10, -2.0), point_at(-6, 10, 2.0), point_at(45.3, 10, 2.0)], np.float32)
    out = render_control(xyz, np.full((3, 3), 255, np.uint8), control_camera(), radius_ndc=CR)
    assert float(out.score.min()) == 1.0
    edge = render_control(np.array([point_at(-3, 10, 2.0)], np.float32), np.full((1, 3), 255, np.uint8),
                          control_camera(), radius_ndc=CR)
    assert edge.score[0, 10, 0].item() == pytest.approx(9 / CR2, abs=1e-5)  # a centre off screen reaches in


def _slow_control(xyz, rgb, cameras, radius_ndc, k):
    """Per pixel, per point: the definition, in float64."""
    f, h, w = len(cameras), cameras.height, cameras.width
    s = min(w, h)
    r2 = (radius_ndc * s / 2) ** 2
    out_rgb, out_score = np.zeros((f, h, w, 3)), np.ones((f, h, w))
    for i in range(f):
        fx, fy, cx, cy = cameras.intrinsics[i]
        cam = xyz.astype(np.float64) @ cameras.w2c[i, :3, :3].T + cameras.w2c[i, :3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (w - 1) / 2 + s / (s - 1) * (fx * cam[:, 0] / cam[:, 2] - (cx - (w - 1) / 2))
            v = (h - 1) / 2 + s / (s - 1) * (fy * cam[:, 1] / cam[:, 2] - (cy - (h - 1) / 2))
        for row in range(h):
            for col in range(w):
                d2 = (col - u) ** 2 + (row - v) ** 2
                hits = sorted((cam[p, 2], p) for p in range(len(xyz)) if cam[p, 2] >= 0 and d2[p] < r2)[:k]
                transmit = 1.0
                for _, p in hits:
                    alpha = 1 - d2[p] / r2
                    out_rgb[i, row, col] += transmit * alpha * rgb[p] / 255
                    transmit *= 1 - alpha
                out_score[i, row, col] = transmit
    return out_rgb, out_score


@pytest.mark.parametrize("k", [1, 5])
def test_random_clouds_match_the_per_pixel_definition(k, monkeypatch):
    import spatia.engine.render_control as rc

    rng = np.random.default_rng(3)
    xyz = rng.uniform([-1, -1, -0.5], [1, 1, 1.5], (250, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (250, 3), dtype=np.uint8)
    cameras = Cameras.look_at([[0, -3, 0.5], [0.4, -2.6, 0.2]], [0, 0, 0.3], width=23, height=17, fov_x_deg=55)
    expected_rgb, expected_score = _slow_control(xyz, rgb, cameras, 0.15, k)
    out = render_control(xyz, rgb, cameras, radius_ndc=0.15, points_per_pixel=k)
    np.testing.assert_allclose(out.rgb.numpy(), expected_rgb, atol=2e-5)
    np.testing.assert_allclose(out.score.numpy(), expected_score, atol=2e-5)
    monkeypatch.setitem(rc.CANDIDATE_CHUNK, "cpu", 64)  # one point per expansion chunk: the same picture
    again = render_control(torch.from_numpy(xyz), torch.from_numpy(rgb), cameras, radius_ndc=0.15, points_per_pixel=k)
    assert torch.equal(again.rgb, out.rgb) and torch.equal(again.score, out.score)


def test_voxel_downsample_averages_points_and_colours_per_voxel():
    # Open3D's grid starts half a voxel below the minimum: cells [-0.005, 0.005), [0.005, 0.015), ...
    xyz = np.array([[0.0, 0.0, 0.0], [0.004, 0.002, 0.0], [0.02, 0.0, 0.0], [0.021, 0.001, 0.003]], np.float32)
    rgb = np.array([[0, 0, 0], [255, 100, 50], [10, 10, 10], [30, 50, 70]], np.uint8)
    points, colours = voxel_downsample(xyz, rgb, 0.01)
    assert points.shape == (2, 3) and colours.dtype == torch.float32
    np.testing.assert_allclose(points.numpy(), [[0.002, 0.001, 0.0], [0.0205, 0.0005, 0.0015]], atol=1e-7)
    np.testing.assert_allclose(colours.numpy(), [[127.5 / 255, 50 / 255, 25 / 255], [20 / 255, 30 / 255, 40 / 255]],
                               atol=1e-7)
    assert voxel_downsample(xyz, rgb, 1.0)[0].shape == (1, 3)
    assert control_voxel_size(0) == pytest.approx(0.01) and control_voxel_size(3) == pytest.approx(0.025)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: render_control(np.zeros((2, 2), np.float32), np.zeros((2, 3), np.uint8), control_camera()), "xyz must have shape"),
        (lambda: render_control(np.zeros((1, 3), np.float32), np.zeros((2, 3), np.uint8), control_camera()), r"rgb must have shape \[1, 3\]"),
        (lambda: render_control(np.zeros((1, 3), np.float32), np.full((1, 3), 2.0), control_camera()), "float rgb must lie in"),
        (lambda: render_control(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8), control_camera(), radius_ndc=0), "radius_ndc"),
        (lambda: render_control(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8), control_camera(), points_per_pixel=0), "points_per_pixel"),
        (lambda: render_control(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8), "camera"), "cameras must be"),
        (lambda: voxel_downsample(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8), 0.0), "voxel_size"),
        (lambda: control_voxel_size(-1), "round_index"),
    ],
)
def test_control_render_bad_input_names_the_argument(call, message):
    with pytest.raises(ControlRenderError, match=message):
        call()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_control_render_cuda_matches_cpu():
    xyz, rgb, cameras = random_scene(20000)
    cpu = render_control(xyz, rgb, cameras)
    gpu = render_control(xyz, rgb, cameras, device="cuda")
    # The GPU's float rounding may swap two points of nearly equal depth in a rare pixel.
    for mine, theirs in ((gpu.rgb.cpu(), cpu.rgb), (gpu.score.cpu(), cpu.score)):
        differ = (mine - theirs).abs() > 1e-4
        assert differ.float().mean().item() < 1e-3


def test_an_empty_cloud_gives_black_frames_that_are_all_hole():
    out = render_control(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), control_camera())
    assert float(out.rgb.abs().max()) == 0.0 and float(out.score.min()) == 1.0
    points, colours = voxel_downsample(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), 0.01)
    assert points.shape == (0, 3) and colours.shape == (0, 3)


def test_authors_pixel_mapping_equals_pytorch3d_ndc_route():
    """The mapping in the module docstring, against PyTorch3D's conventions worked step by step:
    OpenCV -> PyTorch3D axes (x, y flipped), row-vector world-to-view (X R + T), NDC focal
    2 f / (s - 1) and principal point 2 (c - (n - 1) / 2) / (s - 1), x_ndc = f X / Z + p, and
    pixel j's centre at NDC (n - 1 - 2 j) / s (+x left, +y up)."""
    from scipy.spatial.transform import Rotation

    from spatia.engine.render_control import control_mapping

    rng = np.random.default_rng(5)
    width, height = 37, 22
    s = min(width, height)
    flip = np.diag([-1.0, -1.0, 1.0])
    for seed in range(3):
        w2c = np.eye(4)
        w2c[:3, :3] = Rotation.random(random_state=seed).as_matrix()
        w2c[:3, 3] = rng.normal(size=3)
        k = [31.0, 29.0, 17.3, 12.1]
        cams = Cameras(k, w2c, width, height)
        points = rng.normal(size=(20, 3))
        cam_cv = points @ w2c[:3, :3].T + w2c[:3, 3]
        # The reference's conversion: c2w in PyTorch3D axes, then R (c2w's rotation) and T (w2c's translation).
        c2w = np.linalg.inv(w2c)
        c2w_p3d = np.eye(4)
        c2w_p3d[:3, :3] = flip @ c2w[:3, :3] @ flip.T
        c2w_p3d[:3, 3] = flip @ c2w[:3, 3]
        rot, trans = c2w_p3d[:3, :3], np.linalg.inv(c2w_p3d)[:3, 3]
        view = (points @ flip.T) @ rot + trans
        fx_n, fy_n = 2 * k[0] / (s - 1), 2 * k[1] / (s - 1)
        px_n, py_n = 2 * (k[2] - (width - 1) / 2) / (s - 1), 2 * (k[3] - (height - 1) / 2) / (s - 1)
        x_ndc = fx_n * view[:, 0] / view[:, 2] + px_n
        y_ndc = fy_n * view[:, 1] / view[:, 2] + py_n
        col = (width - 1 - s * x_ndc) / 2
        row = (height - 1 - s * y_ndc) / 2
        np.testing.assert_allclose(view[:, 2], cam_cv[:, 2], atol=1e-9)
        ax, bx, ay, by = control_mapping(cams)[0]
        np.testing.assert_allclose(ax * cam_cv[:, 0] / cam_cv[:, 2] + bx, col, atol=1e-9)
        np.testing.assert_allclose(ay * cam_cv[:, 1] / cam_cv[:, 2] + by, row, atol=1e-9)


def ranked_scene(seed: int = 3, n: int = 4000, largest: float = 0.08):
    """A random scene with per-point sizes and a random half of the points preferred."""
    xyz, rgb, cameras = random_scene(n, seed=seed)
    rng = np.random.default_rng(seed)
    sizes = rng.uniform(0.01, largest, len(xyz)).astype(np.float32)
    priority = rng.random(len(xyz)) < 0.5
    return xyz, rgb, cameras, sizes, priority


def test_indices_and_colours_name_the_callers_points_when_some_are_preferred():
    xyz, rgb, cameras, sizes, priority = ranked_scene()
    out = render(xyz, rgb, cameras, point_size=sizes, priority=priority, return_index=True, return_centres=True)
    z = np.einsum("fij,nj->fni", cameras.w2c[:, :3, :3], xyz) + cameras.w2c[:, None, :3, 3]
    for name, depth in (("index", out.depth), ("centre_index", out.centre_depth)):
        index = getattr(out, name).numpy()
        frame, row, col = np.nonzero(index >= 0)
        winner = index[frame, row, col]
        assert len(winner) > 1000
        np.testing.assert_allclose(depth.numpy()[frame, row, col], z[frame, winner, 2], rtol=1e-6)
        if name == "index":
            assert np.array_equal(out.rgb.numpy()[frame, row, col], rgb[winner])
    # a preferred point keeps its pixel against a point a little nearer on the same surface
    near, far = np.array([[0.0, 0.0, 2.0]], np.float32), np.array([[0.0, 0.0, 2.02]], np.float32)
    pair = render(np.concatenate([near, far]), grey(2), identity_camera(),
                  point_size=0.05, priority=[False, True], return_index=True)
    assert pair.index[0, H // 2, W // 2] == 1


@pytest.mark.parametrize("chunk", [1, 3])
def test_splats_grown_sparsely_equal_full_passes(chunk, monkeypatch):
    import spatia.engine.render as module

    xyz, rgb, cameras, sizes, priority = ranked_scene(n=600, largest=0.3)  # splats of up to 7 pixels
    kwargs = dict(point_size=sizes, priority=priority, exact=[True, False, False, True, False], return_index=True,
                  return_centres=True, chunk=chunk)
    monkeypatch.setattr(module, "SPARSE_SHARE", 0.0)  # every pass over the whole canvas
    full = render(xyz, rgb, cameras, **kwargs)
    visits = []
    real = module._neighbourhoods
    monkeypatch.setattr(module, "_neighbourhoods", lambda *a: visits.append(1) or real(*a))
    monkeypatch.setattr(module, "SPARSE_SHARE", 1.0)  # only neighbourhoods after the first pass
    sparse = render(xyz, rgb, cameras, **kwargs)
    assert len(visits) >= 5
    for name in ("depth", "mask", "rgb", "index", "centre_index", "centre_depth"):
        assert torch.equal(getattr(full, name), getattr(sparse, name)), name


def room_in_scan_order(seed: int = 0) -> tuple[np.ndarray, np.ndarray, Cameras]:
    """Points on the walls of a 4 m room, wall after wall and row after row (as a memory holds
    them: in the order they were seen), and cameras inside looking every way."""
    rng = np.random.default_rng(seed)
    across, up = np.meshgrid(np.linspace(-2, 2, 120), np.linspace(0, 3, 90))
    walls = []
    for axis, sign in [(0, 1), (1, 1), (0, -1), (1, -1)]:
        wall = np.zeros(across.shape + (3,))
        wall[..., axis], wall[..., 1 - axis], wall[..., 2] = 2 * sign, across, up
        walls.append(wall.reshape(-1, 3))
    xyz = (np.concatenate(walls) + rng.normal(0, 0.003, (4 * across.size, 3))).astype(np.float32)
    eye = np.stack([rng.uniform(-1, 1, 8), rng.uniform(-1, 1, 8), np.full(8, 1.5)], 1)
    angle = rng.uniform(0, 2 * np.pi, 8)
    target = eye + np.stack([np.cos(angle), np.sin(angle), rng.uniform(-0.5, 0.5, 8)], 1)
    return xyz, rng.integers(0, 256, (len(xyz), 3), dtype=np.uint8), Cameras.look_at(
        eye, target, width=W, height=H, fov_x_deg=70.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_runs_a_frame_cannot_see_are_skipped_and_the_frames_stay_the_same(seed, monkeypatch):
    import spatia.engine.render as module

    xyz, rgb, cameras = room_in_scan_order(seed)
    sizes = np.where(np.arange(len(xyz)) % 5 == 0, 0.06, 0.03).astype(np.float32)
    kwargs = dict(point_size=sizes, priority=np.arange(len(xyz)) < 10_000, return_index=True, return_centres=True)
    real = module._Group.visible
    monkeypatch.setattr(module._Group, "visible", lambda self, *a: None)  # every frame projects every point
    whole = render(xyz, rgb, cameras, **kwargs)
    projected = []

    def visible(self, *args):
        index = real(self, *args)
        projected.append(self.points_t.shape[1] if index is None else len(index))
        return index

    monkeypatch.setattr(module._Group, "visible", visible)
    monkeypatch.setattr(module, "CULL_BLOCK", 256)
    culled = render(xyz, rgb, cameras, **kwargs)
    assert sum(projected) < 0.6 * len(xyz) * len(cameras)
    for name in ("depth", "mask", "rgb", "index", "centre_index", "centre_depth"):
        assert torch.equal(getattr(whole, name), getattr(culled, name)), name


@pytest.mark.parametrize("seed", range(5))
def test_a_run_is_skipped_only_when_none_of_its_points_can_reach_the_image(seed, monkeypatch):
    import spatia.engine.render as module
    from spatia.engine.render import _Group, _projection_matrices

    rng = np.random.default_rng(seed)
    xyz = torch.as_tensor(rng.normal(0, 3, (20_000, 3)), dtype=torch.float32)
    cell = torch.floor(xyz / 1.5).to(torch.int64) + 100
    xyz = xyz[torch.argsort((cell[:, 0] * 1000 + cell[:, 1]) * 1000 + cell[:, 2])]  # runs are patches of space
    monkeypatch.setattr(module, "CULL_BLOCK", 64)
    group = _Group.of(xyz)
    cameras = Cameras.look_at(rng.normal(0, 1, (6, 3)), rng.normal(0, 4, (6, 3)), width=W, height=H, fov_x_deg=60.0)
    rotation, translation = _projection_matrices(cameras, torch.device("cpu"))
    pad, near, skipped = 8, 1e-2, 0
    for f in range(len(cameras)):
        uz, vz, z = torch.addmm(translation[f], rotation[f], group.points_t)
        reach = (z > near) & (uz / z >= -pad) & (uz / z < W + pad) & (vz / z >= -pad) & (vz / z < H + pad)
        index = group.visible(rotation[f], translation[f], W, H, pad, near)
        kept = torch.ones(len(xyz), dtype=torch.bool) if index is None else torch.zeros(len(xyz), dtype=torch.bool)
        if index is not None:
            kept[index] = True
        assert bool(kept[reach].all())
        skipped += int((~kept).sum())
    assert skipped > 0
