"""A terminal progress bar for long engine work, driven by the (fraction, stage) callbacks
the world and the models report through."""

from __future__ import annotations

import sys


def progress_bar(total: float = 1.0, desc: str = ""):
    """A tqdm bar driven by (fraction, stage) callbacks; returns (callback, close)."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, unit="‰", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
               file=sys.stderr, dynamic_ncols=True)

    def update(fraction: float, stage: str) -> None:
        target = int(round(min(max(fraction, 0.0), 1.0) * 1000))
        if target > bar.n:
            bar.update(target - bar.n)
        bar.set_postfix_str(stage[:60], refresh=True)

    return update, bar.close
