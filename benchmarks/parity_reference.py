"""spatia-5b's conditioning, signal by signal, against the authors' own code run on the same inputs.

Needs a local copy of the authors' repository (ZhaoJingjing713/Spatia: `inference.py`,
`utils/frustum_culling.py`, `test_cases/`); nothing of it is copied into this project, it is
loaded from `--reference` at run time. What runs of theirs, unchanged:
- `utils/frustum_culling.py` whole (`frustum_frontmost_mask`, their CPU path, and
  `find_mask_matches` with its bfloat16 product and Hungarian assignment);
- from `inference.py`, by source: `compute_total_rounds`, `get_round_range`, `read_w2cs_from_txt`,
  `read_intrinsics_from_txt` and `select_reference_frames` (whose only outside calls, open3d's
  PLY reader and the pipeline's device, are handed the same points and "cpu");
- diffusers' `export_to_video` (what their `utils/render_point.py` writes the control and score
  videos with). Their reader, DiffSynth's `VideoData`, is not installed here: at the trained size
  it returns imageio's ffmpeg frames unchanged, which is what `_their_read` does.
Their memory comes from MapAnything, which cannot run here: both sides get the same synthetic
memory instead, a box room around each case's cameras sampled every `--spacing` metres, and the
control videos are this project's render of it (the render itself was compared with PyTorch3D
separately). The world's view index is filled as a world fills it (frames on the 6 fps grid,
visible sets by the reference's rule) against that memory.

Cases: the authors' three, at their length (194 frames at most) and cut shorter (so the last
round is short and padded), plus seeded random paths. Writes benchmarks/results/parity_reference.json
and prints the table for docs/spatia-parity.md.

    python benchmarks/parity_reference.py --reference PATH            # every case
    python benchmarks/parity_reference.py --reference PATH --quick    # fewer cases, 17 video frames
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
import re
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from spatia.cameras import Cameras  # noqa: E402
from spatia.engine.models.spatia.generator import video_round_trip  # noqa: E402
from spatia.engine.plan import plan_rounds  # noqa: E402
from spatia.engine.render_control import render_control  # noqa: E402
from spatia.engine.retrieval import bf16_counts, padded_targets, retrieve_indexed  # noqa: E402
from spatia.engine.view_index import ViewIndex, frontmost_mask, visible_ids  # noqa: E402
from spatia.formats.reference_case import read_reference_case  # noqa: E402

WIDTH, HEIGHT, FPS = 1248, 704, 24
FIRST, ROUND, HISTORY, REFS = 121, 81, 9, 7
INDEX_STEP, TARGET_STEP = 4, 12  # 6 fps and 2 fps of 24 fps: their ref_hist_stride and ref_stride
THEIR_FUNCTIONS = ("compute_total_rounds", "get_round_range", "read_w2cs_from_txt", "read_intrinsics_from_txt",
                   "select_reference_frames")


# --- the authors' code, loaded from their checkout -------------------------------------------------------
def load_reference(root: Path) -> types.SimpleNamespace:
    spec = importlib.util.spec_from_file_location("spatia_reference_frustum", root / "utils" / "frustum_culling.py")
    culling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(culling)
    tree = ast.parse((root / "inference.py").read_text(encoding="utf-8"))
    chosen = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in THEIR_FUNCTIONS]
    namespace = {"math": math, "np": np, "torch": torch, "re": re, "json": json, "shutil": shutil,
                 "o3d": _PointsReader, "frustum_frontmost_mask_triton": culling.frustum_frontmost_mask_triton,
                 "find_mask_matches": culling.find_mask_matches}
    exec(compile(ast.Module(body=chosen, type_ignores=[]), str(root / "inference.py"), "exec"), namespace)
    return types.SimpleNamespace(culling=culling, **{name: namespace[name] for name in THEIR_FUNCTIONS})


class _PointsReader:
    """Stands where their code calls open3d's PLY reader: it returns the points registered under
    the name (float64, as open3d gives them)."""

    clouds: dict = {}

    class io:  # noqa: N801  (open3d's module layout)
        @staticmethod
        def read_point_cloud(name):
            points = _PointsReader.clouds[name]
            return types.SimpleNamespace(points=points, colors=np.full_like(points, 0.5))


def _their_read(path: Path) -> np.ndarray:
    """DiffSynth's VideoData at the video's own size: imageio's ffmpeg reader, frame by frame."""
    import imageio

    reader = imageio.get_reader(str(path))
    try:
        return np.stack([np.asarray(frame)[..., :3] for frame in reader])
    finally:
        reader.close()


