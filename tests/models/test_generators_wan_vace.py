"""The wan-vace generator on a tiny random-weight WanVACEPipeline: mask semantics, history,
references, determinism, progress, cancellation. CPU only, no hub access."""

from __future__ import annotations

import numpy as np
import pytest
from spatia.cameras import Cameras
from spatia.engine.models import Cancelled, GenerationRequest, ModelUnavailable, get_generator
from spatia.engine.models.gpu import RuntimeOptions, next_vram_mode, oom_advice
from spatia.engine.models.wan_vace import WanVaceGenerator, tiny_wan_vace_pipeline, vace_inputs

H = W = 16
CPU = RuntimeOptions(device="cpu")


@pytest.fixture(scope="module")
def generator():
    return WanVaceGenerator(pipeline=tiny_wan_vace_pipeline(), runtime=CPU)


def _request(frames=7, *, history=0, refs=0, first=False, seed=0, steps=2):
    rng = np.random.default_rng(11)
    img = lambda n: rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    return GenerationRequest(
        prompt="a street with a car", projection=img(frames), projection_depth=np.ones((frames, H, W), np.float32),
        hole_mask=rng.random((frames, H, W)) < 0.4,
        cameras=Cameras.look_at([[0, -3, 1]] * frames, [0, 0, 1], width=W, height=H),
        history=img(history) if history else None, references=img(refs) if refs else None,
        first_frame=img(1)[0] if first else None, seed=seed, steps=steps, guidance=2.0,
    )


def test_mask_is_white_in_holes_and_black_on_known_pixels():
    req = _request(frames=6, history=2)
    video, mask = vace_inputs(req, 9)
    assert video.shape == (9, H, W, 3) and mask.shape == (9, H, W, 3)
    np.testing.assert_array_equal(video[:2], req.history)
    assert (mask[:2] == 0).all()  # history: known, black
    np.testing.assert_array_equal(mask[2:6, ..., 0] == 255, req.hole_mask[2:])
    np.testing.assert_array_equal(video[2:6], req.projection[2:])
    np.testing.assert_array_equal(video[6:], np.repeat(req.projection[-1:], 3, axis=0))  # padding repeats the last
    first = _request(frames=5, first=True)
    video, mask = vace_inputs(first, 5)
    np.testing.assert_array_equal(video[0], first.first_frame)
    assert (mask[0] == 0).all() and (mask[1:, ..., 0] == 255).any()


@pytest.mark.slow
def test_end_to_end_deterministic_with_progress(generator):
    seen = []
    req = _request(frames=7, history=2, refs=1)
    a = generator.generate(req, progress=lambda f, s: seen.append(f))
    b = generator.generate(req)
    assert a.frames.shape == (7, H, W, 3) and a.frames.dtype == np.uint8
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.frames[:2], req.history)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert a.info["reference_images"] == 1 and a.info["padded_frames"] == 9
    c = generator.generate(_request(frames=7, history=2, refs=1, seed=1))
    assert not np.array_equal(a.frames[2:], c.frames[2:])


def test_cancel_raises(generator):
    calls = []
    with pytest.raises(Cancelled):
        generator.generate(_request(frames=5, steps=3), should_cancel=lambda: calls.append(1) or len(calls) > 1)
    assert len(calls) == 2  # once before the loop, once after the first step


def test_unavailable_without_weights():
    gen = WanVaceGenerator("wan-vace-14b", runtime=CPU)
    with pytest.raises(ModelUnavailable, match="spatia models download wan-vace-14b"):
        gen.check_available()
    assert isinstance(get_generator("wan-vace-1.3b"), WanVaceGenerator)


def test_vram_mode_advice():
    assert next_vram_mode("gpu") == "model" and next_vram_mode("sequential") is None
    assert "vram_mode='group'" in oom_advice(RuntimeOptions(vram_mode="model"))
    with pytest.raises(ValueError, match="unknown VRAM mode"):
        RuntimeOptions(vram_mode="tiny")


@pytest.mark.slow
def test_previews_come_every_step_at_latent_size_and_change_nothing(generator):
    sent = []

    def sink(step, steps, frames):
        sent.append((step, steps, frames.shape, frames.dtype))

    sink.every = 1
    req = _request(frames=7, history=2, refs=1, steps=3)
    with_previews = generator.generate(req, preview=sink)
    assert [(s, n) for s, n, _, _ in sent] == [(1, 3), (2, 3), (3, 3)]
    # the clip's 3 latent frames (9 padded frames), the reference's dropped, 8x smaller
    assert {shape for _, _, shape, _ in sent} == {(3, H // 8, W // 8, 3)} and sent[0][3] == np.uint8
    np.testing.assert_array_equal(with_previews.frames, generator.generate(req).frames)
