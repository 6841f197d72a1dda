"""spatia-5b at any size with random weights, built straight on the device it will run on.

For measuring speed and memory where no weights are at hand: the same classes and code paths
as the real checkpoints (`loading.py`), sized by plain config dicts. Every module is created on
the meta device (no memory at all), then each parameter is allocated once, on `device`, in
`dtype`, and filled there from a seeded generator: a 5B transformer and an 11 GB text encoder
never pass through host memory, and nothing is downloaded.

Initial values keep activations in range, so a forward pass of the random model does the same
arithmetic on ordinary numbers as the trained one: matrices, convolutions and embeddings are
normal with variance 1 / fan-in, one-dimensional weights (norm scales) are 1, biases and other
vectors 0. The outputs mean nothing; only the time and the memory they take are real.

`SPATIA_5B` holds the full-size components (Wan2.2-TI2V-5B's transformer with Spatia's control
branch, the Wan2.2 VAE, UMT5-XXL); `TINY` the sizes of `tiny.py`'s test models. The tokenizer is
`tiny.tiny_tokenizer` at every size: prompts are padded to 512 tokens either way, so the text
encoder does the same work as with the real vocabulary.
"""

from __future__ import annotations

import math

import torch

from .config import (
    CONTROL_IN_CHANNELS,
    CONTROL_LAYERS,
    DEFAULT_SHIFT,
    TI2V_5B_TRANSFORMER,
)

# diffusers AutoencoderKLWan config of Wan-AI/Wan2.2-TI2V-5B-Diffusers/vae (the latent statistics
# are left at 0 / 1: they shift numbers, not work).
WAN22_VAE = {
    "base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
    "attn_scales": [], "temperal_downsample": [False, True, True], "dropout": 0.0, "is_residual": True,
    "in_channels": 12, "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16, "scale_factor_temporal": 4,
    "latents_mean": [0.0] * 48, "latents_std": [1.0] * 48,
}

# transformers UMT5Config of Wan's text encoder (google/umt5-xxl's encoder).
UMT5_XXL = {
    "vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
    "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0, "layer_norm_epsilon": 1e-6,
}

SPATIA_5B = {
    "transformer": {**TI2V_5B_TRANSFORMER, "control_layers": CONTROL_LAYERS, "control_in_channels": CONTROL_IN_CHANNELS},
    "vae": WAN22_VAE,
    "text_encoder": UMT5_XXL,
}

