"""The native Spatia generator on tiny random-weight components: transformer, key conversion,
LoRA, pipeline invariants and the VideoGenerator interface. CPU only, no hub access."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from spatia.cameras import Cameras
from spatia.engine.models import Cancelled, GenerationRequest, ModelUnavailable, get_generator
from spatia.engine.models.gpu import RuntimeOptions
from spatia.engine.models.spatia import SpatiaGenerator
from spatia.engine.models.spatia.convert import (
    WeightsMismatch,
    convert_control_state_dict,
    convert_key,
    convert_lora_state_dict,
    load_strict,
)
from spatia.engine.models.spatia.lora import SwitchableLoRA
from spatia.engine.models.spatia.pipeline import known_latent_frames, padded_frame_count
from spatia.engine.models.spatia.tiny import tiny_spatia_pipeline, tiny_spatia_transformer
from spatia.engine.models.spatia.transformer import rotary_for_grid

H = W = 32
CPU = RuntimeOptions(device="cpu")


@pytest.fixture(scope="module")
def pipe():
    return tiny_spatia_pipeline(seed=0)


def _request(frames=11, *, history=0, refs=0, first=False, seed=3, steps=2, guidance=2.0):
    rng = np.random.default_rng(7)
    img = lambda n: rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    return GenerationRequest(
        prompt="a room with a table", negative_prompt="blur", projection=img(frames),
        projection_depth=np.ones((frames, H, W), np.float32), hole_mask=rng.random((frames, H, W)) < 0.3,
        cameras=Cameras.look_at([[0, -3, 1]] * frames, [0, 0, 1], width=W, height=H),
        history=img(history) if history else None, references=img(refs) if refs else None,
        first_frame=img(1)[0] if first else None, seed=seed, steps=steps, guidance=guidance,
    )


# --- numbers and small functions ---------------------------------------------------------------
def test_frame_grid_helpers():
    assert [padded_frame_count(f) for f in (1, 2, 5, 9, 10, 81, 82, 121)] == [1, 5, 5, 9, 13, 81, 85, 121]
    assert [known_latent_frames(f) for f in (0, 1, 4, 5, 9, 12)] == [0, 1, 1, 2, 3, 3]


def test_rotary_matches_diffusers_on_the_regular_grid():
    model = tiny_spatia_transformer()
    cos, sin = model.rope(torch.zeros(1, 4, 3, 4, 6))  # grid 3 x 2 x 3 after the 1x2x2 patch
    mine = rotary_for_grid(model.rope, torch.arange(3), torch.arange(2), torch.arange(3))
    torch.testing.assert_close(mine[0], cos.float())
    torch.testing.assert_close(mine[1], sin.float())


def test_reference_tokens_get_negative_time_and_offset_rows():
    model = tiny_spatia_transformer()
    cos, _ = model._rotary(frames=2, refs=1, height=2, width=2, device="cpu")
    expected_ref, _ = rotary_for_grid(model.rope, torch.tensor([-1]), torch.arange(2, 4), torch.arange(2))
    assert cos.shape[1] == (1 + 2) * 4
    torch.testing.assert_close(cos[:, :4], expected_ref)


# --- key conversion ----------------------------------------------------------------------------
def _diffsynth_control_state_dict(model) -> dict[str, torch.Tensor]:
    """A random control checkpoint in DiffSynth's VaceWanModel naming for `model`'s sizes."""
    dim = model.config.num_attention_heads * model.config.attention_head_dim
    ffn, cin = model.config.ffn_dim, model.config.control_in_channels
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)
    sd = {"vace_patch_embedding.weight": r(dim, cin, 1, 2, 2), "vace_patch_embedding.bias": r(dim)}
    for k in range(len(model.config.control_layers)):
        p = f"vace_blocks.{k}."
        for attn in ("self_attn", "cross_attn"):
            for m in "qkvo":
                sd[f"{p}{attn}.{m}.weight"], sd[f"{p}{attn}.{m}.bias"] = r(dim, dim), r(dim)
            sd[f"{p}{attn}.norm_q.weight"], sd[f"{p}{attn}.norm_k.weight"] = r(dim), r(dim)
        sd[f"{p}norm3.weight"], sd[f"{p}norm3.bias"] = r(dim), r(dim)
        sd[f"{p}ffn.0.weight"], sd[f"{p}ffn.0.bias"] = r(ffn, dim), r(ffn)
        sd[f"{p}ffn.2.weight"], sd[f"{p}ffn.2.bias"] = r(dim, ffn), r(dim)
        sd[f"{p}modulation"] = r(1, 6, dim)
        sd[f"{p}after_proj.weight"], sd[f"{p}after_proj.bias"] = r(dim, dim), r(dim)
        if k == 0:
            sd[f"{p}before_proj.weight"], sd[f"{p}before_proj.bias"] = r(dim, dim), r(dim)
    return sd


def _base_state_dict(model):
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("control_")}


def test_diffsynth_control_checkpoint_fills_every_parameter():
    target = tiny_spatia_transformer(seed=1)
    source = _diffsynth_control_state_dict(target)
    control = convert_control_state_dict(source)
    assert len(control) == len(source)
    load_strict(target, {**_base_state_dict(tiny_spatia_transformer(seed=2)), **control}, source="test")
    torch.testing.assert_close(target.control_blocks[1].attn2.to_out[0].weight, source["vace_blocks.1.cross_attn.o.weight"])
    torch.testing.assert_close(target.control_blocks[0].norm2.weight, source["vace_blocks.0.norm3.weight"])
    torch.testing.assert_close(target.control_blocks[0].proj_in.bias, source["vace_blocks.0.before_proj.bias"])
    torch.testing.assert_close(target.control_blocks[1].scale_shift_table, source["vace_blocks.1.modulation"])
    torch.testing.assert_close(target.control_patch_embedding.weight, source["vace_patch_embedding.weight"])


def test_missing_control_key_fails_naming_it():
    target = tiny_spatia_transformer()
    source = _diffsynth_control_state_dict(target)
    del source["vace_blocks.1.ffn.2.bias"]
    with pytest.raises(WeightsMismatch, match=r"control_blocks\.1\.ffn\.net\.2\.bias"):
        load_strict(target, {**_base_state_dict(target), **convert_control_state_dict(source)}, source="test")


def test_extra_or_unknown_key_fails_naming_it():
    target = tiny_spatia_transformer()
    source = _diffsynth_control_state_dict(target)
    with pytest.raises(WeightsMismatch, match=r"vace_blocks\.0\.mystery\.weight"):
        convert_control_state_dict({**source, "vace_blocks.0.mystery.weight": torch.zeros(1)})
    extra_block = {k.replace("vace_blocks.1.", "vace_blocks.5."): v for k, v in source.items() if "vace_blocks.1." in k}
    with pytest.raises(WeightsMismatch, match=r"unexpected .*control_blocks\.5\."):
        load_strict(target, {**_base_state_dict(target), **convert_control_state_dict({**source, **extra_block})},
                    source="test")


def test_wrong_shape_fails_naming_it():
    target = tiny_spatia_transformer()
    source = _diffsynth_control_state_dict(target)
    source["vace_blocks.0.after_proj.weight"] = torch.zeros(3, 3)
    with pytest.raises(WeightsMismatch, match=r"wrong shape control_blocks\.0\.proj_out\.weight"):
        load_strict(target, {**_base_state_dict(target), **convert_control_state_dict(source)}, source="test")


def test_original_wan_dit_keys_map_to_diffusers_names():
    assert convert_key("blocks.3.self_attn.o.weight") == "blocks.3.attn1.to_out.0.weight"
    assert convert_key("blocks.3.cross_attn.norm_k.weight") == "blocks.3.attn2.norm_k.weight"
    assert convert_key("blocks.0.norm3.bias") == "blocks.0.norm2.bias"
    assert convert_key("blocks.0.modulation") == "blocks.0.scale_shift_table"
    assert convert_key("head.modulation") == "scale_shift_table"
    assert convert_key("time_projection.1.weight") == "condition_embedder.time_proj.weight"
    assert convert_key("blocks.0.unknown.weight") is None


def test_lora_conversion_and_switching():
    model = tiny_spatia_transformer()
    dim = 24
    g = torch.Generator().manual_seed(0)
    raw = {
        "pipe.dit.blocks.1.self_attn.q.lora_A.default.weight": torch.randn(4, dim, generator=g),
        "pipe.dit.blocks.1.self_attn.q.lora_B.default.weight": torch.randn(dim, 4, generator=g),
    }
    factors = convert_lora_state_dict(raw)
    assert list(factors) == ["blocks.1.attn1.to_q"]
    layer = model.blocks[1].attn1.to_q
    x = torch.randn(2, dim)
    base = layer(x)
    lora = SwitchableLoRA(scale=0.5)
    lora.attach(model, factors)
    torch.testing.assert_close(layer(x), base)  # attached but off
    lora.enabled = True
    up, down = factors["blocks.1.attn1.to_q"]
    torch.testing.assert_close(layer(x), base + 0.5 * x @ down.T @ up.T)
    with pytest.raises(WeightsMismatch, match="lora_A or lora_B"):
        convert_lora_state_dict({"pipe.dit.blocks.1.self_attn.q.lora_A.default.weight": torch.zeros(4, dim)})
    with pytest.raises(WeightsMismatch, match="not LoRA weights"):
        convert_lora_state_dict({"pipe.dit.blocks.1.self_attn.zz.lora_A.default.weight": torch.zeros(4, dim)})


# --- pipeline invariants -----------------------------------------------------------------------
def test_history_latents_are_held_and_references_stripped(pipe):
    req = _request(frames=11, history=9, refs=2)
    out = pipe(req.prompt, req.projection, req.hole_mask, negative_prompt="blur", history=req.history,
               references=req.references, num_inference_steps=2, guidance_scale=2.0, seed=1)
    assert out.frames.shape == (11, H, W, 3) and out.frames.dtype == np.uint8
    assert out.info["padded_frames"] == 13 and out.info["known_latents"] == 3 and out.info["reference_latents"] == 2
    assert out.latents.shape[2] == 4  # references dropped: only the clip's 4 latent frames
    expected = pipe.encode_video(pipe._signed(req.history), "cpu")
    torch.testing.assert_close(out.latents[:, :, :3], expected)


def test_first_frame_latent_is_held_in_round_zero(pipe):
    req = _request(frames=9, first=True)
    out = pipe(req.prompt, req.projection, req.hole_mask, first_frame=req.first_frame, num_inference_steps=2,
               guidance_scale=1.0, seed=1, output_type="latent")
    assert out.frames is None
    torch.testing.assert_close(out.latents[:, :, :1], pipe.encode_video(pipe._signed(req.first_frame[None]), "cpu"))


def test_control_inputs_steer_the_result(pipe):
    req = _request(frames=5)
    kwargs = {"num_inference_steps": 2, "guidance_scale": 1.0, "seed": 1, "output_type": "latent"}
    a = pipe(req.prompt, req.projection, req.hole_mask, **kwargs).latents
    b = pipe(req.prompt, req.projection, ~req.hole_mask, **kwargs).latents
    c = pipe(req.prompt, req.projection, req.hole_mask, control_scale=0.0, **kwargs).latents
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_size_not_a_multiple_of_32_fails(pipe):
    with pytest.raises(ValueError, match="multiples of 32"):
        pipe("x", np.zeros((5, 48, 64, 3), np.uint8), np.zeros((5, 48, 64), bool), num_inference_steps=1)


# --- the VideoGenerator interface --------------------------------------------------------------
@pytest.mark.slow
def test_generator_end_to_end_is_deterministic_with_progress(pipe):
    gen = SpatiaGenerator(pipeline=pipe, runtime=CPU)
    seen, stages = [], []
    req = _request(frames=10, history=5, refs=1)
    a = gen.generate(req, progress=lambda f, s: (seen.append(f), stages.append(s)))
    b = gen.generate(req)
    assert a.frames.shape == (10, H, W, 3)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.frames[:5], req.history)  # pinned history
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert "denoising step 2/2" in stages
    assert a.info["mode"] == "continuation" and a.info["steps"] == 2
    c = gen.generate(_request(frames=10, history=5, refs=1, seed=4))
    assert not np.array_equal(a.frames[5:], c.frames[5:])


def test_lora_is_off_in_round_zero_and_on_later(pipe):
    lora = SwitchableLoRA(scale=1.0)
    gen = SpatiaGenerator(pipeline=pipe, lora=lora, runtime=CPU)
    states = []
    hook = pipe.transformer.blocks[0].register_forward_pre_hook(lambda *a: states.append(lora.enabled))
    try:
        r0 = gen.generate(_request(frames=5, first=True, guidance=1.0))
        gen.generate(_request(frames=5, history=1, guidance=1.0))
    finally:
        hook.remove()
    assert r0.info["mode"] == "image-to-video" and not r0.info["lora"]
    assert states == [False, False, True, True]


def test_cancel_raises_between_steps(pipe):
    gen = SpatiaGenerator(pipeline=pipe, runtime=CPU)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled):
        gen.generate(_request(frames=5, steps=3), should_cancel=cancel)
    assert len(calls) == 2


def test_registered_and_unavailable_without_weights_or_gpu(monkeypatch):
    gen = get_generator("spatia-5b")
    assert isinstance(gen, SpatiaGenerator) and gen.requirements.needs_gpu
    with pytest.raises(ModelUnavailable, match="CUDA GPU|spatia models download spatia-5b"):
        gen.check_available()
    gen = SpatiaGenerator(runtime=CPU)
    with pytest.raises(ModelUnavailable, match="spatia models download spatia-5b"):
        gen.check_available()


# --- loading from folders laid out like the downloads ------------------------------------------
_TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_", "time_embedding."), ("condition_embedder.text_embedder.linear_", "text_embedding."),
    ("condition_embedder.time_proj", "time_projection.1"), ("attn1.to_out.0", "self_attn.o"), ("attn2.to_out.0", "cross_attn.o"),
    ("attn1.to_", "self_attn."), ("attn2.to_", "cross_attn."), ("attn1.", "self_attn."), ("attn2.", "cross_attn."),
    ("norm2", "norm3"), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
]


def _original_name(key: str) -> str:
    """Our diffusers key -> the original Wan name (the inverse of the conversion table)."""
    if key == "scale_shift_table":
        return "head.modulation"
    if key.startswith("proj_out."):
        return key.replace("proj_out.", "head.head.")
    for ours, original in _TO_ORIGINAL:
        key = key.replace(ours, original)
    key = key.replace("time_embedding.1", "time_embedding.0").replace("text_embedding.1", "text_embedding.0")
    return key.replace("scale_shift_table", "modulation")


def _write_download_folders(tmp_path, pipe, *, original_naming: bool = False):
    """tmp/base: a Wan2.2-TI2V-5B-Diffusers-like folder of the tiny pipeline; tmp/spatia: the
    control branch and a LoRA in DiffSynth naming, under the names the release does not fix."""
    from safetensors.torch import save_file

    base, spatia = tmp_path / "base", tmp_path / "spatia"
    pipe.tokenizer.save_pretrained(base / "tokenizer")
    pipe.text_encoder.save_pretrained(base / "text_encoder")
    pipe.vae.save_pretrained(base / "vae")
    (base / "transformer").mkdir(parents=True)
    pipe.transformer.save_config(base / "transformer")
    weights = _base_state_dict(pipe.transformer)
    if original_naming:
        weights = {_original_name(k): v for k, v in weights.items()}
        assert all(convert_key(k) is not None for k in weights)
    half = len(weights) // 2
    items = sorted(weights.items())
    save_file({k: v.contiguous() for k, v in items[:half]}, base / "transformer" / "model-00001-of-00002.safetensors")
    save_file({k: v.contiguous() for k, v in items[half:]}, base / "transformer" / "model-00002-of-00002.safetensors")
    spatia.mkdir()
    control = _diffsynth_control_state_dict(pipe.transformer)
    save_file(control, spatia / "control.safetensors")
    g = torch.Generator().manual_seed(5)
    save_file({"pipe.dit.blocks.2.ffn.0.lora_A.default.weight": torch.randn(4, 24, generator=g),
               "pipe.dit.blocks.2.ffn.0.lora_B.default.weight": torch.randn(32, 4, generator=g)},
              spatia / "lora.safetensors")
    return base, spatia, control


@pytest.mark.slow
def test_generator_loads_download_folders_and_runs(tmp_path, pipe):
    base, spatia, control = _write_download_folders(tmp_path, pipe)
    gen = SpatiaGenerator(base_dir=base, spatia_dir=spatia, runtime=CPU)
    gen.check_available()
    result = gen.generate(_request(frames=5, history=1, guidance=1.0))
    assert result.frames.shape == (5, H, W, 3) and result.info["lora"]
    loaded = gen._pipe.transformer
    torch.testing.assert_close(loaded.control_blocks[0].attn1.to_k.weight, control["vace_blocks.0.self_attn.k.weight"])
    torch.testing.assert_close(loaded.blocks[3].ffn.net[2].weight, pipe.transformer.blocks[3].ffn.net[2].weight)
    assert loaded.blocks[2].ffn.net[0].proj.lora_up.shape == (32, 4)


def test_base_transformer_in_original_naming_loads_too(tmp_path, pipe):
    from spatia.engine.models.spatia.loading import load_spatia_transformer

    base, spatia, _ = _write_download_folders(tmp_path, pipe, original_naming=True)
    model = load_spatia_transformer(base / "transformer", spatia / "control.safetensors", dtype=torch.float32,
                                    control_layers=(0, 2), control_in_channels=8)
    torch.testing.assert_close(model.blocks[0].attn1.to_q.weight, pipe.transformer.blocks[0].attn1.to_q.weight)


# --- the inputs the reference gives the model ----------------------------------------------------
def test_sampling_schedule_is_the_references_flow_unipc_grid():
    from spatia.engine.models.spatia.pipeline import sampling_schedule

    timesteps, sigmas = sampling_schedule(40, 5.0)
    assert timesteps.shape == (40,) and sigmas.shape == (41,)
    # first: sigma 0.999 -> 5 * 0.999 / (1 + 4 * 0.999) = 4.995 / 4.996 = 0.9997998 -> t = int(999.7998) = 999
    assert sigmas[0].item() == pytest.approx(4.995 / 4.996, abs=1e-7) and timesteps[0].item() == 999
    # last: sigma 0.999 / 40 = 0.024975 -> 0.124875 / 1.0999 = 0.1135340 -> t = 113
    assert sigmas[39].item() == pytest.approx(0.124875 / 1.0999, abs=1e-7) and timesteps[39].item() == 113
    assert sigmas[40].item() == 0.0
    assert torch.all(timesteps[1:] < timesteps[:-1])
    one_t, one_s = sampling_schedule(1, 1.0)
    assert one_t.tolist() == [999.0] and one_s.tolist() == pytest.approx([0.999, 0.0])
    with pytest.raises(ValueError, match="steps"):
        sampling_schedule(0, 5.0)


def _captured_transformer_inputs(pipe):
    seen = []

    def hook(module, args, kwargs):
        seen.append((args[1].clone(), kwargs["control_latents"].clone()))

    return seen, pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)


def _points_request(frames=5, round_index=2, **kwargs):
    rng = np.random.default_rng(11)
    xyz = (rng.random((3000, 3)) * [2.0, 0.6, 2.0] + [-1.0, -0.3, -1.0]).astype(np.float32)
    rgb = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
    base = _request(frames=frames, **kwargs)
    from dataclasses import replace

    return replace(base, points_xyz=xyz, points_rgb=rgb, round_index=round_index)


def test_spatia_feeds_the_transformer_the_control_render_score_and_reference_timesteps(pipe):
    from spatia.engine.models.spatia.pipeline import sampling_schedule
    from spatia.engine.render import render_control, voxel_downsample

    gen = SpatiaGenerator(pipeline=pipe, runtime=CPU, shift=5.0)
    req = _points_request(frames=5, round_index=2, steps=3, guidance=1.0, first=True)
    seen, handle = _captured_transformer_inputs(pipe)
    try:
        result = gen.generate(req)
    finally:
        handle.remove()
    assert result.info["control"] == "render_control" and result.info["control_voxel_size"] == pytest.approx(0.02)
    # The control the transformer got: the points averaged per 2 cm voxel, rendered as soft disks,
    # through uint8 and the reference's H.264 round trip.
    from spatia.engine.models.spatia.generator import video_round_trip

    xyz, rgb = voxel_downsample(req.points_xyz, req.points_rgb, 0.02)
    assert result.info["control_points"] == len(xyz) < len(req.points_xyz)
    video, score = render_control(xyz, rgb, req.cameras).to_uint8()
    assert 0 < (score == 255).mean() < 1 and ((score > 0) & (score < 255)).any()  # holes, cover and soft edges
    assert result.info["control_round_trip"]
    expected = pipe.control_latents(*video_round_trip(video, score), "cpu")
    assert len(seen) == 3
    for _, control in seen:
        torch.testing.assert_close(control, expected)
    # Timesteps: the reference's grid; the first frame's latent held clean at 0.
    expected_t, _ = sampling_schedule(3, 5.0)
    assert [t[0, -1].item() for t, _ in seen] == expected_t.tolist()
    assert all(t[0, 0].item() == 0 for t, _ in seen)


def test_score_video_enters_as_the_reference_encodes_it(pipe):
    video = np.full((5, H, W, 3), 77, np.uint8)
    score = np.zeros((5, H, W), np.uint8)
    score[:, :, W // 2:] = 255
    latents = pipe.control_latents(video, score, "cpu")
    z = pipe.vae.config.z_dim
    torch.testing.assert_close(latents[:, :z], pipe.encode_video(torch.full((5, H, W, 3), 77 / 127.5 - 1), "cpu"))
    half = torch.zeros((5, H, W, 3))
    half[:, :, W // 2:] = 1.0
    torch.testing.assert_close(latents[:, z:], pipe.encode_video(half, "cpu"))
    # a float score in [0, 1] is the same picture
    torch.testing.assert_close(pipe.control_latents(video, score.astype(np.float32) / 255, "cpu"), latents)
    with pytest.raises(ValueError, match="control_score must lie in"):
        pipe.control_latents(video, np.full((5, H, W), 2.0, np.float32), "cpu")


def test_a_request_without_points_falls_back_to_the_projection_and_says_so(pipe):
    gen = SpatiaGenerator(pipeline=pipe, runtime=CPU)
    result = gen.generate(_request(frames=5, steps=1, guidance=1.0, first=True))
    assert result.info["control"].startswith("z-buffer projection")


def test_request_points_are_validated():
    base = _request(frames=5)
    from dataclasses import replace

    with pytest.raises(ValueError, match="points_xyz and points_rgb come together"):
        replace(base, points_xyz=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="points_xyz must be float32"):
        replace(base, points_xyz=np.zeros((2, 3)), points_rgb=np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"points_rgb must be uint8 \[2, 3\]"):
        replace(base, points_xyz=np.zeros((2, 3), np.float32), points_rgb=np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="round_index"):
        replace(base, round_index=-1)


def test_leaving_the_trained_size_or_round_length_is_recorded(pipe):
    from spatia.engine.models.spatia.generator import out_of_distribution

    result = SpatiaGenerator(pipeline=pipe, runtime=CPU).generate(_request(frames=5, steps=1, guidance=1.0, first=True))
    assert result.info["out_of_distribution"] == ["size 32x32 (trained at 1248x704)", "5 frames in a first round (trained: 121)"]
    trained = GenerationRequest(
        prompt="p", projection=np.zeros((81, 704, 1248, 3), np.uint8), projection_depth=np.zeros((81, 704, 1248), np.float32),
        hole_mask=np.zeros((81, 704, 1248), bool), cameras=Cameras.look_at([[0, -3, 1]] * 81, [0, 0, 1], width=1248, height=704),
    )
    assert out_of_distribution(trained, continuation=True) == []
    assert out_of_distribution(trained, continuation=False) == ["81 frames in a first round (trained: 121)"]


# --- the reference's video round trip of the control videos --------------------------------------
def test_control_videos_go_through_the_reference_h264_round_trip():
    from spatia.engine.models.spatia.generator import video_round_trip
    from spatia.formats.video import h264_round_trip

    rng = np.random.default_rng(3)
    # a smooth image with a sharp-edged disk: what a control render looks like, and what H.264 blurs
    yy, xx = np.mgrid[0:64, 0:96]
    base = np.stack([xx * 2, yy * 3, (xx + yy)], -1).astype(np.uint8)
    video = np.repeat(base[None], 9, axis=0)
    video[:, 20:40, 30:50] = rng.integers(0, 255, 3, dtype=np.uint8)
    score = np.full((9, 64, 96), 255, np.uint8)
    score[:, 10:50, 20:70] = 0
    trip_video, trip_score = video_round_trip(video, score)
    assert trip_video.shape == video.shape and trip_score.shape == (9, 64, 96, 3) and trip_score.dtype == np.uint8
    difference = np.abs(trip_video.astype(int) - video)
    assert 0 < difference.mean() < 8  # lossy, but the same picture
    np.testing.assert_array_equal(trip_video, h264_round_trip(video))  # deterministic
    # the score is encoded as the reference renders it (white where covered) and inverted back
    assert abs(trip_score[:, 30, 40].astype(int) - 0).max() <= 4 and abs(trip_score[:, 2, 2].astype(int) - 255).max() <= 4
    # a size that is not a multiple of 16 is scaled by ffmpeg and comes back at its own size
    odd = h264_round_trip(video[:, :50, :90])
    assert odd.shape == (9, 50, 90, 3)


def test_the_generator_feeds_round_tripped_control_videos_unless_turned_off(pipe):
    req = _request(frames=5, first=True, guidance=1.0)
    xyz = np.random.default_rng(0).uniform([-1, -1, 2], [1, 1, 4], (400, 3)).astype(np.float32)
    req = replace(req, points_xyz=xyz, points_rgb=np.full((400, 3), 200, np.uint8))
    faithful = SpatiaGenerator(pipeline=pipe, runtime=CPU).generate(req)
    exact = SpatiaGenerator(pipeline=pipe, runtime=CPU, video_round_trip=False).generate(req)
    assert faithful.info["control_round_trip"] and not exact.info["control_round_trip"]
    assert not np.array_equal(faithful.frames[1:], exact.frames[1:])
