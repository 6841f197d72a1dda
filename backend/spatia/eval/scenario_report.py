"""The scenario suite's summary (scenarios.py): per scenario and per motion class, object memory
on and off, the ghost share of drawn object pixels, mask IoU and position error at re-entry,
identity changes per re-entry and swaps; a markdown table and an SVG bar chart. Reads the object
scenes of evaluation reports (report.json), so runs made one scenario at a time add up.

    python -m spatia.eval.scenario_report out/eval-scenarios [more report folders] --out out/eval-scenarios
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from spatia.formats.atomic import write_atomic

from .scenarios import CLASSES, classes_of


def rows_of(report: dict, classes: dict[str, str] | None = None) -> list[dict]:
    """One row per scenario of a report's object scenes that is a generated scenario."""
    classes = classes or classes_of()
    out = []
    for name, scene in (report.get("object_scenes") or {}).items():
        if name not in classes:
            continue
        objects = scene["objects"].values()
        ghost = {m: (scene["runs"][m].get("ghost") or {}) for m in ("on", "off")}
        reentries = sum(len(_events(o)) for o in objects)
        errors = [o["position_error_m"]["on"] for o in objects if o["position_error_m"]["on"] is not None]
        out.append({
            "scenario": name, "class": classes[name], "description": scene.get("description", ""),
            "ghost_px": {m: ghost[m].get("ghost_px", 0) for m in ghost},
            "drawn_px": {m: ghost[m].get("drawn_px", 0) for m in ghost},
            "mask_iou": {m: _mean([o["mask_iou"][m] for o in objects]) for m in ("on", "off")},
            "position_error_m": _mean(errors),
            "id_changes": sum(o["id_changes"]["on"] or 0 for o in objects),
            "reentries": reentries,
            "swaps": scene["summary"]["swaps"]["on"] or 0,
        })
    return out


def _events(o: dict) -> list:
    return o.get("reentry_events") or ([o["reentry_frames"]] if o.get("reentry_frames") else [])


def _mean(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def _share(ghost, drawn):
    return ghost / drawn if drawn else None


def by_class(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for motion in CLASSES:
        mine = [r for r in rows if r["class"] == motion]
        if not mine:
            continue
        ghost = sum(r["ghost_px"]["on"] for r in mine)
        drawn = sum(r["drawn_px"]["on"] for r in mine)
        errors = [r["position_error_m"] for r in mine if r["position_error_m"] is not None]
        out[motion] = {
            "scenarios": len(mine), "ghost_share": _share(ghost, drawn),
            "mask_iou": {m: _mean([r["mask_iou"][m] for r in mine]) for m in ("on", "off")},
            "position_error_median_m": float(np.median(errors)) if errors else None,
            "id_changes": sum(r["id_changes"] for r in mine), "reentries": sum(r["reentries"] for r in mine),
            "swaps": sum(r["swaps"] for r in mine),
        }
    return out


def _f(v, digits=2, unit=""):
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def markdown(rows: list[dict]) -> str:
    lines = ["| scenario | class | ghost share, on | mask IoU, on | off | position error, on | id changes / re-entries | swaps |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: r["scenario"]):
        lines.append(f"| {r['scenario']} | {r['class']} | {_f(_share(r['ghost_px']['on'], r['drawn_px']['on']))} | "
                     f"{_f(r['mask_iou']['on'])} | {_f(r['mask_iou']['off'])} | {_f(r['position_error_m'], 2, ' m')} | "
                     f"{r['id_changes']} / {r['reentries']} | {r['swaps']} |")
    lines += ["", "| class | scenarios | ghost share, on | mask IoU, on | off | median position error, on | id changes / re-entries | swaps |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    classes = by_class(rows)
    for motion, c in classes.items():
        lines.append(f"| {motion} | {c['scenarios']} | {_f(c['ghost_share'])} | {_f(c['mask_iou']['on'])} | "
                     f"{_f(c['mask_iou']['off'])} | {_f(c['position_error_median_m'], 2, ' m')} | "
                     f"{c['id_changes']} / {c['reentries']} | {c['swaps']} |")
    ghost = sum(r["ghost_px"]["on"] for r in rows)
    drawn = sum(r["drawn_px"]["on"] for r in rows)
    lines += ["", f"All {len(rows)} scenarios: ghost share {_f(_share(ghost, drawn))} of {drawn} drawn object pixels; "
                  f"{sum(r['id_changes'] for r in rows)} id changes in {sum(r['reentries'] for r in rows)} re-entries; "
                  f"{sum(r['swaps'] for r in rows)} swaps."]
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[dict]) -> str:
    """SVG: per class, mask IoU at re-entry with object memory on and off, and the ghost share."""
    classes = by_class(rows)
    names = list(classes)
    width, height, left, bottom = 120 + 90 * max(len(names), 1), 260, 50, 200
    bars = [("on", "#2a7ab0"), ("off", "#bbbbbb")]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="14">mask IoU at re-entry (on: blue, off: grey); ghost share (red)</text>',
             f'<line x1="{left}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="black"/>']
    for k in range(0, 6):
        y = bottom - k * 32
        parts.append(f'<text x="{left - 30}" y="{y + 4}">{k * 0.2:.1f}</text>')
    for i, name in enumerate(names):
        x = left + 10 + 90 * i
        c = classes[name]
        for j, (mode, colour) in enumerate(bars):
            v = c["mask_iou"][mode] or 0.0
            parts.append(f'<rect x="{x + 22 * j}" y="{bottom - 160 * v:.1f}" width="20" height="{160 * v:.1f}" fill="{colour}"/>')
        g = c["ghost_share"] or 0.0
        parts.append(f'<rect x="{x + 44}" y="{bottom - 160 * g:.1f}" width="20" height="{160 * g:.1f}" fill="#c0392b"/>')
        parts.append(f'<text x="{x}" y="{bottom + 14}">{name[:14]}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write(rows: list[dict], out: Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "scenarios.md", markdown(rows))
    write_atomic(out / "scenarios.svg", bar_chart(rows))
    write_atomic(out / "scenarios.json", json.dumps({"scenarios": rows, "classes": by_class(rows)}, indent=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Summarise the scenario suite's evaluation reports")
    p.add_argument("reports", nargs="+", help="folders holding report.json (searched below them too)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    rows = []
    for folder in args.reports:
        for path in sorted(Path(folder).rglob("report.json")):
            rows += rows_of(json.loads(path.read_text()))
    seen, unique = set(), []
    for r in rows:
        if r["scenario"] not in seen:
            seen.add(r["scenario"])
            unique.append(r)
    write(unique, Path(args.out))
    print(markdown(unique))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
