from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spatia.cameras import Cameras
from spatia.render import RenderError, render, render_memory

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
