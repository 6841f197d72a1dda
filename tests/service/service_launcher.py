"""Starts the service for the tests, with one extra generator, "slow-preview": the preview
generator with a pause per frame that checks for cancellation, so a job can be caught
mid-run (to cancel it, or to kill the server under it).

    python tests/service/service_launcher.py --data-dir DIR --port N [serve options]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from spatia.engine.models import PreviewGenerator
from spatia.engine.models.base import raise_if_cancelled, report
from spatia.service.commands import add_serve_arguments, config_from_args, serve

STEP_S = float(os.environ.get("SPATIA_TEST_SLOW_STEP_S", "0.1"))


class SlowPreview(PreviewGenerator):
    """Also sends live previews (its steps are its frames): the projection at 1/8 size, noise
    fading out step by step, so the dashboard's preview path runs as with a denoising model."""

    name = "slow-preview"
    supports_preview = True

    def generate(self, request, progress=None, should_cancel=None, preview=None):
        every = getattr(preview, "every", 1) or 1
        small = request.projection[:, ::8, ::8].astype(float)
        rng = np.random.default_rng(0)
        for i in range(request.num_frames):
            raise_if_cancelled(should_cancel)
            report(progress, i / request.num_frames * 0.5, "slow steps")
            time.sleep(STEP_S)
            if preview is not None and ((i + 1) % every == 0 or i + 1 == request.num_frames):
                noise = rng.normal(0, 80 * (1 - (i + 1) / request.num_frames), small.shape)
                preview(i + 1, request.num_frames, np.clip(small + noise, 0, 255).astype(np.uint8))
        return super().generate(request, progress, should_cancel)


def main() -> int:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args()
    return serve(config_from_args(args), extra_generators={"slow-preview": lambda: SlowPreview(workers=1)},
                 log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
