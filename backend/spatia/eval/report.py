"""The evaluation report: report.json (every number), report.md (tables, SVG charts and PNG
pictures beside it, one folder per scene)."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from spatia.io import write_atomic, write_json
from spatia.video import write_frames

from .plots import filmstrip, labelled_strip, line_chart

SCHEMA = "spatia.eval"
SCHEMA_VERSION = 1


def json_safe(value):
    """Plain JSON values: numpy scalars and arrays unwrapped; inf as the string "inf" (PSNR of
    identical images), nan as null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    if isinstance(value, Path):
        return str(value)
    return value


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞"
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _cm(metres) -> str:
    return _fmt(None if metres is None else 100 * metres)


def _scores_row(name: str, scores: dict) -> str:
    match = scores.get("match")
    acc = f"{_fmt(match['accuracy'])} ({match['inliers']}/{match['matches']})" if match else "–"
    return f"| {name} | {_fmt(scores['psnr_db'])} | {_fmt(scores['ssim'])} | {acc} |"


def _write_pictures(name: str, result: dict, folder: Path) -> dict:
    images = result["images"]
    files = {}
    side = labelled_strip(
        [images["generated_start"], images["generated_revisit"], images["truth_revisit"], images["memory_revisit"]],
        ["generated start", "generated revisit", "truth revisit", "memory at revisit"])
    files["closed_loop"] = "closed_loop.png"
    write_frames(folder / files["closed_loop"], side[None], single=True)
    n = len(images["truth"])
    picks = sorted(set(np.linspace(0, n - 1, min(n, 6)).round().astype(int).tolist()))
    strip = filmstrip([("generated", images["generated"]), ("truth", images["truth"])], picks)
    files["frames"] = "generated_vs_truth.png"
    write_frames(folder / files["frames"], strip[None], single=True)

    per_frame = result["per_frame"]
    frames = np.arange(n)
    write_atomic(folder / "coverage.svg", line_chart(
        [("before generation", frames, per_frame["coverage_before_generation"]),
         ("final memory", frames, per_frame["coverage_final_memory"])],
        title=f"{name}: share of visible surfaces the memory covers", xlabel="frame", ylabel="coverage",
        y_range=(0.0, 1.02)))
    files["coverage"] = "coverage.svg"

    rounds = result["rounds"]
    x = np.arange(len(rounds))
    geometry = [r["geometry"] for r in rounds]
    series = [("accuracy median (cm)", x, [100 * g["accuracy_median_m"] for g in geometry]),
              ("completeness median (cm)", x, [100 * g["completeness_median_m"] for g in geometry]),
              ("Chamfer (cm)", x, [100 * g["chamfer_m"] for g in geometry])]
    write_atomic(folder / "geometry.svg", line_chart(series, title=f"{name}: memory vs ground-truth geometry",
                                                     xlabel="rounds done (0 = initial memory)", ylabel="centimetres"))
    files["geometry"] = "geometry.svg"
    keys = list(geometry[0]["thresholds"])
    write_atomic(folder / "fscore.svg", line_chart(
        [(f"F-score @{k}", x, [g["thresholds"][k]["fscore"] for g in geometry]) for k in keys],
        title=f"{name}: memory F-score by round", xlabel="rounds done (0 = initial memory)", ylabel="F-score",
        y_range=(0.0, 1.02)))
    files["fscore"] = "fscore.svg"
    write_atomic(folder / "frame_psnr.svg", line_chart(
        [("memory projection vs truth", frames, per_frame["memory_projection_psnr_db"]),
         ("generated vs truth", frames, per_frame["generated_vs_truth_psnr_db"])],
        title=f"{name}: PSNR against the ground truth", xlabel="frame", ylabel="PSNR (dB)"))
    files["frame_psnr"] = "frame_psnr.svg"
    return files


