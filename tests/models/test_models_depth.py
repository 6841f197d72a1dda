import numpy as np
import pytest

from spatia.engine.models import (
    DepthAnythingMetricEstimator,
    DepthProEstimator,
    ExactDepth,
    MapAnythingEstimator,
    ModelInputError,
    ModelUnavailable,
    get_depth_estimator,
)
from spatia.engine.models.depth_anything import dpt_resize_shape
from spatia.engine.models.imaging import DEFAULT_FOV_X_DEG, focal_from_fov
from spatia.engine.models.tiny import tiny_depth_anything, tiny_depth_pro


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (3, 24, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def depth_pro():
    return DepthProEstimator(model=tiny_depth_pro(), device="cpu")


def _check_result(result, frames, height, width):
    assert result.depth.shape == (frames, height, width) and result.depth.dtype == np.float32
    assert result.confidence.shape == (frames, height, width) and result.confidence.dtype == np.float32
    assert result.intrinsics.shape == (frames, 4) and result.intrinsics.dtype == np.float64
    assert np.isfinite(result.depth).all() and (result.depth > 0).all()
    assert (result.confidence >= 0).all() and (result.confidence <= 1).all()


def test_depth_pro_estimates_metric_depth_and_intrinsics(depth_pro, images):
    result = depth_pro.estimate(images)
    _check_result(result, 3, 24, 40)
    fx, fy, cx, cy = result.intrinsics.T
    np.testing.assert_allclose(fx, fy)
    np.testing.assert_allclose(cx, 20.0)
    np.testing.assert_allclose(cy, 12.0)
    assert (fx > 0).all()


def test_depth_pro_given_intrinsics_override_and_set_the_scale(depth_pro, images):
    estimated = depth_pro.estimate(images)
    k = np.array([30.0, 31.0, 19.0, 11.0])
    given = depth_pro.estimate(images, k)
    np.testing.assert_array_equal(given.intrinsics, np.tile(k, (3, 1)))
    # depth = focal / (width * inverse depth): scaling the focal scales the depth
    ratio = given.depth / estimated.depth
    np.testing.assert_allclose(ratio, np.broadcast_to(30.0 / estimated.intrinsics[:, :1, None], ratio.shape), rtol=1e-4)


def test_depth_pro_without_fov_head_uses_default_fov(images):
    estimator = DepthProEstimator(model=tiny_depth_pro(use_fov_model=False), device="cpu")
    result = estimator.estimate(images[:1])
    np.testing.assert_allclose(result.intrinsics[0, 0], focal_from_fov(40, DEFAULT_FOV_X_DEG))


def test_depth_pro_is_deterministic_across_batching(images):
    a = DepthProEstimator(model=tiny_depth_pro(), device="cpu", batch_size=1).estimate(images)
    b = DepthProEstimator(model=tiny_depth_pro(), device="cpu", batch_size=3).estimate(images)
    np.testing.assert_allclose(a.depth, b.depth, rtol=1e-4)


def test_depth_anything_metric_depth_and_default_fov(images):
    estimator = DepthAnythingMetricEstimator(model=tiny_depth_anything(), input_size=56, device="cpu")
    result = estimator.estimate(images)
    _check_result(result, 3, 24, 40)
    assert result.depth.max() <= 20.0 + 1e-3  # the metric head's max_depth
    np.testing.assert_allclose(result.intrinsics[:, 0], focal_from_fov(40, DEFAULT_FOV_X_DEG))
    given = estimator.estimate(images, np.array([50.0, 50.0, 20.0, 12.0]))
    np.testing.assert_array_equal(given.intrinsics[:, 0], 50.0)


def test_depth_anything_refuses_relative_checkpoints(images):
    model = tiny_depth_anything()
    model.config.depth_estimation_type = "relative"
    with pytest.raises(ModelUnavailable, match="relative depth"):
        DepthAnythingMetricEstimator(model=model, input_size=28, device="cpu").estimate(images)


def test_dpt_resize_shape_follows_the_processor_rule():
    assert dpt_resize_shape(480, 640, 518) == (518, 686)
    assert dpt_resize_shape(704, 1248, 518) == (518, 924)
    h, w = dpt_resize_shape(24, 40, 56)
    assert h % 14 == 0 and w % 14 == 0


def test_bad_images_are_named(depth_pro):
    with pytest.raises(ModelInputError, match="uint8"):
        depth_pro.estimate(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ModelInputError, match=r"\[F, H, W, 3\]"):
        depth_pro.estimate(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ModelInputError, match="intrinsics"):
        depth_pro.estimate(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((3, 4)))


def test_exact_depth_returns_known_depth_and_prefers_given_intrinsics():
    depth = np.full((2, 6, 8), 3.0, np.float32)
    depth[0, 0, 0] = np.inf
    depth[1, 1, 1] = -1.0
    stored = np.array([10.0, 10.0, 4.0, 3.0])
    source = ExactDepth(depth, stored)
    images = np.zeros((2, 6, 8, 3), np.uint8)
    result = source.estimate(images)
    assert result.depth[0, 0, 0] == 0 and result.depth[1, 1, 1] == 0 and result.depth[0, 2, 2] == 3.0
    assert result.confidence[0, 0, 0] == 0 and result.confidence[0, 2, 2] == 1
    np.testing.assert_array_equal(result.intrinsics, np.tile(stored, (2, 1)))
    given = np.array([20.0, 20.0, 4.0, 3.0])
    np.testing.assert_array_equal(source.estimate(images, given).intrinsics[1], given)
    with pytest.raises(ModelInputError, match="do not match"):
        source.estimate(np.zeros((2, 6, 9, 3), np.uint8))
    with pytest.raises(ModelInputError, match="no intrinsics"):
        ExactDepth(depth).estimate(images)


def test_missing_weights_name_the_download_command():
    estimator = get_depth_estimator("depth-pro")
    assert estimator.requirements.weights == ("apple/DepthPro-hf",)
    with pytest.raises(ModelUnavailable, match="spatia models download depth-pro"):
        estimator.check_available()


def test_map_anything_unavailable_says_how_to_install():
    with pytest.raises(ModelUnavailable, match="mapanything.*pip install"):
        MapAnythingEstimator().check_available()
