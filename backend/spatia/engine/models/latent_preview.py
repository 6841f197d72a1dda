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
        c, frames, h, w = latents.shape
        # to bytes in one pass: (rgb + 1) * 127.5 = rgb * 127.5 + 127.5, folded into the factors
        factors = (self.factors * 127.5).to(device=latents.device)
        bias = (self.bias * 127.5 + 127.5).to(device=latents.device)
        rgb = torch.addmm(bias[:, None], factors.T, latents.reshape(c, -1).float())  # [3, L*h*w]
        rgb = rgb.clamp_(0, 255).round_().to(torch.uint8).reshape(3, frames, h, w)
        return rgb.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def pooled_colours(video: torch.Tensor | np.ndarray, latent_frames: int, temporal_factor: int,
                   spatial_factor: int, samples: int = 4, device=None) -> torch.Tensor:
    """The mean colour under each latent cell: video [F, H, W, 3] in [-1, 1] (or uint8, mapped to
    [-1, 1]) -> float32 [L, H/s, W/s, 3]. Latent frame 0 covers frame 0; frame l >= 1 covers
    frames (l-1)*t+1 .. l*t (the causal VAE's grid); frames past the video's end are not counted.

    Each s x s cell is averaged over a `samples` x `samples` grid of its pixels (the centres of
    equal sub-cells), not all s^2 of them: a fit needs the cell's colour, not its exact mean, and
    a full-size clip is then read 16 times less. The pooling runs on `device` (the latents' GPU
    in a real run); the result comes back to the CPU."""
    video = torch.as_tensor(video) if isinstance(video, np.ndarray) else video
    f, h, w, _ = video.shape
    s = spatial_factor
    if h % s or w % s:
        raise ValueError(f"video {w}x{h} is not a multiple of the spatial factor {s}")
    samples = max(1, min(samples, s))
    while s % samples:
        samples -= 1
    stride = s // samples
    t = temporal_factor
    used = min(f, 1 + (latent_frames - 1) * t)  # frames past the last latent frame's are not counted
    picked = video[:used, stride // 2::stride, stride // 2::stride]  # a view: [F', H/stride, W/stride, 3]
    picked = picked.to(device) if device is not None else picked
    cells = torch.nn.functional.avg_pool2d(picked.permute(0, 3, 1, 2).float(), samples)
    cells = cells.permute(0, 2, 3, 1).contiguous().cpu()
    if picked.dtype == torch.uint8:  # averaging is linear: map to [-1, 1] after, on 1/s^2 of the values
        cells = cells / 127.5 - 1.0
    # latent frame 0 <- frame 0; frame l >= 1 <- frames (l-1)t+1 .. lt: sum runs of t, padded at the end
    rest = cells[1:]
    missing = (latent_frames - 1) * t - len(rest)
    if missing:
        rest = torch.cat([rest, rest.new_zeros((missing, *rest.shape[1:]))])
    sums = torch.cat([cells[:1], rest.reshape(latent_frames - 1, t, *rest.shape[1:]).sum(dim=1)])
    counts = torch.tensor([1] + [min(max(used - 1 - l * t, 0), t) for l in range(latent_frames - 1)],
                          dtype=torch.float32).clamp(min=1)
    return sums / counts[:, None, None, None]


def fit_projection(pairs: list[tuple[torch.Tensor, torch.Tensor]], ridge: float = RIDGE) -> LatentProjection:
    """Least-squares projection from (latents [C, L, h, w], colours [L, h, w, 3]) pairs.

    Solves min |[z 1] P - rgb|^2 + ridge * n * |P|^2 (the bias unpenalised): the normal equations
    are summed on the latents' device, then solved in float64 on the CPU."""
    if not pairs:
        raise ValueError("fitting a latent projection needs at least one (latents, colours) pair")
    gram = rhs = None
    n = 0
    for latents, colours in pairs:
        c = latents.shape[0]
        if latents.shape[1:] != colours.shape[:3]:
            raise ValueError(f"latents {list(latents.shape)} and colours {list(colours.shape)} do not pair up")
        x = latents.detach().float().reshape(c, -1).T
        design = torch.cat([x, torch.ones(len(x), 1, device=x.device)], dim=1)
        y = colours.detach().float().reshape(-1, 3).to(x.device)
        part_gram, part_rhs = (design.T @ design).double().cpu(), (design.T @ y).double().cpu()
        gram = part_gram if gram is None else gram + part_gram
        rhs = part_rhs if rhs is None else rhs + part_rhs
        n += len(x)
    penalty = torch.full((c + 1,), ridge * n, dtype=torch.float64)
    penalty[-1] = 0.0
    solution = torch.linalg.solve(gram + torch.diag(penalty), rhs)  # [C+1, 3]
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
