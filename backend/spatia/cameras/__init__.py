"""Cameras and trajectories (OpenCV convention), conversions, validation and file formats."""

from spatia_blender.camera_math import (
    blender_intrinsics,
    blender_to_c2w,
    blender_to_w2c,
    c2w_to_blender,
    intrinsics_to_blender,
    rigid_inverse,
    w2c_to_blender,
)

from .colmap import ColmapFormatError, ColmapModel, read_colmap_text, write_colmap_text
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
from .nerfstudio import NerfstudioFormatError, NerfstudioTransforms, read_nerfstudio, write_nerfstudio
from .reference_case import ReferenceCase, ReferenceCaseError, read_reference_case, write_reference_case

__all__ = [
    "CameraError",
    "Cameras",
    "ColmapFormatError",
    "ColmapModel",
    "NerfstudioFormatError",
    "NerfstudioTransforms",
    "ReferenceCase",
    "ReferenceCaseError",
    "read_colmap_text",
    "read_nerfstudio",
    "read_reference_case",
    "write_colmap_text",
    "write_nerfstudio",
    "write_reference_case",
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
