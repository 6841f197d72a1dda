"""The evaluation report: report.json (every number), report.md (tables, SVG charts and PNG
pictures beside it, one folder per scene). Scenes with moving objects get their own section:
object memory on against off, per object."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from spatia.formats.atomic import write_atomic, write_json
from spatia.formats.video import write_frames

from .plots import filmstrip, labelled_strip, line_chart

SCHEMA = "spatia.eval"
SCHEMA_VERSION = 2  # 2: object_scenes


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
         "Ground truth: Cycles colour and exact depth from Blender."),
    ]
    if report["scenes"]:
        lines += _static_markdown(report, pictures)
    if report.get("object_scenes"):
        lines += _objects_markdown(report, pictures)
    return "\n".join(lines)


def _static_markdown(report: dict, pictures: dict) -> list[str]:
    lines = [
        "",
        ("Every path of these scenes is a closed loop: the last frame's camera is the first frame's, so the "
         "revisit is compared with the start view."),
        "",
        *sorted({f"Measured: {scene['summary']['measures']}." for scene in report["scenes"].values()
                 if scene["summary"].get("measures")}),
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
    return lines


def _objects_markdown(report: dict, pictures: dict) -> list[str]:
    def pair(d, fmt=_fmt):
        return f"{fmt(d['on'])} | {fmt(d['off'])}"

    def metres(v):
        return "missing" if v is None else _fmt(v, 2)

    lines = [
        "", "## Object memory: on vs off", "",
        ("Each scene with moving objects runs the world twice with the oracle, object memory on and off. The oracle "
         "gives the world the true instance masks of every clip, renumbered per clip with a random permutation, so "
         "following an object from clip to clip is the world's own association; both runs keep the moving objects "
         "out of the static memory. Measured where each object comes back into view, on the conditioning the "
         "generator was given (the memory's projection with the remembered objects drawn in):"),
        "",
        "| scene | object | re-entry frames | position error on (m) | off | mask IoU on | off | object PSNR on (dB) | "
        "off | id changes on | swaps on |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, scene in report["object_scenes"].items():
        swaps = scene["summary"]["swaps"]["on"]
        for tid, o in scene["objects"].items():
            frames = ", ".join(str(f) for f in o["reentry_frames"]) or "–"
            lines.append(f"| {name} | {o['label']} {tid} | {frames} | {pair(o['position_error_m'], metres)} | "
                         f"{pair(o['mask_iou'], lambda v: _fmt(v, 2))} | {pair(o['object_psnr_db'], lambda v: _fmt(v, 3))} | "
                         f"{_fmt(o['id_changes']['on'])} | {_fmt(swaps)} |")
    rule = next(iter(report["object_scenes"].values()))["rule"]
    lines += ["", (
        f"{rule} Position error: the track's anchor c (its points' centroid in its own frame) carried by the predicted "
        "pose, T_pred(f) c, against T_true(f) T_true(f0)^-1 T_obs(f0) c, f0 the track's first observed keyframe (the "
        "offset between the track's origin and Blender's cancels); mean over the re-entry frames (\"missing\": no "
        "track). Mask IoU: the conditioning pixels the object's track won against the true instance mask, mean over "
        "the re-entry frames. Object PSNR: the conditioning against the true frame over the true mask, pooled over "
        "the re-entry frames. Id changes: how often the world id given to the object's instance changed from clip to "
        "clip; swaps: how often an object took the id another one held (a pair exchanging ids counts once).")]
    for name, scene in report["object_scenes"].items():
        files = pictures[name]
        runs = scene["runs"]
        lines += [
            "", f"### {name}", "", f"{scene['description']}. Remembered objects at the end: "
            f"{runs['on']['remembered_objects']} (on), {runs['off']['remembered_objects']} (off); static memory points: "
            f"{runs['on']['memory_points']} (on), {runs['off']['memory_points']} (off); world loop "
            f"{runs['on']['world_loop_s']:.0f} s (on), {runs['off']['world_loop_s']:.0f} s (off).", "",
        ]
        if files.get("reentry"):
            lines += [f"![at re-entry]({name}/{files['reentry']})", ""]
        lines += [f"![position error]({name}/{files['position_error']}) ![mask IoU]({name}/{files['mask_iou']})"]
    lines.append("")
    return lines


ID_COLOURS = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                       [145, 30, 180], [70, 240, 240], [240, 50, 230]], dtype=np.uint8)


def _id_image(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    return np.where(ids[..., None] > 0, ID_COLOURS[1 + (ids - 1) % (len(ID_COLOURS) - 1)], ID_COLOURS[0])


def _write_object_pictures(name: str, result: dict, folder: Path) -> dict:
    images, files = result["images"], {}
    rows = []
    for tid, f in sorted(images["first_reentry"].items()):
        on, off = images["shots"]["on"].get(tid), images["shots"]["off"].get(tid)
        if on is None or off is None:
            continue
        truth_mask = images["instances"][f] == tid
        rows.append(labelled_strip(
            [images["truth"][f], on["rgb"], off["rgb"], _id_image(on["object_ids"]), _id_image(truth_mask)],
            [f"truth, frame {f}", "conditioning, memory on", "conditioning, memory off", "object ids (on)",
             f"true mask of {tid}"], min_width=200))
    if rows:
        width = max(r.shape[1] for r in rows)
        stacked = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                                  for r in rows])
        files["reentry"] = "reentry.png"
        write_frames(folder / files["reentry"], stacked[None], single=True)
    per_frame = result["per_frame"]
    n = len(images["truth"])
    frames = np.arange(n)
    labels = {tid: f"{o['label']} {tid}" for tid, o in result["objects"].items()}
    write_atomic(folder / "position_error.svg", line_chart(
        [(f"{labels[tid]} (on)", frames, pf["on"]["position_error_m"]) for tid, pf in per_frame.items()],
        title=f"{name}: predicted vs true position (memory on)", xlabel="frame", ylabel="error (m)"))
    files["position_error"] = "position_error.svg"
    series = []
    for tid, pf in per_frame.items():
        for mode in ("on", "off"):
            series.append((f"{labels[tid]} ({mode})", frames, pf[mode]["mask_iou"]))
    write_atomic(folder / "mask_iou.svg", line_chart(
        series, title=f"{name}: object mask IoU in the conditioning (frames where it is visible)", xlabel="frame",
        ylabel="IoU", y_range=(0.0, 1.02)))
    files["mask_iou"] = "mask_iou.svg"
    return files


def write_report(results: dict, options, out) -> dict:
    """Write report.json, report.md and per-scene pictures under `out`; return the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    static = {name: r for name, r in results.items() if "closed_loop" in r}
    moving = {name: r for name, r in results.items() if "closed_loop" not in r}
    pictures = {name: _write_pictures(name, result, out / name) for name, result in static.items()}
    pictures.update({name: _write_object_pictures(name, result, out / name) for name, result in moving.items()})
    from .groundtruth import SCENES

    def entry(name, result):
        return {"description": SCENES[name].description if name in SCENES else name,
                **{k: v for k, v in result.items() if k != "images"},
                "pictures": {k: f"{name}/{v}" for k, v in pictures[name].items()}}

    report = {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "options": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in asdict(options).items()},
        "scenes": {name: entry(name, result) for name, result in static.items()},
        "object_scenes": {name: entry(name, result) for name, result in moving.items()},
    }
    report = json_safe(report)
    write_json(out / "report.json", report)
    write_atomic(out / "report.md", _markdown(_unsafe(report), pictures))
    from .scenario_report import rows_of, write

    rows = rows_of(report)
    if rows:  # the generated scenarios: per scenario and per motion class, scenarios.md / .svg / .json
        write(rows, out)
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
