"""Cameras and trajectories (OpenCV convention), conversions and validation. File formats are in spatia.formats."""

from spatia_geometry.camera_math import (
    blender_intrinsics,
    blender_to_c2w,
    blender_to_w2c,
    c2w_to_blender,
    intrinsics_to_blender,
    rigid_inverse,
    w2c_to_blender,
)

from .core import (
    CameraError,
    Cameras,
    Trajectory,
    c2w_to_w2c,
    interpolate_poses,
    intrinsics_matrix,
    normalized_to_pixels,
    pixels_to_normalized,
    w2c_to_c2w,
)

__all__ = [
    "CameraError",
    "Cameras",
    "Trajectory",
    "blender_intrinsics",
    "blender_to_c2w",
    "blender_to_w2c",
    "c2w_to_blender",
    "c2w_to_w2c",
    "interpolate_poses",
    "intrinsics_matrix",
    "intrinsics_to_blender",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "rigid_inverse",
    "w2c_to_blender",
    "w2c_to_c2w",
]
