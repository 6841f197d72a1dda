"""A switchable LoRA on the transformer's linear layers, kept apart from the base weights.

Spatia runs round 0 without its LoRA and every later round with it. Merging into bf16 weights
and unmerging again drifts the base weights a little every round, so the low-rank update is
applied at run time instead: y = W x + b + scale * up(down(x)) for each adapted layer, on or
off per call. The factors are registered as buffers of the adapted layer, so offloading hooks
move them with the layer. Cost: rank * (in + out) extra multiply-adds per token and layer
(about 4% of a 3072-wide layer at rank 64).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .convert import WeightsMismatch


class SwitchableLoRA:
    """Attach once with `attach`; then `enabled` and `scale` decide whether and how much it acts."""

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)
        self.enabled = False
        self._handles: list = []

    def attach(self, model: nn.Module, factors: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> int:
        """Register (up, down) factors on the named linear layers of `model`; returns how many."""
        modules = dict(model.named_modules())
        missing = [name for name in factors if not isinstance(modules.get(name), nn.Linear)]
        if missing:
            raise WeightsMismatch(f"LoRA targets that are not linear layers of the transformer: {', '.join(sorted(missing)[:8])}")
        for name, (up, down) in factors.items():
            layer = modules[name]
            if up.shape[0] != layer.out_features or down.shape[1] != layer.in_features:
                raise WeightsMismatch(
                    f"LoRA for {name} is {up.shape[0]}x{down.shape[1]}, the layer is {layer.out_features}x{layer.in_features}"
                )
            dtype, device = layer.weight.dtype, layer.weight.device
            if device.type == "meta":
                device = torch.device("cpu")
            layer.register_buffer("lora_up", up.to(device=device, dtype=dtype), persistent=False)
            layer.register_buffer("lora_down", down.to(device=device, dtype=dtype), persistent=False)
            self._handles.append(layer.register_forward_hook(self._hook))
        return len(factors)

    def _hook(self, layer: nn.Linear, inputs, output):
        if not self.enabled or self.scale == 0.0:
            return output
        x = inputs[0]
        # Cast the factors to the compute dtype: fp8 layerwise storage may have cast them too.
        down, up = layer.lora_down.to(x.dtype), layer.lora_up.to(x.dtype)
        delta = nn.functional.linear(nn.functional.linear(x, down), up)
        return output + (self.scale * delta).to(output.dtype)

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


__all__ = ["SwitchableLoRA"]