def their_round_trip(video: np.ndarray, covered: np.ndarray, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Their control and score videos: written by export_to_video as render_point.py writes them
    (PIL frames, fps 24), read back, the score inverted (inference.py)."""
    from diffusers.utils import export_to_video
    from PIL import Image

    export_to_video([Image.fromarray(f) for f in video], str(folder / "render.mp4"), fps=24)
    export_to_video([Image.fromarray(f) for f in covered], str(folder / "render-score.mp4"), fps=24)
    return _their_read(folder / "render.mp4"), 255 - _their_read(folder / "render-score.mp4")


# --- inputs ------------------------------------------------------------------------------------------------
def box_room(centres: np.ndarray, spacing: float, rng) -> np.ndarray:
    """The six faces of a box 3 m beyond the cameras' extent (2.5 m high around them), every
    `spacing` metres, jittered by a tenth of it, plus 40 small boxes inside: float32 [N, 3]."""
    low, high = centres.min(0) - 3.0, centres.max(0) + 3.0
    faces = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        u = np.arange(low[others[0]], high[others[0]], spacing)
        v = np.arange(low[others[1]], high[others[1]], spacing)
        uu, vv = np.meshgrid(u, v, indexing="ij")
        for value in (low[axis], high[axis]):
            face = np.empty((uu.size, 3))
            face[:, axis], face[:, others[0]], face[:, others[1]] = value, uu.ravel(), vv.ravel()
            faces.append(face)
    for _ in range(40):
        centre = rng.uniform(low + 1.0, high - 1.0)
        size = rng.uniform(0.2, 0.8)
        n = int((size / spacing) ** 2 * 6)
        faces.append(centre + rng.uniform(-size / 2, size / 2, (n, 3)))
    xyz = np.concatenate(faces)
    return (xyz + rng.normal(0, spacing / 10, xyz.shape)).astype(np.float32)


def random_path(rng, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded wandering camera (OpenCV w2c [F,4,4]) that turns back on itself, and
    normalised intrinsics: paths the authors' cases do not contain."""
    t = np.linspace(0, 1, frames)
    yaw = rng.uniform(-1, 1) + rng.uniform(1.5, 4.0) * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t)
    eye = np.stack([np.cumsum(np.cos(yaw)), np.cumsum(np.sin(yaw)), np.zeros(frames)], 1) * rng.uniform(0.01, 0.05)
    target = eye + np.stack([np.cos(yaw), np.sin(yaw), rng.uniform(-0.2, 0.2, frames)], 1)
    cams = Cameras.look_at(eye, target, up=(0, 0, 1), width=WIDTH, height=HEIGHT, fov_x_deg=rng.uniform(50, 80))
    k = cams.intrinsics[0] / [WIDTH, HEIGHT, WIDTH, HEIGHT]
    return cams.w2c, k


