import numpy as np
import pytest

from spatia.cameras import Cameras
from spatia.engine.models import Cancelled, GenerationRequest, get_generator
from spatia.engine.models.fill import push_pull_fill
from spatia.engine.models.preview import FILLED_DEPTH_CONFIDENCE, PreviewGenerator


def _cameras(frames, width, height):
    eye = np.stack([np.linspace(0, 1, frames), np.full(frames, -5.0), np.zeros(frames)], axis=1)
    return Cameras.look_at(eye, [0, 0, 0], width=width, height=height)


def _request(projection, depth, hole, **kwargs):
    f, h, w = hole.shape
    return GenerationRequest("preview", projection, depth, hole, _cameras(f, w, h), **kwargs)


def _random_clip(frames=5, height=36, width=52, seed=0):
    rng = np.random.default_rng(seed)
    projection = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    depth = rng.uniform(1, 4, (frames, height, width)).astype(np.float32)
    hole = np.zeros((frames, height, width), bool)
    for f in range(frames):
        hole[f, 8:20, 10 + 2 * f : 30 + 2 * f] = True
    depth[hole] = 0
    projection[hole] = 0
    return projection, depth, hole


def test_push_pull_keeps_known_pixels_and_fills_constant_colour():
    values = np.full((17, 23, 3), [0.2, 0.5, 0.9], np.float32)
    weights = np.ones((17, 23, 1), np.float32)
    weights[4:12, 5:15] = 0
    values[4:12, 5:15] = 123.0  # garbage under the hole must not leak out
    filled = push_pull_fill(values, weights)
    np.testing.assert_allclose(filled, np.broadcast_to([0.2, 0.5, 0.9], filled.shape), atol=1e-5)


def test_push_pull_hole_between_two_colours_gets_values_between_them():
    values = np.zeros((16, 40, 1), np.float32)
    values[:, 20:] = 1.0
    weights = np.ones_like(values)
    weights[:, 12:28] = 0
    filled = push_pull_fill(values, weights)[..., 0]
    hole = filled[:, 12:28]
    assert hole.min() >= 0.0 and hole.max() <= 1.0
    assert hole[:, 0].mean() < 0.5 < hole[:, -1].mean()  # nearer colour dominates each side
    assert np.all(np.diff(hole.mean(axis=0)) >= -1e-6)  # a monotone ramp across the hole


def test_preview_covered_pixels_are_exactly_the_projection_and_holes_are_filled():
    projection, depth, hole = _random_clip()
    result = PreviewGenerator().generate(_request(projection, depth, hole))
    assert result.frames.dtype == np.uint8 and result.frames.shape == projection.shape
    assert result.depth.dtype == np.float32 and result.depth.shape == depth.shape
    np.testing.assert_array_equal(result.frames[~hole], projection[~hole])
    np.testing.assert_array_equal(result.depth[~hole], depth[~hole])
    assert (result.depth[hole] > 0).all()  # every hole got a depth inside the known range
    assert result.depth[hole].min() >= 1 and result.depth[hole].max() <= 4
    assert not np.array_equal(result.frames[hole], projection[hole])  # holes were black, now filled


def test_preview_constant_scene_fills_hole_with_that_colour_and_depth():
    projection = np.full((3, 30, 40, 3), [40, 120, 200], np.uint8)
    depth = np.full((3, 30, 40), 2.5, np.float32)
    hole = np.zeros((3, 30, 40), bool)
    hole[:, 5:25, 8:30] = True
    projection[hole] = 0
    depth[hole] = 0
    result = PreviewGenerator().generate(_request(projection, depth, hole))
    assert np.abs(result.frames[hole].astype(int) - [40, 120, 200]).max() <= 1
    np.testing.assert_allclose(result.depth[hole], 2.5, rtol=1e-5)
    conf = result.info["depth_confidence"]
    assert conf.dtype == np.float32
    np.testing.assert_array_equal(conf[hole], FILLED_DEPTH_CONFIDENCE)
    np.testing.assert_array_equal(conf[~hole], 1.0)


def test_preview_hole_between_two_colours_is_between_them():
    projection = np.zeros((2, 24, 48, 3), np.uint8)
    projection[:, :, 24:] = 200
    depth = np.where(np.arange(48) < 24, 1.0, 3.0).astype(np.float32)[None, None].repeat(24, 1).repeat(2, 0)
    hole = np.zeros((2, 24, 48), bool)
    hole[:, :, 16:32] = True
    result = PreviewGenerator().generate(_request(projection, depth, hole))
    filled = result.frames[hole].astype(int)
    assert filled.min() >= 0 and filled.max() <= 200
    assert result.depth[hole].min() >= 1.0 and result.depth[hole].max() <= 3.0
    left, right = result.frames[0, 12, 17].astype(int), result.frames[0, 12, 30].astype(int)
    assert left.mean() < right.mean()


def test_preview_history_and_first_frame_are_exact():
    projection, depth, hole = _random_clip(frames=6)
    rng = np.random.default_rng(1)
    history = rng.integers(0, 256, (2, 36, 52, 3), dtype=np.uint8)
    result = PreviewGenerator().generate(_request(projection, depth, hole, history=history))
    np.testing.assert_array_equal(result.frames[:2], history)
    first = rng.integers(0, 256, (36, 52, 3), dtype=np.uint8)
    result = PreviewGenerator().generate(_request(projection, depth, hole, first_frame=first))
    np.testing.assert_array_equal(result.frames[0], first)


def test_preview_is_deterministic():
    projection, depth, hole = _random_clip()
    a = PreviewGenerator(workers=2).generate(_request(projection, depth, hole))
    b = PreviewGenerator(workers=1).generate(_request(projection, depth, hole))
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.depth, b.depth)


def test_preview_temporal_smoothing_reduces_change_between_frames_in_shared_holes():
    projection, depth, hole = _random_clip(frames=6)
    rough = PreviewGenerator(temporal_smoothing=0.0).generate(_request(projection, depth, hole)).frames.astype(float)
    smooth = PreviewGenerator(temporal_smoothing=0.8).generate(_request(projection, depth, hole)).frames.astype(float)
    shared = hole[1:] & hole[:-1]
    change = lambda clip: np.abs(clip[1:] - clip[:-1])[shared].mean()  # noqa: E731
    assert change(smooth) < change(rough)


def test_preview_frame_with_no_memory_gets_clip_mean_colour():
    projection = np.full((2, 16, 16, 3), 90, np.uint8)
    depth = np.full((2, 16, 16), 2.0, np.float32)
    hole = np.zeros((2, 16, 16), bool)
    hole[1] = True
    result = PreviewGenerator(temporal_smoothing=0.0).generate(_request(projection, depth, hole))
    assert np.abs(result.frames[1].astype(int) - 90).max() <= 1
    np.testing.assert_allclose(result.depth[1], 2.0, rtol=1e-5)


def test_preview_cancels_between_frames_and_reports_progress_to_one():
    projection, depth, hole = _random_clip()
    calls = []
    with pytest.raises(Cancelled):
        PreviewGenerator().generate(_request(projection, depth, hole), should_cancel=lambda: True)
    PreviewGenerator().generate(_request(projection, depth, hole), progress=lambda f, stage: calls.append((f, stage)))
    fractions = [f for f, _ in calls]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert all(0.0 <= f <= 1.0 and isinstance(stage, str) for f, stage in calls)


def test_get_generator_preview_needs_nothing():
    generator = get_generator("preview")
    assert isinstance(generator, PreviewGenerator)
    assert not generator.requirements.needs_gpu and generator.requirements.weights == ()
    generator.check_available()
