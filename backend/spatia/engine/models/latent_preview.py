"""Live previews while a clip denoises: the current latent turned into small RGB frames by a
linear latent-to-RGB projection.

The projection (factors [C, 3] and a bias [3]) is not a table copied from elsewhere: it is fitted
by least squares from the very VAE the generator runs, on pairs it computes anyway. Every round
the pipeline encodes its control video (the memory's render) and the known leading frames with
the VAE; each latent cell of those encodings is paired with the mean colour of the pixels it
covers (its `temporal_factor` frames x `spatial_factor`^2 pixels; latent frame 0 covers frame 0
alone, the VAE's causal first frame). A ridge-regularised least-squares fit of colour on latent
channels (plus a constant) gives the projection, for the 48-channel Wan2.2 latent and for any
other channel count alike. It costs one small solve per round, no extra VAE call.

Everything here is pure tensor math; callers decide where the frames go.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import DEFAULT_PREVIEW_EVERY, PreviewFn, preview_every

RIDGE = 1e-3


@dataclass(frozen=True)
class LatentProjection:
    """rgb = latent @ factors + bias, in [-1, 1] (the VAE's pixel range)."""

    factors: torch.Tensor  # float32 [C, 3]
    bias: torch.Tensor  # float32 [3]

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        """latents [C, L, h, w] (or [1, C, L, h, w]) -> uint8 [L, h, w, 3], computed on the latents' device."""
        if latents.ndim == 5:
            latents = latents[0]
        if latents.ndim != 4 or latents.shape[0] != self.factors.shape[0]:
            raise ValueError(f"latents must be [{self.factors.shape[0]}, L, h, w], got {list(latents.shape)}")
        factors = self.factors.to(device=latents.device)
        bias = self.bias.to(device=latents.device)
        rgb = torch.einsum("clhw,ck->lhwk", latents.float(), factors) + bias
        return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def pooled_colours(video: torch.Tensor | np.ndarray, latent_frames: int, temporal_factor: int,
                   spatial_factor: int) -> torch.Tensor:
    """The mean colour under each latent cell: video [F, H, W, 3] in [-1, 1] (or uint8, mapped to
    [-1, 1]) -> float32 [L, H/s, W/s, 3]. Latent frame 0 covers frame 0; frame l >= 1 covers
    frames (l-1)*t+1 .. l*t (the causal VAE's grid); frames past the video's end are not counted."""
    video = torch.as_tensor(np.asarray(video) if isinstance(video, np.ndarray) else video)
    if video.dtype == torch.uint8:
        video = video.float() / 127.5 - 1.0
    video = video.float()
    f, h, w, _ = video.shape
    s = spatial_factor
    if h % s or w % s:
        raise ValueError(f"video {w}x{h} is not a multiple of the spatial factor {s}")
    cells = video.reshape(f, h // s, s, w // s, s, 3).mean(dim=(2, 4))  # [F, h, w, 3]
    group = torch.zeros(f, dtype=torch.long)
    group[1:] = (torch.arange(1, f) - 1) // temporal_factor + 1
    keep = group < latent_frames
    sums = torch.zeros(latent_frames, h // s, w // s, 3)
    sums.index_add_(0, group[keep], cells[keep])
    counts = torch.bincount(group[keep], minlength=latent_frames).clamp(min=1).float()
    return sums / counts[:, None, None, None]


def fit_projection(pairs: list[tuple[torch.Tensor, torch.Tensor]], ridge: float = RIDGE) -> LatentProjection:
    """Least-squares projection from (latents [C, L, h, w], colours [L, h, w, 3]) pairs.

    Solves min |[z 1] P - rgb|^2 + ridge * n * |P|^2 (the bias unpenalised) in float64 on the CPU."""
    if not pairs:
        raise ValueError("fitting a latent projection needs at least one (latents, colours) pair")
    xs, ys = [], []
    for latents, colours in pairs:
        c = latents.shape[0]
        if latents.shape[1:] != colours.shape[:3]:
            raise ValueError(f"latents {list(latents.shape)} and colours {list(colours.shape)} do not pair up")
        xs.append(latents.detach().float().cpu().reshape(c, -1).T)
        ys.append(colours.detach().float().cpu().reshape(-1, 3))
    x = torch.cat(xs).double()
    y = torch.cat(ys).double()
    n, c = x.shape
    design = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    gram = design.T @ design
    penalty = torch.full((c + 1,), ridge * n, dtype=torch.float64)
    penalty[-1] = 0.0
    solution = torch.linalg.solve(gram + torch.diag(penalty), design.T @ y)  # [C+1, 3]
    return LatentProjection(factors=solution[:c].float(), bias=solution[c].float())


class PreviewSchedule:
    """Sends a preview after every `every`-th step and after the last one."""

    def __init__(self, send: PreviewFn, projection: LatentProjection, every: int = DEFAULT_PREVIEW_EVERY):
        if every < 1:
            raise ValueError(f"previews must come every >= 1 steps, got {every}")
        self.send, self.projection, self.every = send, projection, int(every)

    def __call__(self, step: int, steps: int, latents: torch.Tensor) -> None:
        if step % self.every and step != steps:
            return
        self.send(step, steps, self.projection(latents))


__all__ = ["DEFAULT_PREVIEW_EVERY", "LatentProjection", "PreviewFn", "PreviewSchedule", "fit_projection",
           "pooled_colours", "preview_every"]