def _markdown(report: dict, pictures: dict) -> str:
    opts = report["options"]
    lines = [
        "# Spatial-consistency evaluation",
        "",
        (f"Generator **{opts['generator']}**, {opts['width']}x{opts['height']}, {opts['frames']} frames in "
         f"{opts['rounds']} rounds, Cycles {opts['samples']} samples, memory voxel {opts['voxel_size']} m. "
         "Every path is a closed loop: the last frame's camera is the first frame's, so the revisit is "
         "compared with the start view. Ground truth: Cycles colour and exact depth from Blender."),
        "",
        ("| scene | revisit PSNR | revisit SSIM | revisit match acc. | memory@revisit PSNR | coverage@revisit | "
         "memory points | accuracy median | completeness median | F@5cm |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, scene in report["scenes"].items():
        s = scene["summary"]
        lines.append(
            f"| {name} | {_fmt(s['revisit_psnr_db'])} dB | {_fmt(s['revisit_ssim'])} | {_fmt(s['revisit_match_accuracy'])} | "
            f"{_fmt(s['memory_at_revisit_psnr_db'])} dB | {_fmt(s['memory_at_revisit_coverage'])} | {s['memory_points']} | "
            f"{_cm(s['memory_accuracy_median_m'])} cm | {_cm(s['memory_completeness_median_m'])} cm | "
            f"{_fmt(s.get('memory_fscore_5cm'))} |")
    for name, scene in report["scenes"].items():
        loop, files = scene["closed_loop"], pictures[name]
        lines += [
            "", f"## {name}", "", f"{scene['description']}.", "",
            f"![start vs revisit]({name}/{files['closed_loop']})", "",
            "| comparison | PSNR (dB) | SSIM | match accuracy (inliers/matches) |",
            "| --- | --- | --- | --- |",
            _scores_row("generated revisit vs generated start", loop["generated_revisit_vs_generated_start"]),
            _scores_row("generated revisit vs truth", loop["generated_revisit_vs_truth"]),
            _scores_row("generated start vs truth", loop["generated_start_vs_truth"]),
            _scores_row("memory at revisit vs truth (covered pixels)", loop["memory_at_revisit_vs_truth"]),
            _scores_row(f"unrelated views, for scale (truth {loop['unrelated_truth_baseline']['frame']} vs 0)",
                        loop["unrelated_truth_baseline"]),
            "",
            "| after round | frames seen | memory points | memory MB | accuracy median (cm) | completeness median (cm) | "
            "Chamfer (cm) | " + " | ".join(f"P/R/F @{k}" for k in scene["rounds"][0]["geometry"]["thresholds"])
            + " | projection PSNR (dB) | projection depth err. median (cm) | reference true overlap (best possible) |",
            "| " + " | ".join(["---"] * (10 + len(scene["rounds"][0]["geometry"]["thresholds"]))) + " |",
        ]
        for r in scene["rounds"]:
            g = r["geometry"]
            prf = " | ".join(f"{_fmt(t['precision'], 2)}/{_fmt(t['recall'], 2)}/{_fmt(t['fscore'], 2)}"
                             for t in g["thresholds"].values())
            proj = r.get("projection_vs_truth")
            overlap = "–" if r.get("reference_true_overlap") is None else \
                f"{_fmt(r['reference_true_overlap'], 2)} ({_fmt(r['best_possible_reference_overlap'], 2)})"
            label = "initial" if r["round"] == "init" else str(r["round"] + 1)
            lines.append(
                f"| {label} | {r['frames_seen']} | {r['memory_points']} | {r['memory_bytes'] / 1e6:.2f} | "
                f"{_cm(g['accuracy_median_m'])} | {_cm(g['completeness_median_m'])} | {_cm(g['chamfer_m'])} | {prf} | "
                f"{_fmt(proj['psnr_db']) if proj else '–'} | "
                f"{_cm(proj['depth']['median_abs_m']) if proj else '–'} | {overlap} |")
        lines += ["", f"![coverage]({name}/{files['coverage']}) ![geometry]({name}/{files['geometry']})",
                  f"![F-score]({name}/{files['fscore']}) ![PSNR]({name}/{files['frame_psnr']})", "",
                  f"![generated vs truth]({name}/{files['frames']})"]
    lines += ["", (
        "Metrics: PSNR; SSIM (gaussian window, luma); match accuracy = RANSAC fundamental-matrix inliers / SIFT "
        "ratio-test matches; accuracy = memory point to nearest true surface point, completeness = true surface point "
        "of every frame seen so far to nearest memory point, precision/recall/F-score at thresholds (Tanks and "
        "Temples; at small thresholds recall is bounded by the pixel footprint on far surfaces); coverage = share of "
        "surface pixels the memory covers; reference true overlap = share of a retrieved reference frame's surface "
        "that the round's cameras truly see (best possible: the best past frames by that measure)."), ""]
    return "\n".join(lines)


def write_report(results: dict, options, out) -> dict:
    """Write report.json, report.md and per-scene pictures under `out`; return the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pictures = {name: _write_pictures(name, result, out / name) for name, result in results.items()}
    from .groundtruth import SCENES

    report = {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "options": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in asdict(options).items()},
        "scenes": {name: {"description": SCENES[name].description if name in SCENES else name,
                          **{k: v for k, v in result.items() if k != "images"},
                          "pictures": {k: f"{name}/{v}" for k, v in pictures[name].items()}}
                   for name, result in results.items()},
    }
    report = json_safe(report)
    write_json(out / "report.json", report)
    write_atomic(out / "report.md", _markdown(_unsafe(report), pictures))
    return report


def _unsafe(value):
    """The inverse of json_safe for the markdown writer: "inf" back to float inf, null to nan."""
    if isinstance(value, dict):
        return {k: _unsafe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsafe(v) for v in value]
    if value == "inf":
        return math.inf
    if value == "-inf":
        return -math.inf
    return value
