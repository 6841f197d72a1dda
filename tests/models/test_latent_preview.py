"""Live latent previews: the projection fit, the pooling grid, the schedule, and the previews the
Spatia pipeline sends while it denoises (tiny random-weight components)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatia.cameras import Cameras
from spatia.engine.models.base import GenerationRequest, PreviewingGenerator, with_preview
from spatia.engine.models.latent_preview import LatentProjection, PreviewSchedule, fit_projection, pooled_colours
from spatia.engine.models.spatia import SpatiaGenerator
from spatia.engine.models.gpu import RuntimeOptions
from spatia.engine.models.spatia.tiny import tiny_spatia_pipeline

H, W = 32, 64


def test_fit_recovers_a_known_linear_map_from_noisy_pairs():
    rng = torch.Generator().manual_seed(3)
    c = 48
    factors = torch.randn(c, 3, generator=rng) * 0.1
    bias = torch.tensor([0.2, -0.1, 0.05])
    latents = torch.randn(c, 5, 16, 24, generator=rng)
    colours = torch.einsum("clhw,ck->lhwk", latents, factors) + bias
    colours = colours + 0.01 * torch.randn(colours.shape, generator=rng)
    fitted = fit_projection([(latents, colours)], ridge=1e-6)
    torch.testing.assert_close(fitted.factors, factors, atol=3e-3, rtol=0)
    torch.testing.assert_close(fitted.bias, bias, atol=5e-3, rtol=0)
    # a different latent with the same map: the projection predicts its colours
    other = torch.randn(c, 2, 6, 8, generator=rng)
    expected = ((torch.einsum("clhw,ck->lhwk", other, factors) + bias).clamp(-1, 1) + 1) * 127.5
    assert np.abs(fitted(other).astype(float) - expected.numpy()).max() <= 2.0


def test_pooling_follows_the_causal_grid():
    video = np.zeros((9, 32, 32, 3), np.uint8)
    video[0] = 255  # frame 0 alone is latent frame 0
    video[1:5, :16, :16] = 255  # frames 1-4 are latent frame 1, only the top-left 16x16 cell lit
    video[5:7] = 255  # frames 5-8 are latent frame 2: half of its frames lit
    pooled = pooled_colours(video, 3, temporal_factor=4, spatial_factor=16)
    assert pooled.shape == (3, 2, 2, 3)
    torch.testing.assert_close(pooled[0], torch.ones(2, 2, 3))
    assert pooled[1, 0, 0, 0] == pytest.approx(1.0) and pooled[1, 1, 1, 0] == pytest.approx(-1.0)
    torch.testing.assert_close(pooled[2], torch.zeros(2, 2, 3))


def test_schedule_sends_every_nth_step_and_the_last():
    sent = []
    projection = LatentProjection(torch.eye(4, 3), torch.zeros(3))
    schedule = PreviewSchedule(lambda step, steps, frames: sent.append((step, frames.shape)), projection, every=3)
    for step in range(1, 8):
        schedule(step, 7, torch.zeros(4, 2, 3, 5))
    assert [s for s, _ in sent] == [3, 6, 7]
    assert sent[0][1] == (2, 3, 5, 3)
    with pytest.raises(ValueError, match="every >= 1"):
        PreviewSchedule(lambda *a: None, projection, every=0)


def _pipeline_48():
    """The tiny pipeline with Wan2.2's 48 latent channels."""
    from spatia.engine.models.spatia.pipeline import SpatiaPipeline
    from spatia.engine.models.spatia.tiny import (flow_unipc_scheduler, tiny_spatia_transformer, tiny_text_encoder,
                                                  tiny_tokenizer, tiny_wan22_vae)

    tokenizer = tiny_tokenizer()
    return SpatiaPipeline(tokenizer=tokenizer, text_encoder=tiny_text_encoder(len(tokenizer), 0),
                          vae=tiny_wan22_vae(0, z_dim=48), transformer=tiny_spatia_transformer(0, z_dim=48),
                          scheduler=flow_unipc_scheduler())


def test_pipeline_previews_show_the_known_frame():
    """The latent frame held to the first image shows that image: its preview is closer to the image
    (pooled to latent cells) than the image's own mean colour is, and closer than to the control video."""
    pipe = _pipeline_48()
    rng = np.random.default_rng(5)
    frames = 5
    # smooth coloured content, so that a 16x16 cell has a colour worth predicting
    ramp = np.linspace(0, 255, W, dtype=np.float32)[None, None, :, None]
    base = np.broadcast_to(ramp, (frames, H, W, 3)).copy()
    base[..., 1] = 255 - base[..., 1]
    base[..., 2] = rng.integers(0, 256)
    control = base.astype(np.uint8)
    first = control[0, :, ::-1].copy()  # the ramp the other way round: not what the control video shows
    sent = []
    out = pipe("a room", control, np.zeros((frames, H, W), bool), first_frame=first, num_inference_steps=3,
               guidance_scale=1.0, seed=1, preview=lambda s, n, f: sent.append((s, n, f.copy())), preview_every=2,
               output_type="latent")
    assert [(s, n) for s, n, _ in sent] == [(2, 3), (3, 3)]
    latent_frames = out.latents.shape[2]
    assert sent[-1][2].shape == (latent_frames, H // 16, W // 16, 3) and sent[-1][2].dtype == np.uint8
    target = pooled_colours(first[None], 1, 4, 16).numpy()[0]
    shown = sent[-1][2][0].astype(np.float32) / 127.5 - 1
    error = np.abs(shown - target).mean()
    flat = np.abs(target - target.mean(axis=(0, 1))).mean()
    wrong = np.abs(shown - pooled_colours(control[:1], 1, 4, 16).numpy()[0]).mean()
    assert error < 0.5 * flat and error < 0.5 * wrong, (error, flat, wrong)


class _Plain:
    name = "plain"
    supports_preview = False

    def generate(self, request, progress=None, should_cancel=None):
        return "plain result"


def test_previewing_generator_passes_previews_only_where_supported():
    def sink(*args):
        pass

    assert with_preview(_Plain(), None).__class__ is _Plain
    wrapped = with_preview(_Plain(), sink)
    assert isinstance(wrapped, PreviewingGenerator) and wrapped.name == "plain"
    assert wrapped.generate(None) == "plain result"  # no preview= given to a generator that takes none


@pytest.mark.slow
def test_spatia_generator_sends_previews_through_the_wrapper():
    pipe = tiny_spatia_pipeline(seed=0)
    gen = SpatiaGenerator(pipeline=pipe, runtime=RuntimeOptions(device="cpu"))
    rng = np.random.default_rng(1)
    request = GenerationRequest(
        prompt="a room", projection=rng.integers(0, 256, (5, H, W, 3), dtype=np.uint8),
        projection_depth=np.ones((5, H, W), np.float32), hole_mask=np.zeros((5, H, W), bool),
        cameras=Cameras.look_at([[0, -3, 1]] * 5, [0, 0, 1], width=W, height=H), steps=2, guidance=1.0,
        first_frame=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
    )
    sent = []

    def sink(step, steps, frames):
        sent.append(step)

    sink.every = 1
    with_preview(gen, sink).generate(request)
    assert sent == [1, 2]
