"""Small self-contained pictures for the report: SVG line charts and labelled PNG strips."""

from __future__ import annotations

import math
from html import escape

import numpy as np

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def _nice_range(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def line_chart(series, *, title: str, xlabel: str, ylabel: str, y_range=None, width: int = 560,
               height: int = 300) -> str:
    """An SVG line chart. `series`: (label, xs, ys) triples; non-finite ys break the line
    (infinite values, e.g. PSNR of identical images, are drawn at the top edge as markers)."""
    left, right, top, bottom = 60, 130, 30, 45
    pw, ph = width - left - right, height - top - bottom
    xs_all = np.concatenate([np.asarray(x, dtype=float) for _, x, _ in series]) if series else np.zeros(1)
    ys_all = np.concatenate([np.asarray(y, dtype=float) for _, _, y in series]) if series else np.zeros(1)
    finite = ys_all[np.isfinite(ys_all)]
    x0, x1 = _nice_range(xs_all) if len(xs_all) else (0.0, 1.0)
    y0, y1 = y_range if y_range is not None else (_nice_range(finite) if len(finite) else (0.0, 1.0))

    def px(x):
        return left + (x - x0) / (x1 - x0) * pw

    def py(y):
        return top + (1 - (min(max(y, y0), y1) - y0) / (y1 - y0)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left + pw / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>']
    for k in range(5):  # y ticks and grid
        y = y0 + (y1 - y0) * k / 4
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 5}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
    for k in range(6):
        x = x0 + (x1 - x0) * k / 5
        out.append(f'<text x="{px(x):.1f}" y="{top + ph + 15}" text-anchor="middle">{x:.3g}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 14 {top + ph / 2})">'
               f'{escape(ylabel)}</text>')
    for i, (label, xs, ys) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        run: list[str] = []
        for x, y in zip(xs, ys):
            if np.isfinite(y):
                run.append(f"{px(x):.1f},{py(y):.1f}")
            else:
                if run:
                    out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
                run = []
                if y == math.inf:
                    out.append(f'<text x="{px(x):.1f}" y="{top + 9}" text-anchor="middle" fill="{colour}">∞</text>')
        if run:
            out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        for x, y in zip(xs, ys):
            if np.isfinite(y) and len(xs) <= 20:
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}"/>')
        ly = top + 12 + 16 * i
        out.append(f'<line x1="{left + pw + 10}" x2="{left + pw + 28}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 32}" y="{ly + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def labelled_strip(images, labels, *, min_width: int = 240) -> np.ndarray:
    """Images [H,W,3] side by side, each enlarged (nearest) to at least `min_width` pixels wide,
    with its label on a white band above it. Returns uint8 [H', W', 3]."""
    from PIL import Image, ImageDraw

    h, w = images[0].shape[:2]
    scale = max(1, math.ceil(min_width / w))
    band, gap = 16, 4
    canvas = Image.new("RGB", (len(images) * (w * scale + gap) - gap, h * scale + band), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (image, label) in enumerate(zip(images, labels)):
        x = i * (w * scale + gap)
        tile = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
        canvas.paste(tile, (x, band))
        draw.text((x + 3, 2), label, fill="black")
    return np.asarray(canvas)


def filmstrip(rows, indices, *, min_width: int = 160) -> np.ndarray:
    """Frames `indices` of several videos, one labelled strip per video stacked vertically.
    `rows`: (name, frames [F,H,W,3]) pairs; each tile is labelled "name frame"."""
    strips = [labelled_strip([frames[i] for i in indices], [f"{name} {i}" for i in indices], min_width=min_width)
              for name, frames in rows]
    width = max(s.shape[1] for s in strips)
    padded = [np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips]
    return np.concatenate(padded, axis=0)
