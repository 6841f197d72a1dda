"""What live denoising previews cost, at the spatia-5b clip size (81 frames at 1248x704: a
48-channel latent of 21 x 44 x 78), against the time of one denoising step.

Measured per round: the projection's fit (pooling the 81-frame control video to latent cells and
the least-squares solve); per preview: the latent-to-RGB projection, the contact sheet and its
PNG (what the service keeps and serves). The step time is that of the tiny random-weight
48-channel pipeline at the same latent size (one transformer pass with its control branch): the
real 5B transformer is far slower per step than this 4-layer one, so the share measured here is an
upper bound of the share on the real model. `--quick`: half the width and height.

    .venv/bin/python benchmarks/bench_live_previews.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from harness import add_device_options, devices_from, timed, write

from spatia.engine.models.latent_preview import fit_projection, pooled_colours
from spatia.service.previews import contact_sheet, png_bytes

FRAMES, HEIGHT, WIDTH, CHANNELS, STEPS, EVERY = 81, 704, 1248, 48, 40, 2


def tiny_step(device: str, latent_frames: int, h: int, w: int):
    """One denoising step of the tiny 48-channel Spatia transformer at this latent size."""
    from spatia.engine.models.spatia.tiny import tiny_spatia_transformer

    model = tiny_spatia_transformer(0, z_dim=CHANNELS).to(device)
    latents = torch.randn(1, CHANNELS, latent_frames, h, w, device=device)
    control = torch.randn(1, 2 * CHANNELS, latent_frames, h, w, device=device)
    context = torch.randn(1, 512, 16, device=device)
    t = torch.full((1, latent_frames), 500.0, device=device)

    @torch.no_grad()
    def step():
        model(latents, t, context, control_latents=control, control_scale=1.0, num_reference_frames=0,
              return_dict=False)

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    add_device_options(parser)
    args = parser.parse_args(argv)
    height, width = (HEIGHT // 2, WIDTH // 2) if args.quick else (HEIGHT, WIDTH)
    latent_frames, h, w = (FRAMES - 1) // 4 + 1, height // 16, width // 16
    rng = np.random.default_rng(0)
    cases = []
    for device in devices_from(args):
        sync = device == "cuda"
        video = rng.integers(0, 256, (FRAMES, height, width, 3), dtype=np.uint8)
        latents = torch.randn(CHANNELS, latent_frames, h, w, device=device)
        def fit_once():
            return fit_projection([(latents, pooled_colours(video, latent_frames, 4, 16, device=device))])

        fit = timed(fit_once, repeat=3, sync=sync)
        projection = fit_once()
        project = timed(lambda: projection(latents), repeat=10, sync=sync)
        frames = projection(latents)
        publish = timed(lambda: png_bytes(contact_sheet(frames)), repeat=10)
        step = timed(tiny_step(device, latent_frames, h, w), repeat=3, warmup=1, sync=sync)
        previews = STEPS // EVERY
        per_preview = project["best_s"] + publish["best_s"]
        per_round = fit["best_s"] + previews * per_preview
        cases.append({
            "device": device, "clip": f"{FRAMES}x{width}x{height}", "latent": [CHANNELS, latent_frames, h, w],
            "fit_s": fit, "projection_s": project, "sheet_png_s": publish,
            "sheet_png_bytes": len(png_bytes(contact_sheet(frames))),
            "tiny_step_s": step, "steps": STEPS, "preview_every": EVERY,
            "preview_cost_per_step_share": per_preview / EVERY / step["best_s"],
            "round_cost_share": per_round / (STEPS * step["best_s"]),
        })
    write("live_previews" + ("_quick" if args.quick else ""), {"cases": cases})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