# --- one case ----------------------------------------------------------------------------------------------
def compare_case(ref, name: str, w2c_theirs: np.ndarray, intrinsic: np.ndarray, cams: Cameras, spacing: float,
                 rng, video_frames: int, work: Path) -> dict:
    total = len(cams)
    xyz = box_room(cams.c2w[:, :3, 3], spacing, rng)
    ids = np.arange(len(xyz), dtype=np.int64)
    out = {"case": name, "frames": total, "points": len(xyz), "rounds": []}
    # round plan: theirs and ours
    rounds_theirs = ref.compute_total_rounds(total, FIRST, ROUND, HISTORY)
    ours = plan_rounds(total, ["p"], first_round_frames=FIRST, round_frames=ROUND, overlap=HISTORY,
                       repeat_last_prompt=True)
    out["plan_equal"] = rounds_theirs == len(ours) and all(
        ref.get_round_range(i, total, FIRST, ROUND, HISTORY) == (r.start, r.end, r.target)
        for i, r in enumerate(ours))
    args = types.SimpleNamespace(width=WIDTH, height=HEIGHT, point_retrieval_batch_size=10_000_000, ref_num=REFS)
    pipe = types.SimpleNamespace(device="cpu")
    index = ViewIndex()
    for i, rnd in enumerate(ours):
        if i == 0:
            continue
        start, end, target = ref.get_round_range(i, total, FIRST, ROUND, HISTORY)
        round_w2c = torch.from_numpy(w2c_theirs[start:end])
        padding = target - len(round_w2c)
        if padding:
            round_w2c = torch.cat([round_w2c, round_w2c[-1:].repeat(padding, 1, 1)])
        history = list(range(0, start, INDEX_STEP))
        _PointsReader.clouds[name] = xyz.astype(np.float64)
        theirs = ref.select_reference_frames(pipe, name, w2c_theirs[:start][::INDEX_STEP],
                                             round_w2c.numpy()[::TARGET_STEP], intrinsic, history, args)
        # the world path: the view index holds the 6 fps grid, filled as frames enter
        missing = [f for f in history if f not in index]
        index.add(missing, visible_ids(xyz, ids, cams[missing], rule="reference"))
        targets = padded_targets(cams[rnd.start:rnd.end], rnd.padding)
        found = retrieve_indexed(index, xyz, ids, targets, [f for f in index.frames if f < rnd.start], k=REFS,
                                 scoring="reference", frame_fps=FPS)
        mine = [int(f) for f in found.indices]
        # the overlap matrix both sides assign on: their bf16 product against our exact counts rounded
        masks_h = ref.culling.frustum_frontmost_mask(torch.from_numpy(xyz), torch.from_numpy(w2c_theirs[:start][::INDEX_STEP]),
                                                     torch.tensor(intrinsic * [WIDTH, HEIGHT, WIDTH, HEIGHT], dtype=torch.float32),
                                                     (HEIGHT, WIDTH))
        masks_t = ref.culling.frustum_frontmost_mask(torch.from_numpy(xyz), round_w2c[::TARGET_STEP],
                                                     torch.tensor(intrinsic * [WIDTH, HEIGHT, WIDTH, HEIGHT], dtype=torch.float32),
                                                     (HEIGHT, WIDTH))
        their_matrix = (masks_t.bfloat16() @ masks_h.bfloat16().T).float().numpy()
        their_exact = (masks_t.double() @ masks_h.double().T).numpy()
        our_masks = frontmost_mask(xyz, cams[history])
        # what each piece is worth: the selection without it (the comparison must be able to fail)
        variants = {}
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-found.shared.astype(np.float32))
        variants["exact counts (no bf16)"] = [history[c] for c in cols[:REFS]]
        unpadded = retrieve_indexed(index, xyz, ids, cams[rnd.start:rnd.end], [f for f in history], k=REFS,
                                    scoring="reference", frame_fps=FPS)
        variants["unpadded targets"] = [int(f) for f in unpadded.indices]
        nonzero = found.scores > 0
        variants["zero-overlap pairs dropped"] = [int(f) for f in found.indices[nonzero]]
        rendered_h = visible_ids(xyz, ids, cams[history])
        rendered_t = visible_ids(xyz, ids, targets[found.target_indices])
        shared = np.array([[len(np.intersect1d(a, b, assume_unique=True)) for b in rendered_h] for a in rendered_t])
        rows, cols = linear_sum_assignment(-bf16_counts(shared))
        variants["renderer's visibility"] = [history[c] for c in cols[:REFS]]
        out["rounds"].append({
            "round": i, "span": [start, end], "padding": padding, "targets": len(found.target_indices),
            "candidates": len(history),
            "reference_frames_theirs": theirs, "reference_frames_ours": mine,
            "frames_equal": len(set(theirs) & set(mine)), "slots_equal": sum(a == b for a, b in zip(theirs, mine)),
            "count": [len(theirs), len(mine)],
            "visibility_masks_equal": float((our_masks == masks_h.numpy()).mean()),
            "counts_exact_max_diff": float(np.abs(found.shared - their_exact).max()),
            "counts_bf16_max_diff": float(np.abs(bf16_counts(found.shared) - their_matrix).max()),
            "bf16_ties": int(sum(len(row) - len(np.unique(row)) for row in their_matrix)),
            "zero_overlap_pairs_kept": int((found.scores == 0).sum()),
            "variants": {name: {"frames_equal": len(set(theirs) & set(v)), "slots_equal": sum(a == b for a, b in zip(theirs, v)),
                                "count": len(v)} for name, v in variants.items()},
        })
    # the control and score videos of the last round through both round trips
    last = ours[-1]
    sub = padded_targets(cams[last.start:last.end], last.padding)[:video_frames]
    video, score = render_control(xyz, np.full((len(xyz), 3), 0.6, np.float32) * rng.uniform(0.5, 1, (len(xyz), 3)),
                                  sub).to_uint8()
    covered = np.repeat((255 - score)[..., None], 3, axis=-1)
    mine_video, mine_score = video_round_trip(video, score)
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    their_video, their_score = their_round_trip(video, covered, folder)
    out["video"] = {
        "frames": len(video),
        "control_max_diff": int(np.abs(mine_video.astype(int) - their_video).max()),
        "control_mean_diff": float(np.abs(mine_video.astype(int) - their_video).mean()),
        "score_max_diff": int(np.abs(mine_score.astype(int) - their_score).max()),
        "score_mean_diff": float(np.abs(mine_score.astype(int) - their_score).mean()),
        "round_trip_vs_exact_control_mean": float(np.abs(mine_video.astype(int) - video).mean()),
        "round_trip_vs_exact_score_mean": float(np.abs(mine_score[..., 0].astype(int) - score).mean()),
    }
    return out


