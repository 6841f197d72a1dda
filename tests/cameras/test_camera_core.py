import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spatia.cameras import (
    CameraError,
    Cameras,
    Trajectory,
    c2w_to_w2c,
    interpolate_poses,
    normalized_to_pixels,
    pixels_to_normalized,
    w2c_to_c2w,
)


def random_poses(rng, n):
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.random(n, random_state=1).as_matrix()
    c2w[:, :3, 3] = rng.normal(size=(n, 3))
    return c2w


def test_projection_lands_on_hand_computed_pixel():
    # Camera at the origin looking down +z (identity w2c): u = fx x / z + cx.
    cams = Cameras([100.0, 120.0, 32.0, 24.0], np.eye(4), 64, 48)
    uv, z = cams.project([[0.5, -0.25, 2.0]])
    assert z[0, 0] == 2.0
    assert uv[0, 0].tolist() == [100.0 * 0.25 + 32.0, 120.0 * -0.125 + 24.0]


def test_unproject_inverts_project(rng):
    cams = Cameras.from_c2w([[50, 60, 16, 12]] * 3, random_poses(rng, 3), 32, 24)
    depth = rng.uniform(1, 5, size=(3, 24, 32))
    world = cams.unproject(depth)
    for f in range(3):
        uv, z = cams[f].project(world[f].reshape(-1, 3))
        np.testing.assert_allclose(z[0], depth[f].ravel(), atol=1e-9)
        # pixel centres: (i + 0.5, j + 0.5)
        jj, ii = np.meshgrid(np.arange(24), np.arange(32), indexing="ij")
        np.testing.assert_allclose(uv[0, :, 0], ii.ravel() + 0.5, atol=1e-9)
        np.testing.assert_allclose(uv[0, :, 1], jj.ravel() + 0.5, atol=1e-9)


def test_normalised_intrinsics_round_trip():
    k = np.array([[825.0, 1028.0, 624.0, 352.0]])
    n = pixels_to_normalized(k, 1248, 704)
    np.testing.assert_allclose(n, [[825 / 1248, 1028 / 704, 0.5, 0.5]])
    np.testing.assert_allclose(normalized_to_pixels(n, 1248, 704), k)


def test_c2w_w2c_inverse(rng):
    c2w = random_poses(rng, 5)
    w2c = c2w_to_w2c(c2w)
    np.testing.assert_allclose(w2c @ c2w, np.tile(np.eye(4), (5, 1, 1)), atol=1e-12)
    np.testing.assert_allclose(w2c_to_c2w(w2c), c2w, atol=1e-12)


def test_look_at_points_the_optical_axis_at_the_target():
    cams = Cameras.look_at([[3.0, -4.0, 2.0]], [0.0, 0.0, 1.0], width=64, height=48)
    uv, z = cams.project([[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(uv[0, 0], [32.0, 24.0], atol=1e-9)
    assert z[0, 0] == pytest.approx(np.sqrt(9 + 16 + 1))
    # world up (+z) appears upwards in the image (smaller v)
    uv_up, _ = cams.project([[0.0, 0.0, 2.0]])
    assert uv_up[0, 0, 1] < 24.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(intrinsics=[100, 100, 16, 12], w2c=np.full((4, 4), np.nan)), "frame 0: pose"),
        (dict(intrinsics=[0, 100, 16, 12], w2c=np.eye(4)), "frame 0: focal length"),
        (dict(intrinsics=[100, np.inf, 16, 12], w2c=np.eye(4)), "frame 0: intrinsics are not finite"),
        (dict(intrinsics=[100, 100, 16, 12], w2c=np.diag([1.0, 1.0, 2.0, 1.0])), "frame 0: rotation is not orthonormal"),
        (dict(intrinsics=[100, 100, 16, 12], w2c=np.diag([1.0, 1.0, -1.0, 1.0])), "frame 0: rotation is not orthonormal"),
        (dict(intrinsics=[[100, 100, 16, 12]] * 2, w2c=np.tile(np.eye(4), (3, 1, 1))), "frame-count mismatch"),
        (dict(intrinsics=[100, 100, 16, 12], w2c=np.eye(4), width=0), "image size 0x24"),
        (dict(intrinsics=[100, 100, 16, 12], w2c=np.eye(3)), "w2c must have shape"),
        # finite but far past any lens or scene: would overflow float32 projection to NaN
        (dict(intrinsics=[3.07e38, 100, 16, 12], w2c=np.eye(4)), "frame 0: intrinsics .* exceed"),
        (dict(intrinsics=[100, 100, 16, 12], w2c=np.diag([1.0, 1, 1, 1]) + np.eye(4, k=3) * 1e30),
         "frame 0: pose translation .* exceeds"),
    ],
)
def test_validation_names_the_problem(kwargs, message):
    args = dict(width=32, height=24) | kwargs
    with pytest.raises(CameraError, match=message):
        Cameras(**args)


def test_validation_names_the_bad_frame():
    w2c = np.tile(np.eye(4), (5, 1, 1))
    w2c[3, 0, 0] = 1.1
    with pytest.raises(CameraError, match="frame 3: rotation"):
        Cameras([100, 100, 16, 12], w2c, 32, 24)


def test_slerp_midpoint_between_two_rotations():
    c2w = np.tile(np.eye(4), (2, 1, 1))
    c2w[1, :3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    c2w[1, :3, 3] = [2.0, 0.0, 0.0]
    mid = interpolate_poses(c2w, [0.0, 1.0], [0.5])[0]
    np.testing.assert_allclose(mid[:3, :3], Rotation.from_euler("z", 45, degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(mid[:3, 3], [1.0, 0.0, 0.0])


def test_resample_keeps_endpoints_and_duration(rng):
    cams = Cameras.from_c2w([60, 60, 16, 12], random_poses(rng, 25), 32, 24)
    traj = Trajectory(cams, fps=24)
    half = traj.resample(12)
    assert len(half) == 13 and half.duration == pytest.approx(traj.duration)
    np.testing.assert_allclose(half.cameras.w2c[0], cams.w2c[0], atol=1e-9)
    np.testing.assert_allclose(half.cameras.w2c[-1], cams.w2c[-1], atol=1e-9)
    np.testing.assert_allclose(half.cameras.w2c[5], cams.w2c[10], atol=1e-9)  # frame 5 at 12 fps is frame 10 at 24
    double = traj.resample(48)
    assert len(double) == 49
    np.testing.assert_allclose(double.cameras.w2c[::2], cams.w2c, atol=1e-9)


def test_subsample_indices_at_4fps():
    cams = Cameras.look_at(np.stack([np.arange(81.0), np.zeros(81), np.zeros(81)], 1), [0, 10, 0])
    idx = Trajectory(cams, fps=24).subsample_indices(4)
    assert idx.tolist() == list(range(0, 81, 6))


def test_concat_and_slice(rng):
    cams = Cameras.from_c2w([60, 60, 16, 12], random_poses(rng, 4), 32, 24)
    joined = cams[:2].concat(cams[2:])
    assert joined.equals(cams)
    assert len(cams[-1]) == 1 and cams[-1].equals(cams[3:])
    with pytest.raises(CameraError, match="cannot join"):
        cams.concat(cams.resized(64, 48))
