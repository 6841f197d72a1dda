"""Tiny random-weight models built from configs in code, for tests: same classes and code paths
as the real checkpoints, a few hundred thousand parameters, deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed weight init under a private RNG state so the caller's global torch RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_depth_pro(seed: int = 0, *, use_fov_model: bool = True):
    """DepthProForDepthEstimation taking 32x32 inputs (patch 16 at ratios 0.5 and 1)."""
    from transformers import DepthProConfig, DepthProForDepthEstimation

    backbone = dict(model_type="dinov2", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, patch_size=4, image_size=16)
    config = DepthProConfig(
        patch_size=16, fusion_hidden_size=16, intermediate_hook_ids=[1, 0], intermediate_feature_dims=[8, 8],
        scaled_images_ratios=[0.5, 1.0], scaled_images_overlap_ratios=[0.0, 0.5], scaled_images_feature_dims=[16, 16],
        use_fov_model=use_fov_model, num_fov_head_layers=1,
        image_model_config=dict(backbone), patch_model_config=dict(backbone), fov_model_config=dict(backbone),
    )
    with _seeded(seed):
        model = DepthProForDepthEstimation(config).eval()
    # Random weights drive many pixels below the head's final ReLU (inverse depth 0, i.e. the
    # 10 km clamp); a damped last layer with a positive bias keeps inverse depth near 1.
    last = model.head.layers[-2]
    with torch.no_grad():
        last.weight.mul_(1e-3)
        last.bias.fill_(1.0)
    return model


def tiny_depth_anything(seed: int = 0, *, max_depth: int = 20):
    """DepthAnythingForDepthEstimation with the metric head; any input size that is a multiple of 14."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, patch_size=14,
        image_size=28, out_features=["stage1", "stage2", "stage3", "stage4"], reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type="metric", max_depth=max_depth,
    )
    with _seeded(seed):
        return DepthAnythingForDepthEstimation(config).eval()


def tiny_sam2_video(seed: int = 0, *, image_size: int = 64):
    """Sam2VideoModel taking image_size x image_size frames.

    The memory path hard-codes 64 memory channels and needs a hidden size that is a larger
    multiple of them, hence 128 below.
    """
    from transformers import Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoModel, Sam2VisionConfig
    from transformers.models.sam2_video.configuration_sam2_video import (
        Sam2VideoMaskDecoderConfig,
        Sam2VideoPromptEncoderConfig,
    )

    s, hidden = image_size, 128
    hiera = Sam2HieraDetConfig(
        hidden_size=8, image_size=s, patch_stride=4, patch_kernel_size=7, patch_padding=3, blocks_per_stage=[1, 1, 1, 1],
        embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 1, 1],
    )
    vision = Sam2VisionConfig(
        backbone_config=hiera, backbone_channel_list=[64, 32, 16, 8],
        backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]], fpn_hidden_size=hidden,
    )
    config = Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(hidden_size=hidden, image_size=s, patch_size=16, mask_input_channels=8),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(hidden_size=hidden, mlp_dim=64, num_attention_heads=4, iou_head_hidden_dim=32),
        image_size=s, num_maskmem=3,
        memory_attention_hidden_size=hidden, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[s // 16, s // 16], memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=64,
    )
    with _seeded(seed):
        return Sam2VideoModel(config).eval()
