"""Build a SpatiaPipeline from local weight folders (never from the network).

- base: a Wan-AI/Wan2.2-TI2V-5B-Diffusers folder (tokenizer/, text_encoder/, vae/, transformer/);
- spatia: a Jinjing713/Spatia folder holding the control checkpoint and the DiT LoRA (found by
  their keys), or explicit file paths.
The transformer is built on the meta device and every parameter is assigned from the files:
the base shards plus the converted control branch must fill the model exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..base import ModelUnavailable
from .config import CONTROL_IN_CHANNELS, CONTROL_LAYERS, DEFAULT_SHIFT
from .convert import (
    convert_control_state_dict,
    convert_lora_state_dict,
    convert_state_dict,
    find_spatia_files,
    load_strict,
    read_state_dict,
)
from .lora import SwitchableLoRA
from .pipeline import SpatiaPipeline
from .tiny import flow_unipc_scheduler
from .transformer import SpatiaTransformer3DModel

_TRANSFORMER_KEYS = ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
                     "text_dim", "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "qk_norm", "eps",
                     "image_dim", "added_kv_proj_dim", "rope_max_seq_len", "pos_embed_seq_len")


def _transformer_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelUnavailable(f"no .safetensors weights in {folder}; run: spatia models download spatia-5b")
    return files


def load_spatia_transformer(
    transformer_dir: Path, control_path: Path, *, dtype: torch.dtype = torch.bfloat16,
    control_layers=None, control_in_channels: int | None = None,
) -> SpatiaTransformer3DModel:
    """Base DiT (diffusers folder, or original Wan naming) + control branch, strictly loaded.
    The control layout defaults to the config's `control_layers` / `control_in_channels` when
    it has them (our own saved configs), else to Spatia's (layers 0, 4, ..., 28; 96 channels)."""
    from accelerate import init_empty_weights

    transformer_dir = Path(transformer_dir)
    config_path = transformer_dir / "config.json"
    if not config_path.is_file():
        raise ModelUnavailable(f"{transformer_dir} holds no config.json; expected the transformer/ folder of Wan2.2-TI2V-5B-Diffusers")
    config = json.loads(config_path.read_text())
    base_config = {k: v for k, v in config.items() if k in _TRANSFORMER_KEYS}
    control_layers = control_layers or config.get("control_layers") or CONTROL_LAYERS
    control_in_channels = control_in_channels or config.get("control_in_channels") or CONTROL_IN_CHANNELS
    with init_empty_weights():
        model = SpatiaTransformer3DModel(**base_config, control_layers=tuple(control_layers),
                                         control_in_channels=control_in_channels)
    base = read_state_dict(_transformer_files(transformer_dir))
    if any(k.startswith("blocks.0.self_attn.") for k in base):  # original Wan naming
        base = convert_state_dict(base, source=str(transformer_dir))
    control = convert_control_state_dict(read_state_dict(control_path), source=Path(control_path).name)
    load_strict(model, {**base, **control}, source=f"{transformer_dir.name} + {Path(control_path).name}")
    return model.to(dtype).eval()


def attach_lora(transformer: SpatiaTransformer3DModel, lora_path: Path, scale: float) -> SwitchableLoRA:
    lora = SwitchableLoRA(scale)
    lora.attach(transformer, convert_lora_state_dict(read_state_dict(lora_path), source=Path(lora_path).name))
    return lora


def load_spatia_pipeline(
    base_dir: Path, spatia_dir: Path | None = None, *, control_path: Path | None = None,
    lora_path: Path | None = None, lora_scale: float = 1.0, dtype: torch.dtype = torch.bfloat16,
) -> tuple[SpatiaPipeline, SwitchableLoRA | None]:
    """(pipeline on the CPU, its switchable LoRA or None)."""
    from diffusers import AutoencoderKLWan
    from transformers import AutoTokenizer, UMT5EncoderModel

    base_dir = Path(base_dir)
    for sub in ("tokenizer", "text_encoder", "vae", "transformer"):
        if not (base_dir / sub).is_dir():
            raise ModelUnavailable(f"{base_dir} has no {sub}/ folder; expected Wan-AI/Wan2.2-TI2V-5B-Diffusers")
    if control_path is None:
        if spatia_dir is None:
            raise ModelUnavailable("no Spatia control checkpoint: give spatia_dir or control_path")
        control_path, found_lora = find_spatia_files(Path(spatia_dir))
        lora_path = lora_path or found_lora
    transformer = load_spatia_transformer(base_dir / "transformer", Path(control_path), dtype=dtype)
    lora = attach_lora(transformer, Path(lora_path), lora_scale) if lora_path else None
    pipe = SpatiaPipeline(
        tokenizer=AutoTokenizer.from_pretrained(base_dir / "tokenizer"),
        text_encoder=UMT5EncoderModel.from_pretrained(base_dir / "text_encoder", torch_dtype=dtype).eval(),
        vae=AutoencoderKLWan.from_pretrained(base_dir / "vae", torch_dtype=torch.float32).eval(),
        transformer=transformer,
        scheduler=flow_unipc_scheduler(DEFAULT_SHIFT),
    )
    return pipe, lora


__all__ = ["attach_lora", "load_spatia_pipeline", "load_spatia_transformer"]
