"""The Spatia transformer: Wan2.2-TI2V's DiT plus a VACE-style control branch.

Token layout of one forward pass (one batch element):

    [ reference frames | history frames | frames to generate ]
      clean, t = 0       clean, t = 0     noisy, t = current step
      no control         control branch   control branch

- Reference frames (retrieved past frames, one latent frame each) come first in time, with
  their own rotary positions: temporal positions -R..-1 and height positions h..2h-1, so the
  model can tell them from the clip. They do not go through the control branch and the caller
  drops them from the output.
- The control branch reads the VAE latents of the memory projection video and of the hole
  ("score") video, 2 x z_dim channels, through its own patch embedding and a stack of blocks
  that mirror the main blocks at `control_layers`; block k's hint is added to the main tokens
  (all but the reference tokens) after main layer `control_layers[k]`, times a scale.
- Timesteps are per latent frame (Wan2.2 TI2V style): clean frames get 0. The modulation is
  computed per frame and broadcast over that frame's tokens, never materialised per token.

Parameter names are diffusers' `WanTransformer3DModel` names plus `control_patch_embedding.*`
and `control_blocks.*`, so the base checkpoint loads unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.transformers.transformer_wan import (
    WanTransformer3DModel,
    WanTransformerBlock,
)
from torch import nn


class SpatiaTransformerBlock(WanTransformerBlock):
    """A Wan block whose modulation comes per latent frame: temb [B, F, 6, D] over F frames of
    equal token count, broadcast to the tokens without building a [B, tokens, 6, D] tensor."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        batch, tokens, dim = hidden_states.shape
        frames = temb.shape[1]
        per_frame = tokens // frames
        modulation = (self.scale_shift_table.unsqueeze(0) + temb.float()).unsqueeze(2)  # [B, F, 1, 6, D]
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = modulation.unbind(3)  # each [B, F, 1, D]

        def per_frame_view(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, frames, per_frame, dim)

        x = per_frame_view(hidden_states)
        norm = (self.norm1(x.float()) * (1 + scale_msa) + shift_msa).type_as(x)
        attn = self.attn1(norm.view(batch, tokens, dim), None, None, rotary_emb)
        x = (x.float() + per_frame_view(attn) * gate_msa).type_as(x)

        norm = self.norm2(x.float()).type_as(x)
        x = x + per_frame_view(self.attn2(norm.view(batch, tokens, dim), encoder_hidden_states, None, None))

        norm = (self.norm3(x.float()) * (1 + c_scale) + c_shift).type_as(x)
        ff = self.ffn(norm.view(batch, tokens, dim))
        x = (x.float() + per_frame_view(ff).float() * c_gate).type_as(x)
        return x.view(batch, tokens, dim)


