"""Batched pinhole cameras in the OpenCV convention, and camera trajectories.

Storage is numpy float64 so poses survive file round trips exactly; the renderer and
retrieval convert to torch tensors on the device they run on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spatia_geometry.camera_math import rigid_inverse

MAX_IMAGE_SIZE = 16384
ORTHONORMAL_TOLERANCE = 1e-4
# Bounds well past any real lens or scene; they keep projections finite in float32.
MAX_INTRINSIC = 1e7  # pixels: focal lengths and principal points
MAX_TRANSLATION = 1e7  # metres


class CameraError(ValueError):
    """A camera or trajectory is malformed; the message names the frame and the problem."""


def _as_batch(a, trailing: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.shape == trailing:
        arr = arr[None]
    if arr.ndim != len(trailing) + 1 or arr.shape[1:] != trailing:
        raise CameraError(f"{name} must have shape [F, {', '.join(map(str, trailing))}], got {list(arr.shape)}")
    return arr


def normalized_to_pixels(intrinsics, width: int, height: int) -> np.ndarray:
    """(fx/W, fy/H, cx/W, cy/H) -> (fx, fy, cx, cy) in pixels."""
    return np.asarray(intrinsics, dtype=np.float64) * np.array([width, height, width, height], dtype=np.float64)


def pixels_to_normalized(intrinsics, width: int, height: int) -> np.ndarray:
    """(fx, fy, cx, cy) in pixels -> (fx/W, fy/H, cx/W, cy/H)."""
    return np.asarray(intrinsics, dtype=np.float64) / np.array([width, height, width, height], dtype=np.float64)


def c2w_to_w2c(c2w) -> np.ndarray:
    return rigid_inverse(c2w)


def w2c_to_c2w(w2c) -> np.ndarray:
    return rigid_inverse(w2c)


def intrinsics_matrix(intrinsics) -> np.ndarray:
    """[..., 4] (fx, fy, cx, cy) -> [..., 3, 3] K."""
    k = np.asarray(intrinsics, dtype=np.float64)
    out = np.zeros(k.shape[:-1] + (3, 3))
    out[..., 0, 0], out[..., 1, 1] = k[..., 0], k[..., 1]
    out[..., 0, 2], out[..., 1, 2] = k[..., 2], k[..., 3]
    out[..., 2, 2] = 1.0
    return out


@dataclass(frozen=True, eq=False)
class Cameras:
    """F pinhole cameras sharing one image size.

    intrinsics: [F, 4] fx, fy, cx, cy in pixels. w2c: [F, 4, 4] OpenCV world-to-camera.
    """

    intrinsics: np.ndarray
    w2c: np.ndarray
    width: int
    height: int

    def __post_init__(self):
        k = _as_batch(self.intrinsics, (4,), "intrinsics")
        w2c = _as_batch(self.w2c, (4, 4), "w2c")
        if len(k) == 1 and len(w2c) > 1:
            k = np.repeat(k, len(w2c), axis=0)
        object.__setattr__(self, "intrinsics", k)
        object.__setattr__(self, "w2c", w2c)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        self.validate()

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_c2w(cls, intrinsics, c2w, width: int, height: int) -> "Cameras":
        return cls(intrinsics, rigid_inverse(_as_batch(c2w, (4, 4), "c2w")), width, height)

    @classmethod
    def from_normalized(cls, intrinsics, w2c, width: int, height: int) -> "Cameras":
        return cls(normalized_to_pixels(intrinsics, width, height), w2c, width, height)

    @classmethod
    def look_at(cls, eye, target, up=(0.0, 0.0, 1.0), *, fov_x_deg: float = 60.0, width: int = 64, height: int = 48) -> "Cameras":
        """Cameras at `eye` [F,3] looking at `target` [F,3] with world `up`; centred principal point."""
        eye = np.atleast_2d(np.asarray(eye, dtype=np.float64))
        target = np.broadcast_to(np.asarray(target, dtype=np.float64), eye.shape)
        forward = target - eye
        forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
        right = np.cross(forward, np.broadcast_to(np.asarray(up, dtype=np.float64), eye.shape))
        norm = np.linalg.norm(right, axis=-1, keepdims=True)
        if np.any(norm < 1e-9):
            raise CameraError("look_at: view direction is parallel to `up`")
        right /= norm
        down = np.cross(forward, right)
        c2w = np.tile(np.eye(4), (len(eye), 1, 1))
        c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, down, forward, eye
        f = 0.5 * width / np.tan(np.radians(fov_x_deg) / 2)
        return cls.from_c2w([f, f, width / 2, height / 2], c2w, width, height)

    # --- validation ---------------------------------------------------------------------
    def validate(self) -> None:
        if len(self.intrinsics) != len(self.w2c):
            raise CameraError(f"frame-count mismatch: {len(self.intrinsics)} intrinsics for {len(self.w2c)} poses")
        if not (1 <= self.width <= MAX_IMAGE_SIZE and 1 <= self.height <= MAX_IMAGE_SIZE):
            raise CameraError(f"image size {self.width}x{self.height} is out of range 1..{MAX_IMAGE_SIZE}")
        k_bad = ~np.isfinite(self.intrinsics).all(axis=1)
        if k_bad.any():
            raise CameraError(f"frame {int(np.argmax(k_bad))}: intrinsics are not finite: {self.intrinsics[k_bad][0].tolist()}")
        f_bad = (self.intrinsics[:, :2] <= 0).any(axis=1)
        if f_bad.any():
            i = int(np.argmax(f_bad))
            raise CameraError(f"frame {i}: focal length must be positive, got fx={self.intrinsics[i, 0]}, fy={self.intrinsics[i, 1]}")
        k_big = (np.abs(self.intrinsics) > MAX_INTRINSIC).any(axis=1)
        if k_big.any():
            i = int(np.argmax(k_big))
            raise CameraError(f"frame {i}: intrinsics {self.intrinsics[i].tolist()} exceed {MAX_INTRINSIC:g} pixels")
        p_bad = ~np.isfinite(self.w2c).all(axis=(1, 2))
        if p_bad.any():
            raise CameraError(f"frame {int(np.argmax(p_bad))}: pose (w2c) is not finite")
        bottom_bad = np.abs(self.w2c[:, 3] - np.array([0, 0, 0, 1.0])).max(axis=1) > 1e-9
        if bottom_bad.any():
            i = int(np.argmax(bottom_bad))
            raise CameraError(f"frame {i}: pose (w2c) bottom row must be [0, 0, 0, 1], got {self.w2c[i, 3].tolist()}")
        t_big = np.abs(self.w2c[:, :3, 3]).max(axis=1) > MAX_TRANSLATION
        if t_big.any():
            i = int(np.argmax(t_big))
            raise CameraError(f"frame {i}: pose translation {self.w2c[i, :3, 3].tolist()} exceeds {MAX_TRANSLATION:g} m")
        rot = self.w2c[:, :3, :3]
        ortho_err = np.abs(rot @ np.swapaxes(rot, 1, 2) - np.eye(3)).max(axis=(1, 2))
        det = np.linalg.det(rot)
        r_bad = (ortho_err > ORTHONORMAL_TOLERANCE) | (det <= 0)
        if r_bad.any():
            i = int(np.argmax(r_bad))
            raise CameraError(
                f"frame {i}: rotation is not orthonormal (max |R R^T - I| = {ortho_err[i]:.2e}, det = {det[i]:.4f}, "
                f"tolerance {ORTHONORMAL_TOLERANCE})"
            )

    # --- views --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.w2c)

    def __getitem__(self, index) -> "Cameras":
        if isinstance(index, (int, np.integer)):
            index = slice(index, index + 1 if index != -1 else None)
        return Cameras(self.intrinsics[index], self.w2c[index], self.width, self.height)

    @property
    def c2w(self) -> np.ndarray:
        return rigid_inverse(self.w2c)

    @property
    def centers(self) -> np.ndarray:
        """Camera positions in world coordinates, [F, 3]."""
        return self.c2w[:, :3, 3]

    @property
    def K(self) -> np.ndarray:
        return intrinsics_matrix(self.intrinsics)

    def normalized_intrinsics(self) -> np.ndarray:
        return pixels_to_normalized(self.intrinsics, self.width, self.height)

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras for another image size (intrinsics scale with the image)."""
        return Cameras.from_normalized(self.normalized_intrinsics(), self.w2c, width, height)

    def concat(self, other: "Cameras") -> "Cameras":
        if (other.width, other.height) != (self.width, self.height):
            raise CameraError(f"cannot join cameras of size {self.width}x{self.height} and {other.width}x{other.height}")
        return Cameras(np.concatenate([self.intrinsics, other.intrinsics]), np.concatenate([self.w2c, other.w2c]), self.width, self.height)

    def project(self, points) -> tuple[np.ndarray, np.ndarray]:
        """World points [N,3] -> pixel coordinates [F,N,2] (continuous) and depth z [F,N]."""
        pts = np.asarray(points, dtype=np.float64)
        cam = pts @ self.w2c[:, :3, :3].transpose(0, 2, 1) + self.w2c[:, None, :3, 3]
        z = cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.intrinsics[:, None, 0] * cam[..., 0] / z + self.intrinsics[:, None, 2]
            v = self.intrinsics[:, None, 1] * cam[..., 1] / z + self.intrinsics[:, None, 3]
        return np.stack([u, v], axis=-1), z

    def unproject(self, depth) -> np.ndarray:
        """Depth maps [F,H,W] (z along the optical axis) -> world points [F,H,W,3] at pixel centres."""
        depth = np.asarray(depth, dtype=np.float64)
        if depth.shape != (len(self), self.height, self.width):
            raise CameraError(f"depth must be [{len(self)}, {self.height}, {self.width}], got {list(depth.shape)}")
        k, c2w = self.intrinsics, self.c2w
        out = np.empty(depth.shape + (3,))
        for i, d in enumerate(depth):  # plane by plane: no [F,H,W,3] temporaries (a full-size frame is 21 MB each)
            x = ((np.arange(self.width) + 0.5 - k[i, 2]) / k[i, 0])[None, :] * d
            y = ((np.arange(self.height) + 0.5 - k[i, 3]) / k[i, 1])[:, None] * d
            r, t = c2w[i, :3, :3], c2w[i, :3, 3]
            for axis in range(3):
                out[i, ..., axis] = r[axis, 0] * x + r[axis, 1] * y + r[axis, 2] * d + t[axis]
        return out

    def equals(self, other: "Cameras", atol: float = 1e-9) -> bool:
        return (
            (self.width, self.height) == (other.width, other.height)
            and len(self) == len(other)
            and np.allclose(self.intrinsics, other.intrinsics, atol=atol, rtol=0)
            and np.allclose(self.w2c, other.w2c, atol=atol, rtol=0)
        )


