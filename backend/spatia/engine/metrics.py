"""Image and geometry comparison metrics: pure numpy (plus scipy / OpenCV) functions.

Image metrics take uint8 or float images on a 0..255 scale unless `peak` / `data_range` says
otherwise. Geometry metrics take point sets [N,3] in metres.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as most SSIM reports use


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, *, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio (dB) between two images, over `mask` pixels when given."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if mask is not None:
        a, b = a[mask], b[mask]
    if a.size == 0:
        return float("nan")
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(peak**2 / mse)


# --- SSIM ------------------------------------------------------------------------------------
def _luma(image: np.ndarray) -> np.ndarray:
    return image @ LUMA_WEIGHTS if image.ndim == 3 else image


def ssim_map(a: np.ndarray, b: np.ndarray, *, data_range: float = 255.0, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Per-pixel SSIM of two single-channel images [H,W] (Wang et al. 2004).

    Local means, variances and covariance come from an 11x11 gaussian window (sigma 1.5,
    truncated at 3.5 sigma); the borders are reflected. Values lie in [-1, 1].
    """
    from scipy.ndimage import gaussian_filter

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    blur = lambda x: gaussian_filter(x, sigma, mode="reflect", truncate=3.5)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, *, channels: str = "luma",
         data_range: float = 255.0, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004, gaussian window) of two images [H,W] or [H,W,3].

    Measures agreement of local luminance, contrast and structure: 1 for identical images,
    lower as local statistics diverge. `channels` "luma" compares BT.601 luma, "rgb" averages
    the three channels' SSIM. The SSIM map is averaged over `mask` pixels when given (a window
    near the mask's edge still sees its unmasked neighbours), else over the image minus a
    border as wide as the window radius (as scikit-image does).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"images must be [H, W] or [H, W, 3], got {list(a.shape)}")
    if channels not in ("luma", "rgb"):
        raise ValueError(f"channels must be 'luma' or 'rgb', got {channels!r}")
    if channels == "luma" or a.ndim == 2:
        maps = ssim_map(_luma(a), _luma(b), data_range=data_range, sigma=sigma)[None]
    else:
        maps = np.stack([ssim_map(a[..., c], b[..., c], data_range=data_range, sigma=sigma) for c in range(3)])
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape[:2]:
            raise ValueError(f"mask must be {list(a.shape[:2])}, got {list(mask.shape)}")
        values = maps[:, mask]
    else:
        pad = int(3.5 * sigma + 0.5)
        h, w = a.shape[:2]
        values = maps[:, pad:h - pad, pad:w - pad] if h > 2 * pad and w > 2 * pad else maps
    return float(values.mean()) if values.size else float("nan")


# --- feature matching ------------------------------------------------------------------------
@dataclass(frozen=True)
class MatchResult:
    """Feature matching between two images: `accuracy` = inliers / matches (0 with too few matches)."""

    accuracy: float
    inliers: int
    matches: int
    keypoints_a: int
    keypoints_b: int
    detector: str
    model: str

    def as_dict(self) -> dict:
        return asdict(self)


def _grey_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    grey = _luma(image.astype(np.float64)) if image.ndim == 3 else image.astype(np.float64)
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def _detector(name: str):
    import cv2

    if name == "sift" and hasattr(cv2, "SIFT_create"):
        return cv2.SIFT_create(), cv2.NORM_L2, "sift"
    return cv2.ORB_create(nfeatures=2000), cv2.NORM_HAMMING, "orb"


def match_accuracy(a: np.ndarray, b: np.ndarray, *, detector: str = "sift", ratio: float = 0.75,
                   model: str = "fundamental", threshold: float = 1.0, min_matches: int = 12) -> MatchResult:
    """How well two views of the same place agree geometrically, by feature matching.

    Keypoints from OpenCV SIFT (ORB where SIFT is missing) are matched both ways with Lowe's
    ratio test (`ratio`); RANSAC then fits a fundamental matrix (or a homography, `model`)
    with `threshold` pixels. Accuracy is inliers / ratio-test matches: near 1 when the images
    show the same scene consistently, low for unrelated images. With fewer than `min_matches`
    matches no model is trusted and the accuracy is 0.
    """
    import cv2

    if model not in ("fundamental", "homography"):
        raise ValueError(f"model must be 'fundamental' or 'homography', got {model!r}")
    if detector not in ("sift", "orb"):
        raise ValueError(f"detector must be 'sift' or 'orb', got {detector!r}")
    det, norm, used = _detector(detector)
    kp_a, des_a = det.detectAndCompute(_grey_uint8(a), None)
    kp_b, des_b = det.detectAndCompute(_grey_uint8(b), None)

    def result(inliers: int, matches: int) -> MatchResult:
        acc = inliers / matches if matches >= min_matches else 0.0
        return MatchResult(float(acc), int(inliers), int(matches), len(kp_a), len(kp_b), used, model)

    if des_a is None or des_b is None or len(kp_a) < 2 or len(kp_b) < 2:
        return result(0, 0)
    matcher = cv2.BFMatcher(norm)
    good = [m for m, n in (p for p in matcher.knnMatch(des_a, des_b, k=2) if len(p) == 2) if m.distance < ratio * n.distance]
    if len(good) < max(min_matches, 8):
        return result(0, len(good))
    pa = np.float32([kp_a[m.queryIdx].pt for m in good])
    pb = np.float32([kp_b[m.trainIdx].pt for m in good])
    if model == "fundamental":
        _, inlier_mask = cv2.findFundamentalMat(pa, pb, cv2.FM_RANSAC, threshold, 0.999)
    else:
        _, inlier_mask = cv2.findHomography(pa, pb, cv2.RANSAC, threshold)
    inliers = 0 if inlier_mask is None else int(inlier_mask.ravel().astype(bool).sum())
    return result(inliers, len(good))