def table(results: list[dict]) -> str:
    lines = ["| case | frames | round (span, padding) | reference frames equal | slots equal | references (theirs / ours) "
             "| shared counts, max diff (exact / bf16) | bf16 ties | visibility masks equal | plan equal |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        for r in result["rounds"]:
            lines.append(f"| {result['case']} | {result['frames']} | {r['round']} ({r['span'][0]}-{r['span'][1]}, "
                         f"{r['padding']}) | {r['frames_equal']}/{r['count'][0]} | {r['slots_equal']}/{r['count'][0]} | "
                         f"{r['count'][0]} / {r['count'][1]} | {r['counts_exact_max_diff']:g} / {r['counts_bf16_max_diff']:g} "
                         f"| {r['bf16_ties']} | {100 * r['visibility_masks_equal']:.4f}% | {result['plan_equal']} |")
    names = sorted({n for result in results for r in result["rounds"] for n in r["variants"]})
    lines += ["", "Without each piece (reference frames equal / slots equal / references given):", "",
              "| case | round | " + " | ".join(names) + " |", "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for result in results:
        for r in result["rounds"]:
            cells = [f"{r['variants'][n]['frames_equal']}/{r['count'][0]} / {r['variants'][n]['slots_equal']}/"
                     f"{r['count'][0]} / {r['variants'][n]['count']}" for n in names]
            lines.append(f"| {result['case']} | {r['round']} | " + " | ".join(cells) + " |")
    lines += ["", "| case | video frames | control: max / mean diff (levels of 255) | score: max / mean diff "
              "| round trip vs exact render, mean (control / score) |", "| --- | --- | --- | --- | --- |"]
    for result in results:
        v = result["video"]
        lines.append(f"| {result['case']} | {v['frames']} | {v['control_max_diff']} / {v['control_mean_diff']:.4f} | "
                     f"{v['score_max_diff']} / {v['score_mean_diff']:.4f} | {v['round_trip_vs_exact_control_mean']:.2f} / "
                     f"{v['round_trip_vs_exact_score_mean']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, type=Path, help="a local copy of the authors' repository")
    parser.add_argument("--quick", action="store_true", help="the authors' cases at full length only, 17 video frames")
    parser.add_argument("--spacing", type=float, default=0.05, help="spacing of the synthetic memory's points (m)")
    parser.add_argument("--random", type=int, default=3, help="seeded random paths besides the authors' cases")
    parser.add_argument("--video-frames", type=int, default=ROUND, help="frames of each round-tripped video")
    args = parser.parse_args(argv)
    ref = load_reference(args.reference)
    rng = np.random.default_rng(0)
    results = []
    video_frames = 17 if args.quick else args.video_frames
    with tempfile.TemporaryDirectory(prefix="spatia-parity-") as tmp:
        work = Path(tmp)
        for number in (1, 2, 3):
            folder = args.reference / "test_cases" / f"case_{number}"
            w2c_all = ref.read_w2cs_from_txt(str(folder / "w2c.txt"))[:194]  # their max_frames
            intrinsic = ref.read_intrinsics_from_txt(str(folder / "intrinsics.txt"))
            cams_all = read_reference_case(folder).trajectory.cameras
            lengths = [len(w2c_all)] if args.quick else sorted({len(w2c_all), 160, 140} & set(range(2, len(w2c_all) + 1)))
            for frames in lengths:
                results.append(compare_case(ref, f"case_{number}[:{frames}]", w2c_all[:frames], intrinsic,
                                            cams_all[:frames], args.spacing, rng, video_frames, work))
                print(table(results[-1:]).splitlines()[2:3], flush=True)
        for seed in range(0 if args.quick else args.random):
            path_rng = np.random.default_rng(100 + seed)
            frames = int(path_rng.integers(150, 260))
            w2c, k = random_path(path_rng, frames)
            cams = Cameras(np.tile(k * [WIDTH, HEIGHT, WIDTH, HEIGHT], (frames, 1)), w2c, WIDTH, HEIGHT)
            results.append(compare_case(ref, f"random_{seed}", w2c[:, :3, :4].astype(np.float32), k.astype(np.float32),
                                        cams, args.spacing, rng, video_frames, work))
    text = table(results)
    print(text)
    harness.write("parity_reference_quick" if args.quick else "parity_reference", {"cases": results, "table": text})
    return 0


if __name__ == "__main__":
    sys.exit(main())