def interpolate_poses(c2w, times, new_times) -> np.ndarray:
    """Camera-to-world poses [F,4,4] at `times` -> poses at `new_times`.

    Rotations are slerped, camera centres lerped; times outside the range are clamped.
    """
    c2w = _as_batch(c2w, (4, 4), "c2w")
    times = np.asarray(times, dtype=np.float64)
    new_times = np.clip(np.asarray(new_times, dtype=np.float64), times[0], times[-1])
    if len(times) != len(c2w):
        raise CameraError(f"frame-count mismatch: {len(times)} times for {len(c2w)} poses")
    if np.any(np.diff(times) <= 0):
        raise CameraError("interpolation times must be strictly increasing")
    out = np.tile(np.eye(4), (len(new_times), 1, 1))
    if len(c2w) == 1:
        out[:] = c2w[0]
        return out
    from scipy.spatial.transform import Rotation, Slerp  # here, not at import: the CLI starts without scipy

    out[:, :3, :3] = Slerp(times, Rotation.from_matrix(c2w[:, :3, :3]))(new_times).as_matrix()
    for axis in range(3):
        out[:, axis, 3] = np.interp(new_times, times, c2w[:, axis, 3])
    return out


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A camera path sampled at a fixed frame rate, frame i at time i / fps."""

    cameras: Cameras
    fps: float = 24.0
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise CameraError(f"fps must be positive, got {self.fps}")

    def __len__(self) -> int:
        return len(self.cameras)

    def __getitem__(self, index) -> "Trajectory":
        return Trajectory(self.cameras[index], self.fps, dict(self.metadata))

    @property
    def duration(self) -> float:
        return (len(self) - 1) / self.fps

    @property
    def times(self) -> np.ndarray:
        return np.arange(len(self)) / self.fps

    def at_times(self, times) -> Cameras:
        """Cameras at arbitrary times (seconds): poses slerped, intrinsics lerped."""
        times = np.asarray(times, dtype=np.float64)
        cams = self.cameras
        c2w = interpolate_poses(cams.c2w, self.times, times)
        k = np.stack([np.interp(times, self.times, cams.intrinsics[:, i]) for i in range(4)], axis=-1)
        return Cameras.from_c2w(k, c2w, cams.width, cams.height)

    def resample(self, fps: float) -> "Trajectory":
        """The same path at another frame rate, covering the same duration."""
        if not np.isfinite(fps) or fps <= 0:
            raise CameraError(f"fps must be positive, got {fps}")
        count = int(np.floor(self.duration * fps + 1e-9)) + 1
        return Trajectory(self.at_times(np.arange(count) / fps), fps, dict(self.metadata))

    def subsample_indices(self, fps: float) -> np.ndarray:
        """Indices of the frames nearest to a sampling at `fps` (no interpolation)."""
        if fps >= self.fps:
            return np.arange(len(self))
        times = np.arange(0.0, self.duration + 1e-9, 1.0 / fps)
        return np.unique(np.clip(np.round(times * self.fps).astype(int), 0, len(self) - 1))
