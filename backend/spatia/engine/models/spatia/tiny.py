"""Tiny random-weight components with the real classes and code paths, for tests and benchmarks:
a word-level tokenizer built in memory, a 1-layer UMT5 encoder, a Wan2.2-style residual VAE
(patch 2, 16x spatial, 4x temporal compression) and a 4-layer Spatia transformer. Nothing is
downloaded; a seed makes them deterministic.
"""

from __future__ import annotations

from ..tiny import _seeded

TINY_WORDS = ["a", "room", "with", "wooden", "floor", "table", "chair", "window", "light", "camera", "moves", "forward", "left", "right", "street", "tree", "car", "person", "house", "sky", "cloud", "garden", "bench", "lamp", "wall", "door", "blur", "noise", "low", "quality"]


def tiny_tokenizer():
    """A UMT5-compatible fast tokenizer over a few words (<pad>=0, </s>=1, <unk>=2), built in memory."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in TINY_WORDS:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_text_encoder(vocab_size: int, seed: int = 0, d_model: int = 16):
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                        relative_attention_num_buckets=8, relative_attention_max_distance=16)
    with _seeded(seed):
        return UMT5EncoderModel(config).eval()


def tiny_wan22_vae(seed: int = 0, z_dim: int = 4):
    """Wan2.2-style VAE: residual, patch 2, three downsamples -> 16x spatial, 4x temporal."""
    from diffusers import AutoencoderKLWan

    with _seeded(seed):
        return AutoencoderKLWan(
            base_dim=8, decoder_base_dim=8, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
            temperal_downsample=[False, True, True], is_residual=True, patch_size=2, in_channels=12, out_channels=12,
            scale_factor_spatial=16, scale_factor_temporal=4, latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim,
        ).eval()


def tiny_spatia_transformer(seed: int = 0, z_dim: int = 4, text_dim: int = 16, num_layers: int = 4):
    from .transformer import SpatiaTransformer3DModel

    with _seeded(seed):
        return SpatiaTransformer3DModel(
            num_attention_heads=2, attention_head_dim=12, in_channels=z_dim, out_channels=z_dim, text_dim=text_dim,
            freq_dim=16, ffn_dim=32, num_layers=num_layers, rope_max_seq_len=64, control_layers=(0, 2),
            control_in_channels=2 * z_dim,
        ).eval()


def flow_unipc_scheduler(shift: float = 5.0):
    """UniPC on flow-matching sigmas, as Wan2.2 (the reference's FlowUniPC sampler)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                                   flow_shift=shift)


def tiny_spatia_pipeline(seed: int = 0):
    """A complete SpatiaPipeline of tiny random components (clip sizes: multiples of 32 pixels)."""
    from .pipeline import SpatiaPipeline

    tokenizer = tiny_tokenizer()
    return SpatiaPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_text_encoder(len(tokenizer), seed),
        vae=tiny_wan22_vae(seed),
        transformer=tiny_spatia_transformer(seed),
        scheduler=flow_unipc_scheduler(),
    )


__all__ = ["flow_unipc_scheduler", "tiny_spatia_pipeline", "tiny_spatia_transformer", "tiny_text_encoder",
           "tiny_tokenizer", "tiny_wan22_vae"]
