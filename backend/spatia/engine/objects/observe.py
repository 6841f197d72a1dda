"""Instances in keyframes -> observations: each instance's world points (back-projected from
the aligned depth inside its mask), centroid, colour histogram and an appearance crop."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from spatia.cameras import Cameras

from .model import CROP_SIZE, HIST_BINS, REGIONS, Crop

MIN_PIXELS = 24  # an instance with fewer valid pixels in a keyframe is not observed there
OCCLUDER_METRES = 0.5  # a neighbour this much nearer than the instance's front hides part of it
OCCLUDED_SHARE = 0.1  # ... along this share of its outline: the view is partial
LEVEL_COSINE = 0.85  # a camera whose image "down" is within ~30 degrees of the world's down is level


@dataclass(frozen=True, eq=False)
class Observation:
    """One instance in one keyframe: xyz float64 [n,3] world, rgb uint8 [n,3]."""

    instance: int
    frame: int
    xyz: np.ndarray
    rgb: np.ndarray
    spacing: float  # the median pixel footprint (metres) at the instance's depth
    crop: Crop | None
    partial: bool = False  # cut by the image's edge or hidden in part behind something nearer ...
    cut_vertically: bool = False  # ... only by the top or bottom edge of a level camera: its place on the ground is seen

    @property
    def centroid(self) -> np.ndarray:
        return self.xyz.mean(axis=0)


def colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """uint8 [n,3] -> float32 [64]: 4x4x4 RGB bins, summing to 1 (uniform when empty). Each colour
    is shared between the 8 bins around it by its distance to their centres (trilinear), not
    dropped into one: a shade that moves a colour across a bin's edge (the same shirt in another
    light, a handful of pixels at low resolution) moves the histogram a little, not a whole bin."""
    bins = HIST_BINS ** 3
    if not len(rgb):
        return np.full(bins, 1.0 / bins, np.float32)
    x = np.asarray(rgb, np.float64) * HIST_BINS / 256.0 - 0.5  # in bin units, 0 at the first bin's centre
    lo = np.floor(x).astype(np.int64)
    w = x - lo
    counts = np.zeros(bins)
    for corner in np.ndindex(2, 2, 2):
        c = np.asarray(corner)
        idx = np.clip(lo + c, 0, HIST_BINS - 1)
        weight = np.prod(np.where(c, w, 1.0 - w), axis=1)
        counts += np.bincount((idx[:, 0] * HIST_BINS + idx[:, 1]) * HIST_BINS + idx[:, 2], weights=weight,
                              minlength=bins)
    return (counts / counts.sum()).astype(np.float32)


def region_histograms(xyz: np.ndarray, rgb: np.ndarray, up) -> np.ndarray:
    """float32 [REGIONS, 64]: the colour histogram of each height band (equal thirds of the
    points' height range along `up`, bottom first): legs, shirt and head tell two people apart
    where one histogram of the whole mixes them."""
    if not len(xyz):
        return np.stack([colour_histogram(rgb)] * REGIONS)
    h = np.asarray(xyz, np.float64) @ np.asarray(up, np.float64)
    lo, span = h.min(), max(float(np.ptp(h)), 1e-9)
    band = np.minimum(((h - lo) / span * REGIONS).astype(np.int64), REGIONS - 1)
    return np.stack([colour_histogram(rgb[band == k]) for k in range(REGIONS)])


def bhattacharyya(a: np.ndarray, b: np.ndarray) -> float:
    """Distance of two normalised histograms: 0 the same, 1 disjoint."""
    return float(np.sqrt(max(0.0, 1.0 - float(np.sqrt(np.asarray(a, np.float64) * np.asarray(b, np.float64)).sum()))))


def make_crop(image: np.ndarray, mask: np.ndarray, frame: int) -> Crop | None:
    """The instance's bounding box letterboxed into CROP_SIZE^2, scored by area x sharpness
    (variance of the Laplacian inside the mask): big, sharp views make the best references."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    rgb, m = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    sharpness = float(cv2.Laplacian(gray, cv2.CV_32F)[m].var()) if m.sum() > 1 else 0.0
    scale = CROP_SIZE / max(y1 - y0, x1 - x0)
    h, w = max(1, round((y1 - y0) * scale)), max(1, round((x1 - x0) * scale))
    out_rgb = np.full((CROP_SIZE, CROP_SIZE, 3), 255, np.uint8)
    out_mask = np.zeros((CROP_SIZE, CROP_SIZE), bool)
    top, left = (CROP_SIZE - h) // 2, (CROP_SIZE - w) // 2
    out_rgb[top:top + h, left:left + w] = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    out_mask[top:top + h, left:left + w] = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return Crop(frame=int(frame), score=float(m.sum()) * (1.0 + sharpness), rgb=out_rgb, mask=out_mask)


def observe(frames: np.ndarray, depth: np.ndarray, cameras: Cameras, frame_indices, instances: np.ndarray,
            up, *, min_pixels: int = MIN_PIXELS) -> dict[int, list[Observation]]:
    """Every instance of `instances` (int [F,H,W], 0 = none) in every keyframe where it has at
    least `min_pixels` pixels of valid depth -> {instance id: observations in frame order}.
    `up`: the world's up axis (what stands above the ground can hide an object).
    Masks are eroded by one pixel so that mixed edge depths do not smear into the background."""
    instances = np.asarray(instances)
    out: dict[int, list[Observation]] = {}
    kernel = np.ones((3, 3), np.uint8)
    for j, frame in enumerate(frame_indices):
        ids = np.unique(instances[j])
        ids = ids[ids > 0]
        if not len(ids):
            continue
        cam = cameras[j:j + 1]
        world = cam.unproject(depth[j:j + 1])[0]
        level = cameras.c2w[:, :3, 1] @ -np.asarray(up, np.float64) > LEVEL_COSINE
        focal = float(max(cam.intrinsics[0, 0], cam.intrinsics[0, 1]))
        for k in ids:
            mask = instances[j] == k
            core = cv2.erode(mask.astype(np.uint8), kernel) > 0
            valid = core & (depth[j] > 0) & np.isfinite(depth[j])
            if valid.sum() < min_pixels:
                continue
            sideways, vertically = mask[:, 0].any() or mask[:, -1].any(), mask[0].any() or mask[-1].any()
            occluded = _occluded(mask, depth[j], world, world[valid], up)
            partial = bool(sideways or vertically or occluded)
            out.setdefault(int(k), []).append(Observation(
                instance=int(k), frame=int(frame), xyz=world[valid], rgb=frames[j][valid],
                spacing=float(np.median(depth[j][valid])) / focal,
                crop=None if partial else make_crop(frames[j], mask, frame), partial=partial,
                cut_vertically=bool(vertically and not sideways and not occluded and level[j])))
    return out


def _occluded(mask: np.ndarray, depth: np.ndarray, world: np.ndarray, points: np.ndarray, up) -> bool:
    """Whether much of the object's outline borders something well in front of it and standing
    above its lowest fifth (a building, another object; not the ground it stands on, which is
    nearer just below it)."""
    ring = (cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~mask
    heights = points @ up
    floor = heights.min() + 0.2 * np.ptp(heights)
    front = float(np.percentile(depth[mask & (depth > 0)], 10))
    nearer = ring & (depth > 0) & (depth < front - OCCLUDER_METRES)
    nearer[nearer] = world[nearer] @ up > floor
    return bool(np.count_nonzero(nearer) > OCCLUDED_SHARE * max(1, np.count_nonzero(ring)))


def split_components(masks: np.ndarray, *, min_overlap: float = 0.2) -> np.ndarray:
    """A bool [F,H,W] dynamic mask without instance ids -> int32 [F,H,W] instances: connected
    components, linked from one frame to the next by overlap (IoU >= min_overlap), so an
    entity keeps its id through the clip when it moves less than its size between keyframes."""
    masks = np.asarray(masks, bool)
    out = np.zeros(masks.shape, np.int32)
    next_id = 1
    previous = None
    for j in range(len(masks)):
        count, labels = cv2.connectedComponents(masks[j].astype(np.uint8), connectivity=8)
        current = np.zeros_like(labels, dtype=np.int32)
        for c in range(1, count):
            region = labels == c
            best, best_iou = 0, min_overlap
            if previous is not None:
                for k in np.unique(previous[region]):
                    if k == 0:
                        continue
                    other = previous == k
                    iou = np.count_nonzero(region & other) / np.count_nonzero(region | other)
                    if iou >= best_iou:
                        best, best_iou = int(k), iou
            if not best or (current == best).any():
                best, next_id = next_id, next_id + 1
            current[region] = best
        out[j] = current
        previous = current
    return out
