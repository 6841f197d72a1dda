"""Spatia's numbers, checked against the reference implementation (ZhaoJingjing713/Spatia,
inference.py and wan/*.py), with where they come from.

Base DiT (Wan2.2-TI2V-5B): dim 3072 = 24 heads x 128, 30 layers, FFN 14336, text dim 4096,
48 latent channels, patch 1x2x2; VAE 4x16x16 compression (Wan2.2 VAE, z_dim 48).
Control branch (`build_pipe` in inference.py): VaceWanModel(vace_layers=[0,4,...,28],
vace_in_dim=96, has_image_input=False): 8 blocks; 96 = 48 (projection latents) + 48 (score
latents); hints added after those main layers times `vace_scale` (default 1.0).
Sampling (`get_args`): UniPC, 40 steps, CFG 3.5, sigma shift 5.0, 1248x704, 24 fps, first
round 121 frames, later rounds 81 with 9 history frames (3 latent frames); seed 20917.
LoRA: DiffSynth GeneralLoRALoader, alpha 1 (W += B @ A), unloaded for round 0.
Prompt: the reference appends " 4K, realistic, high quality, HDR." and uses Wan's standard
Chinese negative prompt.
"""

from __future__ import annotations

CONTROL_LAYERS = (0, 4, 8, 12, 16, 20, 24, 28)
CONTROL_IN_CHANNELS = 96
DEFAULT_STEPS = 40
DEFAULT_GUIDANCE = 3.5
DEFAULT_SHIFT = 5.0
DEFAULT_CONTROL_SCALE = 1.0
DEFAULT_LORA_SCALE = 1.0
DEFAULT_WIDTH, DEFAULT_HEIGHT = 1248, 704
DEFAULT_FPS = 24
FIRST_ROUND_FRAMES = 121
ROUND_FRAMES = 81
HISTORY_FRAMES = 9
PROMPT_SUFFIX = " 4K, realistic, high quality, HDR."
NEGATIVE_PROMPT = (
    "画面切换，画面切出，镜头切换，镜头渐黑，镜头渐亮，最差质量, 节目横幅, 低质量, 正常质量, "
    "JPEG压缩残留, 噪点, 模糊, 细节缺失, 马赛克, 水印, 文字, 签名, 商标, 丑陋的, 畸形的, 毁容的, "
    "解剖学错误, 形态糟糕, 多余的肢体, 残缺的肢体, 融合的手指, 画得不好的手, 画得不好的脸, "
    "僵硬的表情, 杂乱的构图, 不协调的元素, 空旷的画面, 透视错误, 比例失调, 变形的物体, "
    "融合的物体, 物体穿模, 漂浮的物体, 平淡的光线, 不自然的光源, 单调的色彩, 奇怪的颜色, "
    "刺眼的颜色, 画面发灰"
)

# Wan2.2-TI2V-5B transformer (diffusers config of Wan-AI/Wan2.2-TI2V-5B-Diffusers/transformer).
TI2V_5B_TRANSFORMER = {
    "patch_size": (1, 2, 2), "num_attention_heads": 24, "attention_head_dim": 128, "in_channels": 48,
    "out_channels": 48, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 14336, "num_layers": 30,
    "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 1024,
}
