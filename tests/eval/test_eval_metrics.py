"""Image and geometry metrics on constructed cases whose answers are known."""

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from spatia.engine.metrics import (
    chamfer_distance,
    coverage_fraction,
    depth_errors,
    geometry_scores,
    match_accuracy,
    nearest_distances,
    psnr,
    ssim,
    ssim_map,
    voxel_downsample,
)


def texture(seed: int, shape=(120, 160)) -> np.ndarray:
    """Smooth random colour texture with plenty of corners and blobs for SIFT."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.random(shape + (3,)), (1.5, 1.5, 0))
    x = (x - x.mean()) / x.std()
    return np.clip(128 + 60 * x, 0, 255).astype(np.uint8)


# --- PSNR ------------------------------------------------------------------------------------
def test_psnr_known_values():
    img = texture(0).astype(np.float64)
    assert psnr(img, img) == math.inf
    # a uniform shift of 10 grey levels: MSE 100
    assert psnr(img, img + 10) == pytest.approx(20 * math.log10(255 / 10))
    # +-5 noise: MSE 25, whatever its signs
    signs = np.where(np.random.default_rng(1).random(img.shape) < 0.5, -5.0, 5.0)
    assert psnr(img, img + signs) == pytest.approx(10 * math.log10(255**2 / 25))
    # only masked pixels count
    other = img.copy()
    other[:10] += 50
    mask = np.zeros(img.shape[:2], dtype=bool)
    mask[20:] = True
    assert psnr(img, other, mask) == math.inf
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(img, img[1:])


# --- SSIM ------------------------------------------------------------------------------------
def test_ssim_identical_is_one_and_degrades_with_noise():
    img = texture(0)
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, img, channels="rgb") == pytest.approx(1.0)
    rng = np.random.default_rng(3)
    light = np.clip(img + rng.normal(0, 8, img.shape), 0, 255)
    heavy = np.clip(img + rng.normal(0, 40, img.shape), 0, 255)
    s_light, s_heavy = ssim(img, light), ssim(img, heavy)
    assert 1.0 > s_light > s_heavy > 0.0
    # a constant image has no structure: far lower than a noisy copy
    assert ssim(img, np.full_like(img, 128)) < 0.2 < s_heavy


def test_ssim_map_matches_a_direct_windowed_computation():
    rng = np.random.default_rng(5)
    a = rng.uniform(0, 255, (32, 32))
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    i, j = 15, 17  # an interior pixel: the 11x11 window lies inside the image
    offsets = np.arange(-5, 6)
    w = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    pa, pb = a[i - 5:i + 6, j - 5:j + 6], b[i - 5:i + 6, j - 5:j + 6]
    mu_a, mu_b = (w * pa).sum(), (w * pb).sum()
    var_a = (w * (pa - mu_a) ** 2).sum()
    var_b = (w * (pb - mu_b) ** 2).sum()
    cov = (w * (pa - mu_a) * (pb - mu_b)).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    assert ssim_map(a, b)[i, j] == pytest.approx(expected, rel=1e-9)


def test_ssim_mask_and_channels():
    img = texture(1)
    damaged = img.copy()
    damaged[:, :60] = 0  # left part destroyed
    mask = np.zeros(img.shape[:2], dtype=bool)
    mask[:, 100:] = True  # far from the damage (more than a window away)
    assert ssim(img, damaged, mask) == pytest.approx(1.0)
    assert ssim(img, damaged) < 0.8
    grey = np.repeat(img[..., :1], 3, axis=2)
    noisy = np.clip(grey + np.random.default_rng(2).normal(0, 15, grey.shape[:2])[..., None], 0, 255)
    assert ssim(grey, noisy, channels="rgb") == pytest.approx(ssim(grey, noisy, channels="luma"), abs=1e-9)
    with pytest.raises(ValueError, match="channels"):
        ssim(img, img, channels="lab")
    with pytest.raises(ValueError, match="mask"):
        ssim(img, img, np.ones((3, 3), dtype=bool))


# --- match accuracy --------------------------------------------------------------------------
def test_match_accuracy_shifted_copy_vs_unrelated_image():
    big = texture(0, (140, 180))
    a, shifted = big[10:130, 10:170], big[13:133, 14:174]  # the same texture moved by (4, 3) px
    same = match_accuracy(a, shifted)
    assert same.detector == "sift" and same.matches > 100
    assert same.accuracy > 0.9
    assert match_accuracy(a, shifted, model="homography").accuracy > 0.9
    unrelated = match_accuracy(a, texture(7))
    assert unrelated.accuracy < 0.3
    orb = match_accuracy(a, shifted, detector="orb")
    assert orb.detector == "orb" and orb.accuracy > 0.8
    # a featureless image gives no matches and accuracy 0, not an error
    blank = match_accuracy(a, np.full_like(a, 90))
    assert blank.accuracy == 0.0 and blank.matches == 0


# --- geometry --------------------------------------------------------------------------------
def grid_points(spacing=1.0, n=10) -> np.ndarray:
    g = np.arange(n) * spacing
    x, y = np.meshgrid(g, g)
    return np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], axis=1)


def test_chamfer_of_self_is_zero_and_of_a_shifted_copy_is_the_shift():
    pts = grid_points()
    assert chamfer_distance(pts, pts) == 0.0
    d = 0.05  # far below the 1 m spacing: every nearest neighbour is the moved copy
    assert chamfer_distance(pts, pts + [0.0, 0.0, d]) == pytest.approx(d)
    assert chamfer_distance(pts, pts + [d * 0.6, d * 0.8, 0.0]) == pytest.approx(d)
    with pytest.raises(ValueError, match="no points"):
        chamfer_distance(pts, np.zeros((0, 3)))


def test_accuracy_and_completeness_at_thresholds():
    gt = grid_points()  # 100 points
    pred = gt.copy()
    pred[50:, 2] += 0.03  # half the surface reconstructed 3 cm off
    outliers = gt[:25] + [0.0, 0.0, 0.5]  # 25 floating points half a metre above the surface
    pred = np.concatenate([pred, outliers])
    s = geometry_scores(pred, gt, thresholds=(0.02, 0.05, 0.10))
    assert s["pred_points"] == 125 and s["gt_points"] == 100
    t2, t5, t10 = (s["thresholds"][k] for k in ("2cm", "5cm", "10cm"))
    assert t2["precision"] == pytest.approx(50 / 125) and t2["recall"] == pytest.approx(0.5)
    assert t5["precision"] == pytest.approx(100 / 125) and t5["recall"] == pytest.approx(1.0)
    assert t10["precision"] == pytest.approx(100 / 125)
    assert t5["fscore"] == pytest.approx(2 * 0.8 * 1.0 / 1.8)
    assert s["completeness_median_m"] == pytest.approx(0.015)  # half at 0, half at 0.03
    assert s["accuracy_mean_m"] == pytest.approx((50 * 0.03 + 25 * 0.5) / 125)
    assert s["chamfer_m"] == pytest.approx(0.5 * (s["accuracy_mean_m"] + s["completeness_mean_m"]))
    np.testing.assert_allclose(nearest_distances(outliers, gt), 0.5)


def test_voxel_downsample_averages_each_cell():
    pts = np.array([[0.01, 0.01, 0.01], [0.03, 0.03, 0.03], [1.02, 0.0, 0.0]])
    out = voxel_downsample(pts, 0.1)
    out = out[np.argsort(out[:, 0])]
    np.testing.assert_allclose(out, [[0.02, 0.02, 0.02], [1.02, 0.0, 0.0]])
    assert voxel_downsample(np.zeros((0, 3)), 0.1).shape == (0, 3)


def test_coverage_and_depth_errors():
    known = np.zeros((2, 4, 4), dtype=bool)
    known[0, :2] = True  # half of frame 0
    valid = np.ones((2, 4, 4), dtype=bool)
    valid[0, 2:] = False  # frame 0's lower half is sky
    np.testing.assert_allclose(coverage_fraction(known), [0.5, 0.0])
    np.testing.assert_allclose(coverage_fraction(known, valid), [1.0, 0.0])
    gt = np.full((4, 4), 2.0)
    pred = gt + 0.1
    pred[0, 0] = 0.0  # unknown: ignored
    e = depth_errors(pred, gt)
    assert e["pixels"] == 15
    assert e["median_abs_m"] == pytest.approx(0.1) and e["abs_rel"] == pytest.approx(0.05)
    assert e["delta1"] == 1.0
    assert depth_errors(pred, gt, np.zeros((4, 4), dtype=bool))["pixels"] == 0