# The sizes of tiny.py's models (tiny_spatia_pipeline): clips in multiples of 32 pixels.
TINY = {
    "transformer": {"num_attention_heads": 2, "attention_head_dim": 12, "in_channels": 4, "out_channels": 4,
                    "text_dim": 16, "freq_dim": 16, "ffn_dim": 32, "num_layers": 4, "rope_max_seq_len": 64,
                    "control_layers": (0, 2), "control_in_channels": 8},
    "vae": {"base_dim": 8, "decoder_base_dim": 8, "z_dim": 4, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1,
            "temperal_downsample": [False, True, True], "is_residual": True, "patch_size": 2, "in_channels": 12,
            "out_channels": 12, "scale_factor_spatial": 16, "scale_factor_temporal": 4, "latents_mean": [0.0] * 4,
            "latents_std": [1.0] * 4},
    "text_encoder": {"d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2,
                     "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16},
}


def initial_std(shape) -> float:
    """Standard deviation of a random matrix / kernel / embedding: 1 / sqrt(fan-in)."""
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    return 1.0 / math.sqrt(max(fan_in, 1))


@torch.no_grad()
def materialise(module: torch.nn.Module, device, dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
    """Give every parameter still on the meta device real storage on `device` (in `dtype` when it
    is floating point), filled as the module docstring says; tied parameters stay tied. Buffers
    (made for real at construction: rotary tables and the like) move to `device` as they are.
    Deterministic for a given seed and parameter order."""
    device = torch.device(device)
    generator = torch.Generator(device=device if device.type != "meta" else "cpu").manual_seed(int(seed))
    made: dict[int, torch.nn.Parameter] = {}
    for _, owner in module.named_modules(remove_duplicate=False):
        for name, param in list(owner._parameters.items()):
            if param is None or not param.is_meta:
                continue
            if id(param) not in made:
                kind = dtype if param.dtype.is_floating_point else param.dtype
                data = torch.empty(param.shape, device=device, dtype=kind)
                if device.type != "meta":
                    if data.dim() >= 2:
                        data.normal_(0.0, initial_std(data.shape), generator=generator)
                    elif name == "weight":
                        data.fill_(1.0)
                    else:
                        data.zero_()
                made[id(param)] = torch.nn.Parameter(data, requires_grad=False)
            owner._parameters[name] = made[id(param)]
        for name, buffer in list(owner._buffers.items()):
            if buffer is not None and device.type != "meta":
                owner._buffers[name] = buffer.to(device)
    return module


def _on_meta(build):
    from accelerate import init_empty_weights

    with init_empty_weights():
        return build()


def random_spatia_transformer(config: dict, device, dtype: torch.dtype, seed: int = 0):
    from .transformer import SpatiaTransformer3DModel

    config = dict(config)
    config["control_layers"] = tuple(config.get("control_layers", CONTROL_LAYERS))
    model = _on_meta(lambda: SpatiaTransformer3DModel(**config))
    return materialise(model, device, dtype, seed).eval()


def random_wan_vae(config: dict, device, dtype: torch.dtype, seed: int = 0):
    from diffusers import AutoencoderKLWan

    model = _on_meta(lambda: AutoencoderKLWan(**config))
    return materialise(model, device, dtype, seed).eval()


def random_umt5_encoder(config: dict, vocab_size: int, device, dtype: torch.dtype, seed: int = 0):
    """UMT5 encoder; the vocabulary is the config's when it gives one, else the tokenizer's."""
    from transformers import UMT5Config, UMT5EncoderModel

    settings = {"vocab_size": vocab_size, **config}
    model = _on_meta(lambda: UMT5EncoderModel(UMT5Config(**settings)))
    model.tie_weights()  # the input embedding is `shared`, as in the checkpoints
    return materialise(model, device, dtype, seed).eval()


def random_spatia_pipeline(components: dict = SPATIA_5B, *, device="cuda", dtype: torch.dtype = torch.bfloat16,
                           seed: int = 0, park_device=None):
    """A SpatiaPipeline of random components sized by `components` (SPATIA_5B, TINY or your own:
    keys transformer, vae, text_encoder), every weight made on `device` in `dtype` (the VAE in
    float32 off CUDA, as the runtime places it). `park_device`: where each component goes as
    soon as it is made (the host, for the offloading VRAM modes), so `device` never holds more
    than the largest component."""
    from .pipeline import SpatiaPipeline
    from .tiny import flow_unipc_scheduler, tiny_tokenizer

    device = torch.device(device)
    tokenizer = tiny_tokenizer()
    vae_dtype = dtype if device.type == "cuda" else torch.float32

    def parked(module):
        return module.to(park_device) if park_device is not None else module

    return SpatiaPipeline(
        tokenizer=tokenizer,
        text_encoder=parked(random_umt5_encoder(components["text_encoder"], len(tokenizer), device, dtype, seed)),
        vae=parked(random_wan_vae(components["vae"], device, vae_dtype, seed + 1)),
        transformer=parked(random_spatia_transformer(components["transformer"], device, dtype, seed + 2)),
        scheduler=flow_unipc_scheduler(DEFAULT_SHIFT),
    )


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["SPATIA_5B", "TINY", "UMT5_XXL", "WAN22_VAE", "initial_std", "materialise", "parameter_count",
           "random_spatia_pipeline", "random_spatia_transformer", "random_umt5_encoder", "random_wan_vae"]
