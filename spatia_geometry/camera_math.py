"""Blender camera <-> OpenCV camera, in pure numpy.

This module imports nothing from Blender and nothing from the backend, so both the
extension (inside Blender) and the backend (`spatia.cameras`) use the same formulas.

OpenCV convention: x right, y down, z forward; continuous pixel coordinates where pixel
(i, j) spans [i, i+1) x [j, j+1), so a centred principal point is (W/2, H/2).
Blender camera: x right, y up, looking down -z.
"""

from __future__ import annotations

import numpy as np

# Flips Blender's camera axes (y up, -z forward) to OpenCV's (y down, +z forward).
BLENDER_TO_OPENCV_AXES = np.diag([1.0, -1.0, -1.0, 1.0])

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")


def remove_scale(matrix_world) -> np.ndarray:
    """Return a copy of a [..., 4, 4] affine matrix with unit-length rotation columns."""
    m = np.array(matrix_world, dtype=np.float64)
    if m.shape[-2:] != (4, 4):
        raise ValueError(f"matrix_world must be [..., 4, 4], got shape {m.shape}")
    scale = np.linalg.norm(m[..., :3, :3], axis=-2, keepdims=True)
    if np.any(scale < 1e-12):
        raise ValueError("matrix_world has a zero scale axis; the camera orientation is undefined")
    m[..., :3, :3] = m[..., :3, :3] / scale
    return m


def blender_to_c2w(matrix_world) -> np.ndarray:
    """Blender object matrix_world [..., 4, 4] -> OpenCV camera-to-world [..., 4, 4]."""
    return remove_scale(matrix_world) @ BLENDER_TO_OPENCV_AXES


def blender_to_w2c(matrix_world) -> np.ndarray:
    """Blender object matrix_world [..., 4, 4] -> OpenCV world-to-camera [..., 4, 4]."""
    return rigid_inverse(blender_to_c2w(matrix_world))


def c2w_to_blender(c2w) -> np.ndarray:
    """OpenCV camera-to-world [..., 4, 4] -> Blender matrix_world (unit scale)."""
    return np.asarray(c2w, dtype=np.float64) @ BLENDER_TO_OPENCV_AXES


def w2c_to_blender(w2c) -> np.ndarray:
    """OpenCV world-to-camera [..., 4, 4] -> Blender matrix_world (unit scale)."""
    return c2w_to_blender(rigid_inverse(w2c))


def rigid_inverse(m) -> np.ndarray:
    """Inverse of rigid [..., 4, 4] transforms (rotation + translation), batched."""
    m = np.asarray(m, dtype=np.float64)
    rot_t = np.swapaxes(m[..., :3, :3], -1, -2)
    out = np.zeros_like(m)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -(rot_t @ m[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def render_size(resolution_x: int, resolution_y: int, percentage: int = 100) -> tuple[int, int]:
    """The pixel size Blender renders at: resolution scaled by percentage (integer division)."""
    width = int(resolution_x) * int(percentage) // 100
    height = int(resolution_y) * int(percentage) // 100
    if width < 1 or height < 1:
        raise ValueError(f"render size {width}x{height} is empty (resolution {resolution_x}x{resolution_y} at {percentage}%)")
    return width, height


def blender_intrinsics(
    lens,
    sensor_width,
    sensor_height,
    sensor_fit: str,
    resolution_x: int,
    resolution_y: int,
    percentage: int = 100,
    pixel_aspect_x: float = 1.0,
    pixel_aspect_y: float = 1.0,
    shift_x=0.0,
    shift_y=0.0,
) -> tuple[np.ndarray, int, int]:
    """Pixel intrinsics [..., 4] (fx, fy, cx, cy) and (width, height) of a perspective camera.

    `lens`, `shift_x` and `shift_y` may be arrays (an animated camera, one value per frame);
    the result broadcasts over them. The formulas follow Blender's view-plane computation:
    the sensor is fitted to the width (HORIZONTAL), the height (VERTICAL) or the larger
    dimension in pixel-aspect-corrected units (AUTO, which always uses the sensor width),
    and shift moves the principal point in units of that fitted dimension.
    """
    fit = str(sensor_fit).upper()
    if fit not in SENSOR_FITS:
        raise ValueError(f"sensor_fit must be one of {SENSOR_FITS}, got {sensor_fit!r}")
    lens = np.asarray(lens, dtype=np.float64)
    if np.any(~np.isfinite(lens)) or np.any(lens <= 0):
        raise ValueError(f"focal length (lens) must be finite and positive, got {lens}")
    if sensor_width <= 0 or sensor_height <= 0:
        raise ValueError(f"sensor size must be positive, got {sensor_width} x {sensor_height}")
    if pixel_aspect_x <= 0 or pixel_aspect_y <= 0:
        raise ValueError(f"pixel aspect must be positive, got {pixel_aspect_x} : {pixel_aspect_y}")
    width, height = render_size(resolution_x, resolution_y, percentage)

    ycor = pixel_aspect_y / pixel_aspect_x
    if fit == "AUTO":
        fit = "HORIZONTAL" if pixel_aspect_x * width >= pixel_aspect_y * height else "VERTICAL"
        sensor_size = sensor_width
    else:
        sensor_size = sensor_width if fit == "HORIZONTAL" else sensor_height
    view_factor = width if fit == "HORIZONTAL" else ycor * height

    fx = lens * view_factor / sensor_size
    fy = fx / ycor
    cx = width / 2.0 - np.asarray(shift_x, dtype=np.float64) * view_factor
    cy = height / 2.0 + np.asarray(shift_y, dtype=np.float64) * view_factor / ycor
    fx, fy, cx, cy = np.broadcast_arrays(fx, fy, cx, cy)
    return np.stack([fx, fy, cx, cy], axis=-1), width, height


def intrinsics_to_blender(intrinsics, width: int, height: int, sensor_width: float = 36.0) -> dict:
    """Blender camera settings that reproduce pixel intrinsics (fx, fy, cx, cy) at width x height.

    The sensor is fitted horizontally so the mapping is unambiguous. `lens`, `shift_x` and
    `shift_y` come back as arrays shaped like the batch; the pixel aspect is a render
    setting shared by all frames, so every frame must have the same fx / fy.
    """
    k = np.asarray(intrinsics, dtype=np.float64)
    fx, fy, cx, cy = np.moveaxis(k, -1, 0)
    ycor = np.atleast_1d(fx / fy)  # Blender: fy = fx / ycor, ycor = aspect_y / aspect_x
    if not np.allclose(ycor, ycor.flat[0], rtol=1e-9):
        raise ValueError("fx / fy differs between frames; Blender has one pixel aspect per scene")
    ycor = float(ycor.flat[0])
    aspect_x, aspect_y = (1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0)
    return {
        "lens": fx * sensor_width / width,
        "sensor_width": float(sensor_width),
        "sensor_fit": "HORIZONTAL",
        "shift_x": (width / 2.0 - cx) / width,
        "shift_y": (cy - height / 2.0) * ycor / width,
        "pixel_aspect_x": aspect_x,
        "pixel_aspect_y": aspect_y,
    }
