"""Checkpoint key conversion: original Wan / DiffSynth-Studio naming -> our diffusers naming.

The Spatia release (Jinjing713/Spatia) ships two files in DiffSynth naming:
- the control branch (`vace_patch_embedding.*`, `vace_blocks.K.*`, DiffSynth's VaceWanModel),
- a LoRA for the DiT (`pipe.dit.blocks.N.self_attn.q.lora_A.default.weight`, ...), merged by
  DiffSynth as W += alpha * lora_B @ lora_A (no rank scaling).
The base DiT comes from Wan-AI/Wan2.2-TI2V-5B-Diffusers in diffusers naming already; a DiT in
the original Wan naming converts with the same table.

Loading is strict: every key of a checkpoint must be used and every parameter of the model
filled, with matching shapes, or `WeightsMismatch` names the offending keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from ..base import ModelUnavailable

# Module paths inside one transformer block (original -> diffusers). DiffSynth's blocks apply
# norm1 (self-attention), norm3 (cross-attention, affine) and norm2 (FFN); diffusers calls the
# affine cross-attention norm `norm2`. Only the affine one has weights.
_BLOCK_MODULES = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    # control blocks only
    "before_proj": "proj_in",
    "after_proj": "proj_out",
}
_TOP_MODULES = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "vace_patch_embedding": "control_patch_embedding",
}
_TOP_PARAMS = {"head.modulation": "scale_shift_table"}
_BLOCK = re.compile(r"^(blocks|vace_blocks)\.(\d+)\.(.+)$")
_BLOCK_LISTS = {"blocks": "blocks", "vace_blocks": "control_blocks"}
# Prefixes DiffSynth training scripts put in front of model keys.
_PREFIXES = ("pipe.dit.", "pipe.vace.", "diffusion_model.")


class WeightsMismatch(ModelUnavailable):
    """A checkpoint does not fit the model: keys missing, unexpected, or of the wrong shape."""


def _strip_prefix(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def convert_module_path(path: str) -> str | None:
    """Original module path (e.g. `blocks.3.self_attn.q`) -> ours (`blocks.3.attn1.to_q`), or None."""
    path = _strip_prefix(path)
    if path in _TOP_MODULES:
        return _TOP_MODULES[path]
    match = _BLOCK.match(path)
    if match and match.group(3) in _BLOCK_MODULES:
        return f"{_BLOCK_LISTS[match.group(1)]}.{match.group(2)}.{_BLOCK_MODULES[match.group(3)]}"
    return None


def convert_key(key: str) -> str | None:
    """Original parameter key -> ours, or None when the key means nothing to our model."""
    key = _strip_prefix(key)
    if key in _TOP_PARAMS:
        return _TOP_PARAMS[key]
    match = _BLOCK.match(key)
    if match and match.group(3) == "modulation":
        return f"{_BLOCK_LISTS[match.group(1)]}.{match.group(2)}.scale_shift_table"
    module, _, leaf = key.rpartition(".")
    if leaf not in ("weight", "bias"):
        return None
    converted = convert_module_path(module)
    return f"{converted}.{leaf}" if converted else None


def _listing(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], *, source: str) -> dict[str, torch.Tensor]:
    """Rename every key of an original-naming checkpoint; unknown keys fail loudly."""
    converted, unknown = {}, []
    for key, value in state_dict.items():
        new = convert_key(key)
        if new is None:
            unknown.append(key)
        else:
            converted[new] = value
    if unknown:
        raise WeightsMismatch(f"{source}: keys with no place in the Spatia transformer: {_listing(unknown)}")
    return converted


def convert_control_state_dict(state_dict: Mapping[str, torch.Tensor], *, source: str = "control checkpoint") -> dict:
    """DiffSynth `VaceWanModel` weights -> `control_patch_embedding.*` / `control_blocks.K.*`."""
    converted = convert_state_dict(state_dict, source=source)
    stray = [k for k in converted if not k.startswith(("control_blocks.", "control_patch_embedding."))]
    if stray:
        raise WeightsMismatch(f"{source}: holds keys outside the control branch: {_listing(stray)}")
    return converted


def load_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Fill every parameter of `model` from `state_dict` (assigning tensors, so a model built
    on the meta device becomes real); any missing, unexpected or mis-shaped key raises."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {list(state_dict[k].shape)} (model: {list(expected[k].shape)})"
        for k in state_dict if k in expected and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shape {_listing(wrong)}")
    if problems:
        raise WeightsMismatch(f"{source} does not fit the model: " + "; ".join(problems))
    # A real parameter keeps its dtype; an empty meta one takes the checkpoint's (cast later, once).
    ready = {k: v if expected[k].device.type == "meta" else v.to(expected[k].dtype) for k, v in state_dict.items()}
    model.load_state_dict(ready, strict=True, assign=True)


# --- LoRA ------------------------------------------------------------------------------------------
def convert_lora_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, source: str = "LoRA checkpoint"
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """DiffSynth/PEFT LoRA keys -> {our module path: (up [out, r], down [r, in])}.

    Accepts `<module>.lora_A[.<adapter>].weight` / `<module>.lora_B[.<adapter>].weight` with
    the prefixes DiffSynth writes (`pipe.dit.`, `diffusion_model.`); anything else fails.
    """
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    pattern = re.compile(r"^(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")
    for key, value in state_dict.items():
        match = pattern.match(_strip_prefix(key))
        module = convert_module_path(match.group(1)) if match else None
        if module is None:
            unknown.append(key)
            continue
        pairs.setdefault(module, {})[match.group(2)] = value
    if unknown:
        raise WeightsMismatch(f"{source}: keys that are not LoRA weights of the DiT: {_listing(unknown)}")
    incomplete = [m for m, ab in pairs.items() if set(ab) != {"A", "B"}]
    if incomplete:
        raise WeightsMismatch(f"{source}: LoRA pairs missing lora_A or lora_B for {_listing(incomplete)}")
    out = {}
    for module, ab in pairs.items():
        up, down = ab["B"], ab["A"]
        if up.ndim == 4:  # 1x1 convolution form
            up, down = up.flatten(1), down.flatten(1)
        if up.shape[1] != down.shape[0]:
            raise WeightsMismatch(f"{source}: LoRA ranks differ for {module}: B {list(up.shape)}, A {list(down.shape)}")
        out[module] = (up, down)
    return out


# --- files -----------------------------------------------------------------------------------------
def read_state_dict(paths: Path | Iterable[Path]) -> dict[str, torch.Tensor]:
    """safetensors (or torch .pth/.bin/.pt) files -> one dict; duplicate keys fail."""
    from safetensors.torch import load_file

    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    merged: dict[str, torch.Tensor] = {}
    for path in paths:
        if path.suffix == ".safetensors":
            part = load_file(str(path))
        else:
            part = torch.load(str(path), map_location="cpu", weights_only=True)
            part = part.get("state_dict", part) if isinstance(part, dict) else part
        clash = merged.keys() & part.keys()
        if clash:
            raise WeightsMismatch(f"{path.name} repeats keys already read: {_listing(clash)}")
        merged.update(part)
    return merged


def safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def find_spatia_files(folder: Path) -> tuple[Path, Path | None]:
    """(control checkpoint, LoRA checkpoint or None) in a downloaded Jinjing713/Spatia folder,
    told apart by their keys: the control branch has `vace_*` keys, the LoRA `lora_*` keys."""
    control, lora = [], []
    for path in sorted(Path(folder).rglob("*.safetensors")):
        keys = safetensors_keys(path)
        if any(".lora_" in k for k in keys):
            lora.append(path)
        elif any(_strip_prefix(k).startswith(("vace_blocks.", "vace_patch_embedding.")) for k in keys):
            control.append(path)
    if len(control) != 1:
        found = ", ".join(p.name for p in control) or "none"
        raise ModelUnavailable(
            f"expected one Spatia control checkpoint (keys vace_*) in {folder}, found {found}; "
            "pass control_path= explicitly or run: spatia models download spatia-5b"
        )
    if len(lora) > 1:
        raise ModelUnavailable(f"several LoRA files in {folder} ({', '.join(p.name for p in lora)}); pass lora_path=")
    return control[0], (lora[0] if lora else None)


__all__ = [
    "WeightsMismatch",
    "convert_control_state_dict",
    "convert_key",
    "convert_lora_state_dict",
    "convert_module_path",
    "convert_state_dict",
    "find_spatia_files",
    "load_strict",
    "read_state_dict",
]
