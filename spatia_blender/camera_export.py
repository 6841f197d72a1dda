"""Read a Blender camera, frame by frame, into OpenCV intrinsics and world-to-camera poses.

Only reads Blender data; the formulas live in spatia_geometry.camera_math.
"""

from __future__ import annotations

import numpy as np

from spatia_geometry import camera_math


class CameraExportError(ValueError):
    """The object cannot be exported as a pinhole camera; the message says why."""


def check_camera(obj) -> None:
    if obj is None:
        raise CameraExportError("no camera: the scene has no active camera")
    if obj.type != "CAMERA":
        raise CameraExportError(f"object '{obj.name}' is a {obj.type.lower()}, not a camera")
    if obj.data.type != "PERSP":
        kind = {"ORTHO": "orthographic", "PANO": "panoramic"}.get(obj.data.type, obj.data.type.lower())
        raise CameraExportError(
            f"camera '{obj.name}' is {kind}; only perspective cameras can drive generation "
            "(set Camera > Lens > Type to Perspective)"
        )


def camera_at_current_frame(scene, obj) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(intrinsics [4] pixels, w2c [4,4], width, height) of `obj` as evaluated now."""
    cam = obj.data
    render = scene.render
    k, width, height = camera_math.blender_intrinsics(
        cam.lens,
        cam.sensor_width,
        cam.sensor_height,
        cam.sensor_fit,
        render.resolution_x,
        render.resolution_y,
        render.resolution_percentage,
        render.pixel_aspect_x,
        render.pixel_aspect_y,
        cam.shift_x,
        cam.shift_y,
    )
    w2c = camera_math.blender_to_w2c(np.array(obj.matrix_world, dtype=np.float64))
    return k, w2c, width, height


def export_camera(scene, obj=None, frames=None) -> dict:
    """Evaluate the camera at each frame (animated lens, shift and transform included).

    Returns {"frames", "intrinsics" [F,4], "w2c" [F,4,4], "width", "height", "fps"} and
    restores the scene's current frame.
    """
    obj = obj if obj is not None else scene.camera
    check_camera(obj)
    if frames is None:
        frames = range(scene.frame_start, scene.frame_end + 1)
    frames = [int(f) for f in frames]
    if not frames:
        raise CameraExportError("the frame range is empty")
    current = scene.frame_current
    intrinsics, poses = [], []
    try:
        for frame in frames:
            scene.frame_set(frame)
            k, w2c, width, height = camera_at_current_frame(scene, obj)
            intrinsics.append(k)
            poses.append(w2c)
    finally:
        scene.frame_set(current)
    fps = scene.render.fps / scene.render.fps_base
    return {
        "frames": frames,
        "intrinsics": np.stack(intrinsics),
        "w2c": np.stack(poses),
        "width": width,
        "height": height,
        "fps": fps,
    }
