"""Depth that jitters from pixel to pixel (as a depth model's does) must not scatter one surface
over several cells, in one frame or across frames: the jitter is measured from the map itself,
smoothed out away from edges, and what noise is left widens agreement along the line of sight."""

import numpy as np
import pytest

from spatia.cameras import Cameras
from spatia.engine.alignment import fit_scale_shift
from spatia.engine.memory import SpatialMemory, fuse_points, points_from_depth
from spatia.engine.memory.depth_noise import smooth_noisy_depth, white_noise
from spatia.engine.update import UpdateSettings, update_memory

ROOM = np.array([3.0, 3.0, 3.0])  # half extents of a box room around the origin


def room_views(cams: Cameras) -> tuple[np.ndarray, np.ndarray]:
    """Exact z-depth of the box room's walls and a colour that varies along them."""
    k = cams.intrinsics
    u, v = np.arange(cams.width) + 0.5, np.arange(cams.height) + 0.5
    rays_cam = np.stack(np.broadcast_arrays((u[None, None, :] - k[:, 2, None, None]) / k[:, 0, None, None],
                                            (v[None, :, None] - k[:, 3, None, None]) / k[:, 1, None, None],
                                            np.ones((len(cams), 1, 1))), -1)
    rays = np.einsum("fij,fhwj->fhwi", cams.c2w[:, :3, :3], rays_cam)
    origin = cams.c2w[:, None, None, :3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(rays > 0, (ROOM - origin) / rays, (-ROOM - origin) / rays)
    z = np.where(np.isfinite(t) & (t > 0), t, np.inf).min(-1)
    point = origin + rays * z[..., None]
    rgb = 128 + 100 * np.sin(np.stack([2.1 * point[..., 0], 1.7 * point[..., 1], 1.3 * point[..., 2]], -1))
    return rgb.astype(np.uint8), z.astype(np.float32)


def cameras(count: int = 1, width: int = 320, height: int = 180, step: float = 0.04) -> Cameras:
    eye = np.stack([np.arange(count) * step, np.zeros(count), np.zeros(count)], 1)
    return Cameras.look_at(eye, eye + [0.3, 1.0, 0.1], width=width, height=height, fov_x_deg=70.0)


def noisy(depth: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (depth * (1 + rng.normal(0.0, sigma, depth.shape))).astype(np.float32)


@pytest.mark.parametrize("sigma", [0.003, 0.01, 0.03])
def test_the_jitter_is_measured_from_the_map_alone(sigma):
    _, depth = room_views(cameras())
    assert white_noise(depth)[0] < 1e-4  # exact depth of flat walls (their corners included)
    assert white_noise(noisy(depth, sigma, 1))[0] == pytest.approx(sigma, rel=0.1)


def test_exact_depth_is_left_as_it_is():
    _, depth = room_views(cameras())
    smoothed, noise = smooth_noisy_depth(depth, 0.02)
    assert np.array_equal(smoothed, depth)
    assert noise[0] < 1e-4


def test_a_noisy_frame_makes_about_as_many_points_as_exact_depth():
    cams = cameras()
    rgb, depth = room_views(cams)

    def fused(d):
        return len(fuse_points(SpatialMemory.empty(0.02), points_from_depth(d, rgb, cams, frames=np.array([0]))))

    exact, jittery = fused(depth), noisy(depth, 0.01, 2)
    assert fused(jittery) > 1.5 * exact  # what it costs without smoothing
    assert fused(smooth_noisy_depth(jittery, 0.02)[0]) <= 1.15 * exact


def test_smoothing_keeps_edges_sharp():
    depth = np.full((1, 120, 160), 2.0, np.float32)
    depth[:, :, 80:] = 3.0  # a step of 1 m between two walls
    depth[:, 50:70, 20:40] = 0.0  # and a hole with no depth
    smoothed, noise = smooth_noisy_depth(noisy(depth, 0.01, 3), 0.02)
    error = np.abs(smoothed - depth)[depth > 0] / depth[depth > 0]
    assert noise[0] == pytest.approx(0.01, rel=0.1)
    assert error.max() < 0.05  # nothing pulled across the step
    assert np.median(error) < 0.002  # a fifth of the noise or less
    assert (smoothed[depth == 0] == 0).all()


def test_alignment_reports_the_noise_left_after_the_fit():
    _, depth = room_views(cameras())
    estimate = noisy(depth, 0.02, 4) / 1.1  # a scale error and noise
    fit = fit_scale_shift(estimate, depth, depth > 0, with_shift=False)
    assert fit.scale == pytest.approx(1.1, rel=0.01)
    assert fit.noise == pytest.approx(0.02, rel=0.15)
    assert fit_scale_shift(depth, depth, depth > 0).noise < 1e-6


def wobbly(depth: np.ndarray, amplitude: float, seed: int) -> np.ndarray:
    """Depth with a smooth error across the frame (a few waves of `amplitude`, a share of the
    depth), different in every frame: nothing a per-pixel filter can take out."""
    rng = np.random.default_rng(seed)
    _, h, w = depth.shape
    y, x = np.mgrid[0:h, 0:w]
    field = sum(np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x / w + rng.uniform(0.5, 2) * y / h) + rng.uniform(0, 6.3))
                for _ in range(3)) / np.sqrt(1.5)
    return (depth * (1 + amplitude * field)).astype(np.float32)


@pytest.mark.parametrize("error", ["jitter", "wobble"])
def test_noisy_views_of_surfaces_the_memory_holds_add_almost_nothing(error):
    """The same walls seen again with fresh errors re-observe the memory's points: about as few
    new points as exact depth adds, not a second layer of them. Jitter (independent per pixel)
    is smoothed out; a wobble (smooth across the frame, 1% of the depth) is allowed for along
    the line of sight by the noise left after the depth's fit to the memory."""
    cams = cameras(count=3)
    rgb, depth = room_views(cams)
    perturb = {"jitter": noisy, "wobble": wobbly}[error]
    added = {}
    for name, sigma in (("exact", 0.0), (error, 0.01)):
        d = np.stack([perturb(depth[i:i + 1], sigma, 10 + i)[0] for i in range(3)])
        settings = UpdateSettings(max_points=None)
        memory, _, first = update_memory(SpatialMemory.empty(0.02), rgb[:1], d[:1], cams[:1], [0], settings=settings)
        _, _, later = update_memory(memory, rgb[1:], d[1:], cams[1:], [1, 2], settings=settings)
        added[name] = (first.points_added, later.points_added)
    exact_first, exact_later = added["exact"]
    first, later = added[error]
    assert first <= 1.15 * exact_first
    assert later <= 2 * exact_later + 0.005 * first  # without the allowance: a third of the first frame


def test_pixels_outside_the_mask_and_frames_with_nothing_to_measure_are_left_as_they_are():
    depth = noisy(np.full((1, 60, 80), 3.0, np.float32), 0.01, 6)
    moving = np.zeros(depth.shape, bool)
    moving[:, 20:40, 30:50] = True  # a person: never smoothed into the walls, nor the walls into it
    smoothed, _ = smooth_noisy_depth(depth, 0.02, valid=~moving)
    assert np.array_equal(smoothed[moving], depth[moving])
    assert not np.array_equal(smoothed[~moving], depth[~moving])
    for empty in (np.zeros((2, 40, 50), np.float32), np.ones((1, 2, 3), np.float32)):
        out, noise = smooth_noisy_depth(empty, 0.02)
        assert np.array_equal(out, empty) and (noise == 0).all()