class SpatiaControlBlock(SpatiaTransformerBlock):
    """A control block: the first one projects the control tokens and adds the main input
    tokens (`proj_in`); every one emits a hint through `proj_out`."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, *, first: bool, **kwargs):
        super().__init__(dim, ffn_dim, num_heads, **kwargs)
        self.proj_in = nn.Linear(dim, dim) if first else None
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, control, hidden_states, encoder_hidden_states, temb, rotary_emb):
        if self.proj_in is not None:
            control = self.proj_in(control) + hidden_states
        control = super().forward(control, encoder_hidden_states, temb, rotary_emb)
        return self.proj_out(control), control


def rotary_for_grid(
    rope, t_positions: torch.Tensor, h_positions: torch.Tensor, w_positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [1, T*H*W, 1, head_dim] for a grid at arbitrary (possibly negative) positions,
    with the frequencies of diffusers' `WanRotaryPosEmbed` (interleaved real pairs)."""
    theta = 10000.0
    parts_cos, parts_sin = [], []
    shape = (len(t_positions), len(h_positions), len(w_positions))
    for axis, (dim, positions) in enumerate(
        ((rope.t_dim, t_positions), (rope.h_dim, h_positions), (rope.w_dim, w_positions))
    ):
        inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64)[: dim // 2] / dim)
        angles = torch.outer(positions.to(torch.float64).cpu(), inv_freq).repeat_interleave(2, dim=1)
        view = [1, 1, 1, dim]
        view[axis] = -1
        parts_cos.append(angles.cos().view(view).expand(*shape, dim))
        parts_sin.append(angles.sin().view(view).expand(*shape, dim))
    cos = torch.cat(parts_cos, dim=-1).reshape(1, -1, 1, rope.attention_head_dim)
    sin = torch.cat(parts_sin, dim=-1).reshape(1, -1, 1, rope.attention_head_dim)
    return cos.float(), sin.float()


class SpatiaTransformer3DModel(WanTransformer3DModel):
    """Wan2.2-TI2V DiT with the Spatia control branch (see the module docstring)."""

    _no_split_modules: ClassVar[list[str]] = ["SpatiaTransformerBlock", "SpatiaControlBlock"]
    _repeated_blocks: ClassVar[list[str]] = ["SpatiaTransformerBlock", "SpatiaControlBlock"]
    _skip_layerwise_casting_patterns: ClassVar[list[str]] = ["patch_embedding", "condition_embedder", "norm"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 24,
        attention_head_dim: int = 128,
        in_channels: int = 48,
        out_channels: int = 48,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 14336,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        control_layers: tuple[int, ...] = (0, 4, 8, 12, 16, 20, 24, 28),
        control_in_channels: int = 96,
    ) -> None:
        super().__init__(
            patch_size=patch_size, num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim,
            in_channels=in_channels, out_channels=out_channels, text_dim=text_dim, freq_dim=freq_dim,
            ffn_dim=ffn_dim, num_layers=num_layers, cross_attn_norm=cross_attn_norm, qk_norm=qk_norm, eps=eps,
            image_dim=image_dim, added_kv_proj_dim=added_kv_proj_dim, rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        control_layers = tuple(int(i) for i in control_layers)
        if not control_layers or control_layers[0] != 0 or list(control_layers) != sorted(set(control_layers)):
            raise ValueError(f"control_layers must be increasing and start at 0, got {list(control_layers)}")
        if control_layers[-1] >= num_layers:
            raise ValueError(f"control layer {control_layers[-1]} does not exist in a {num_layers}-layer transformer")
        inner_dim = num_attention_heads * attention_head_dim
        block_args = {"qk_norm": qk_norm, "cross_attn_norm": cross_attn_norm, "eps": eps, "added_kv_proj_dim": added_kv_proj_dim}
        self.blocks = nn.ModuleList(
            SpatiaTransformerBlock(inner_dim, ffn_dim, num_attention_heads, **block_args) for _ in range(num_layers)
        )
        self.control_patch_embedding = nn.Conv3d(control_in_channels, inner_dim, kernel_size=patch_size, stride=patch_size)
        self.control_blocks = nn.ModuleList(
            SpatiaControlBlock(inner_dim, ffn_dim, num_attention_heads, first=k == 0, **block_args)
            for k in range(len(control_layers))
        )
        self._hint_after = {layer: k for k, layer in enumerate(control_layers)}

    # --- pieces of the forward pass ------------------------------------------------------------
    def _patchify(self, conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
        return conv(x).flatten(2).transpose(1, 2).contiguous()

    def _rotary(self, frames: int, refs: int, height: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions: references at t = -refs..-1 and rows height..2*height-1; the clip at t = 0.."""
        arange = lambda start, n: torch.arange(start, start + n)
        cos, sin = rotary_for_grid(self.rope, arange(0, frames), arange(0, height), arange(0, width))
        if refs:
            ref_cos, ref_sin = rotary_for_grid(self.rope, arange(-refs, refs), arange(height, height), arange(0, width))
            cos, sin = torch.cat([ref_cos, cos], dim=1), torch.cat([ref_sin, sin], dim=1)
        return cos.to(device), sin.to(device)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        control_latents: torch.Tensor | None = None,
        control_scale: float = 1.0,
        num_reference_frames: int = 0,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
    ):
        """hidden_states [B, C, R+F, h, w] (R reference latent frames first); timestep [B] or
        [B, R+F] per latent frame; control_latents [B, 2*z, F, h, w] or None (no control)."""
        batch, _, total_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        refs = num_reference_frames
        frames_t, grid_h, grid_w = total_frames // p_t, height // p_h, width // p_w
        if refs % p_t or refs >= total_frames:
            raise ValueError(f"{refs} reference frames do not fit {total_frames} latent frames")
        clip_frames_t = frames_t - refs // p_t
        per_frame = grid_h * grid_w
        ref_tokens = (refs // p_t) * per_frame

        rotary = self._rotary(clip_frames_t, refs // p_t, grid_h, grid_w, hidden_states.device)
        x = self._patchify(self.patch_embedding, hidden_states)

        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(batch, total_frames)
        timestep = timestep[:, ::p_t]  # one value per patched frame
        temb, timestep_proj, context, _ = self.condition_embedder(
            timestep.flatten(), encoder_hidden_states, None, timestep_seq_len=frames_t
        )
        timestep_proj = timestep_proj.unflatten(2, (6, -1))  # [B, F, 6, D]

        hints = None
        if control_latents is not None:
            if control_latents.shape[2] != total_frames - refs or control_latents.shape[3:] != (height, width):
                raise ValueError(
                    f"control latents {list(control_latents.shape)} do not match the clip's latents "
                    f"({total_frames - refs} frames of {height}x{width})"
                )
            clip_rotary = (rotary[0][:, ref_tokens:], rotary[1][:, ref_tokens:])
            control = self._patchify(self.control_patch_embedding, control_latents.to(x.dtype))
            clip_x, clip_temb = x[:, ref_tokens:], timestep_proj[:, refs // p_t:]
            hints = []
            for block in self.control_blocks:
                hint, control = block(control, clip_x, context, clip_temb, clip_rotary)
                hints.append(hint)

        for index, block in enumerate(self.blocks):
            x = block(x, context, timestep_proj, rotary)
            k = self._hint_after.get(index)
            if hints is not None and k is not None:
                if ref_tokens:
                    x = torch.cat([x[:, :ref_tokens], x[:, ref_tokens:] + hints[k] * control_scale], dim=1)
                else:
                    x = x + hints[k] * control_scale

        # Output head, modulated per frame like the blocks.
        shift, scale = (self.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).unsqueeze(2).unbind(3)
        x = x.view(batch, frames_t, per_frame, -1)
        x = (self.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = self.proj_out(x.view(batch, frames_t * per_frame, -1))
        x = x.reshape(batch, frames_t, grid_h, grid_w, p_t, p_h, p_w, -1)
        out = x.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if not return_dict:
            return (out,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=out)


def transformer_flops(
    *, tokens: int, control_tokens: int, text_tokens: int, dim: int, ffn_dim: int, num_layers: int,
    num_control_layers: int, in_channels: int, control_in_channels: int, patch: int = 4, text_dim: int = 4096,
) -> float:
    """Matmul FLOPs (2 per multiply-add) of one forward pass, counted analytically.

    Per block and token: q, k, v, o (4 D^2), cross-attention q and o (2 D^2), FFN (2 D F),
    self-attention scores and mixing (2 N D), cross-attention over the text (2 T D); plus the
    cross-attention k, v over the text (2 T D^2 per block), patch embeddings and the head.
    """
    def block_flops(n: int) -> float:
        per_token = 6 * dim * dim + 2 * dim * ffn_dim + 2 * n * dim + 2 * text_tokens * dim
        return 2.0 * (n * per_token + 2 * text_tokens * dim * dim)

    flops = num_layers * block_flops(tokens) + num_control_layers * block_flops(control_tokens)
    flops += num_control_layers * 2.0 * control_tokens * dim * dim  # proj_out (and proj_in once, ignored)
    flops += 2.0 * tokens * in_channels * patch * dim * 2  # patch embedding and head
    flops += 2.0 * control_tokens * control_in_channels * patch * dim
    flops += 2.0 * text_tokens * (text_dim * dim + dim * dim)
    return float(flops)


__all__ = ["SpatiaControlBlock", "SpatiaTransformer3DModel", "SpatiaTransformerBlock", "rotary_for_grid", "transformer_flops"]