# --- coverage and depth ----------------------------------------------------------------------
def coverage_fraction(known: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-frame share of `valid` pixels (default: all) that are `known`: [F,H,W] -> [F] in [0, 1].

    With `valid` = pixels that show a surface in the ground truth, this is how much of the
    visible scene the memory covers, ignoring the sky. Frames with no valid pixel give nan.
    """
    known = np.asarray(known, dtype=bool)
    if known.ndim == 2:
        known = known[None]
    valid = np.ones_like(known) if valid is None else np.asarray(valid, dtype=bool).reshape(known.shape)
    total = valid.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (known & valid).sum(axis=(1, 2)) / np.maximum(total, 1), np.nan)


def depth_errors(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Depth error over pixels where both depths are positive (and `mask`): median and mean
    absolute error (metres), mean absolute relative error, and the share within 1.25x (delta1)."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"depth maps differ in shape: {pred.shape} vs {gt.shape}")
    valid = (pred > 0) & (gt > 0) & np.isfinite(pred) & np.isfinite(gt)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if not valid.any():
        return {"pixels": 0, "median_abs_m": float("nan"), "mean_abs_m": float("nan"), "abs_rel": float("nan"),
                "delta1": float("nan")}
    p, g = pred[valid], gt[valid]
    err = np.abs(p - g)
    return {"pixels": int(valid.sum()), "median_abs_m": float(np.median(err)), "mean_abs_m": float(err.mean()),
            "abs_rel": float((err / g).mean()), "delta1": float((np.maximum(p / g, g / p) < 1.25).mean())}


# --- geometry --------------------------------------------------------------------------------
def _points(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"{name} must be points [N, 3], got {list(x.shape)}")
    if len(x) == 0:
        raise ValueError(f"{name} has no points")
    return x


def nearest_distances(source: np.ndarray, target: np.ndarray, *, workers: int = -1) -> np.ndarray:
    """Distance from each `source` point to its nearest `target` point, [N] metres."""
    from scipy.spatial import cKDTree

    source, target = _points(source, "source"), _points(target, "target")
    return cKDTree(target).query(source, k=1, workers=workers)[0]


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance (metres): the mean of the mean nearest-neighbour distance
    from a to b and from b to a. 0 for identical sets; ~d for a sparse set and a copy moved by d."""
    return float(0.5 * (nearest_distances(a, b).mean() + nearest_distances(b, a).mean()))


def geometry_scores(pred: np.ndarray, gt: np.ndarray, thresholds=(0.02, 0.05, 0.10)) -> dict:
    """Reconstructed points `pred` against ground-truth surface points `gt` (metres).

    accuracy: distances pred -> gt (is every reconstructed point on a real surface?);
    completeness: distances gt -> pred (is every real surface reconstructed?). For each
    threshold t: precision = share of pred within t of gt, recall = share of gt within t of
    pred, F-score their harmonic mean (Knapitsch et al., Tanks and Temples). Also the
    symmetric Chamfer distance and the point counts.
    """
    d_pred = nearest_distances(pred, gt)
    d_gt = nearest_distances(gt, pred)
    out = {
        "pred_points": len(d_pred),
        "gt_points": len(d_gt),
        "chamfer_m": float(0.5 * (d_pred.mean() + d_gt.mean())),
        "accuracy_mean_m": float(d_pred.mean()),
        "accuracy_median_m": float(np.median(d_pred)),
        "completeness_mean_m": float(d_gt.mean()),
        "completeness_median_m": float(np.median(d_gt)),
        "thresholds": {},
    }
    for t in thresholds:
        precision = float((d_pred <= t).mean())
        recall = float((d_gt <= t).mean())
        f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        out["thresholds"][f"{t * 100:g}cm"] = {"threshold_m": float(t), "precision": precision, "recall": recall,
                                              "fscore": float(f)}
    return out


def voxel_downsample(points: np.ndarray, voxel: float) -> np.ndarray:
    """One point per occupied `voxel`-sized cell (the mean of the cell's points), [M,3]."""
    points = np.asarray(points, dtype=np.float64)
    if voxel <= 0:
        raise ValueError(f"voxel must be positive, got {voxel}")
    if len(points) == 0:
        return points.reshape(0, 3)
    cells = np.floor(points / voxel).astype(np.int64)
    cells -= cells.min(axis=0)
    dims = cells.max(axis=0) + 1
    keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]  # one int per cell: fast unique
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    sums = np.stack([np.bincount(inverse, weights=points[:, i], minlength=len(counts)) for i in range(3)], axis=1)
    return sums / counts[:, None]


__all__ = [
    "MatchResult",
    "chamfer_distance",
    "coverage_fraction",
    "depth_errors",
    "geometry_scores",
    "match_accuracy",
    "nearest_distances",
    "psnr",
    "ssim",
    "ssim_map",
    "voxel_downsample",
]
