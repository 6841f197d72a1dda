"""The evaluation runner and report on an analytic scene (no Blender): a textured floor and two
walls ray-cast exactly, seen along a closed loop."""

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from spatia.cameras import Cameras
from spatia.cli.main import main
from spatia.eval import (
    EvalOptions,
    GroundTruth,
    evaluate_scene,
    round_plan,
    true_overlap,
)
from spatia.eval.plots import line_chart
from spatia.eval.report import json_safe, write_report
from spatia.engine.models.oracle import FrameTable, OracleGenerator
from spatia.engine.plan import plan_rounds

# planes as (normal, offset): n . x = offset
PLANES = [(np.array([0.0, 0.0, 1.0]), 0.0), (np.array([0.0, 1.0, 0.0]), 6.0), (np.array([1.0, 0.0, 0.0]), -5.0)]


def colour_at(p: np.ndarray) -> np.ndarray:
    """A two-scale checker plus stripes in world coordinates: texture everywhere."""
    c1 = (np.floor(p / 0.5).sum(-1) % 2)[..., None]
    c2 = (np.floor(p / 0.17).sum(-1) % 2)[..., None]
    base = 60 + 120 * c1 + 50 * c2
    tint = np.stack([np.sin(p[..., 0] * 1.3), np.sin(p[..., 1] * 0.9 + 1), np.sin(p[..., 2] * 2.1 + 2)], -1)
    return np.clip(base + 30 * tint, 0, 255).astype(np.uint8)


def analytic_views(cameras: Cameras):
    """Exact colour and z-depth (0 = nothing hit) of the planes."""
    f, h, w = len(cameras), cameras.height, cameras.width
    k = cameras.intrinsics
    u, v = np.arange(w) + 0.5, np.arange(h) + 0.5
    rays_cam = np.stack(np.broadcast_arrays((u[None, None] - k[:, 2, None, None]) / k[:, 0, None, None],
                                            (v[None, :, None] - k[:, 3, None, None]) / k[:, 1, None, None],
                                            np.ones((f, 1, 1))), -1)
    c2w = cameras.c2w
    rays = np.einsum("fij,fhwj->fhwi", c2w[:, :3, :3], rays_cam)
    origin = c2w[:, None, None, :3, 3]
    best = np.full((f, h, w), np.inf)
    for normal, offset in PLANES:
        denom = rays @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (offset - origin @ normal) / denom
        best = np.where(np.isfinite(t) & (t > 0) & (t < best), t, best)
    hit = np.isfinite(best)
    point = origin + rays * np.where(hit, best, 0)[..., None]
    rgb = np.where(hit[..., None], colour_at(point), np.array([150, 180, 230], dtype=np.uint8))
    return rgb.astype(np.uint8), np.where(hit, best, 0).astype(np.float32)


def analytic_truth(frames=17, width=64, height=48) -> GroundTruth:
    t = np.arange(frames) / (frames - 1)
    a = 2 * np.pi * t
    eye = np.stack([0.8 * np.sin(a), -1.0 + 0.8 * (1 - np.cos(a)), np.full(frames, 1.5)], 1)
    yaw = 0.9 * np.sin(a)
    target = eye + np.stack([np.sin(yaw), np.cos(yaw), np.full(frames, -0.3)], 1)
    cams = Cameras.look_at(eye, target, width=width, height=height, fov_x_deg=70.0)
    rgb, depth = analytic_views(cams)
    return GroundTruth("planes", rgb, depth, cams, 24.0, 1)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    gt = analytic_truth()
    out = tmp_path_factory.mktemp("eval")
    options = EvalOptions(scenes=["planes"], width=64, height=48, frames=17, rounds=3, out=out, progress=False)
    oracle = OracleGenerator(FrameTable(gt.cameras, gt.rgb, gt.depth))
    result = evaluate_scene(gt, oracle, options, out / "planes")
    report = write_report({"planes": result}, options, out)
    return gt, result, report, out


def test_round_plan_covers_the_frames_in_the_asked_rounds():
    for frames, rounds in [(25, 3), (48, 4), (17, 3), (10, 1), (100, 7)]:
        plan = round_plan(frames, rounds)
        spans = plan_rounds(frames, ["x"], **plan)
        assert len(spans) == rounds and spans[-1].end == frames


def test_true_overlap_of_the_analytic_views():
    gt = analytic_truth()
    assert true_overlap(gt, 0, 0) == pytest.approx(1.0)
    assert true_overlap(gt, 0, 16) == pytest.approx(1.0)  # the loop closes on the start pose
    swing = [true_overlap(gt, 0, j) for j in range(17)]
    assert min(swing) < 0.6 * max(swing)  # the camera turns away and back


def test_oracle_evaluation_reports_a_consistent_loop_and_accurate_memory(evaluated):
    gt, result = evaluated[:2]
    loop = result["closed_loop"]
    assert loop["pose_difference"] < 1e-9
    assert loop["generated_revisit_vs_generated_start"]["psnr_db"] == math.inf
    assert loop["generated_revisit_vs_generated_start"]["ssim"] == pytest.approx(1.0)
    assert loop["generated_revisit_vs_generated_start"]["match"]["accuracy"] > 0.9
    assert loop["memory_at_revisit_vs_truth"]["coverage"] > 0.95
    assert loop["memory_at_revisit_vs_truth"]["depth"]["median_abs_m"] < 0.03
    # exact depth in: the memory lies on the true surfaces
    rounds = result["rounds"]
    assert [r["round"] for r in rounds] == ["init", 0, 1, 2]
    final = rounds[-1]["geometry"]
    assert final["accuracy_median_m"] < 0.02
    # completeness is bounded by sampling: the memory keeps about one point per pixel footprint
    # where a surface was seen, and far walls are ~15 cm per pixel at 64x48
    assert final["thresholds"]["5cm"]["recall"] > 0.55 and final["thresholds"]["10cm"]["recall"] > 0.9
    assert final["thresholds"]["5cm"]["precision"] > 0.95
    assert rounds[-1]["memory_points"] > rounds[0]["memory_points"]
    cov = np.array(result["per_frame"]["coverage_final_memory"])
    assert cov.min() > 0.9
    assert len(result["per_frame"]["coverage_before_generation"]) == len(gt)


def test_report_files(evaluated):
    out = evaluated[3]
    data = json.loads((out / "report.json").read_text())
    assert data["schema"] == "spatia.eval"
    summary = data["scenes"]["planes"]["summary"]
    # the oracle's frames are the truth: not scored as a result, and the summary says what is measured
    assert summary["revisit_psnr_db"] is None and "memory pipeline" in summary["measures"]
    assert data["scenes"]["planes"]["closed_loop"]["generated_revisit_vs_generated_start"]["psnr_db"] == "inf"
    assert "images" not in data["scenes"]["planes"]
    md = (out / "report.md").read_text()
    assert "| planes |" in md and "∞" in md
    for name in ("closed_loop.png", "generated_vs_truth.png"):
        assert (out / "planes" / name).stat().st_size > 1000
        assert f"planes/{name}" in md
    for name in ("coverage.svg", "geometry.svg", "fscore.svg", "frame_psnr.svg"):
        ET.parse(out / "planes" / name)  # well-formed
        assert f"planes/{name}" in md


def test_line_chart_and_json_safe_handle_non_finite_values():
    svg = line_chart([("a", [0, 1, 2, 3], [1.0, math.inf, float("nan"), 2.0]), ("b", [0, 3], [0.5, 0.7])],
                     title="t <&>", xlabel="x", ylabel="y")
    root = ET.fromstring(svg)
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 3  # a's line is broken in two
    assert "∞" in svg
    assert json_safe({"a": np.float32(1.5), "b": [math.inf, float("nan")], "c": np.arange(2)}) == \
        {"a": 1.5, "b": ["inf", None], "c": [0, 1]}


def test_cli_refuses_generators_that_cannot_run_before_rendering(tmp_path, capsys):
    assert main(["eval", "--generator", "spatia", "--out", str(tmp_path / "x"), "--quick"]) == 2
    err = capsys.readouterr().err
    assert "spatia eval: error:" in err and "spatia-5b" in err
    assert main(["eval", "--generator", "nonsense", "--out", str(tmp_path / "x")]) == 2
    assert "unknown generator 'nonsense'" in capsys.readouterr().err
    # the names `spatia generate` takes: a preset without weights says how to get them, before rendering
    assert main(["eval", "--generator", "wan-vace-1.3b", "--out", str(tmp_path / "x"), "--quick"]) == 2
    assert "spatia eval: error: wan-vace-1.3b" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["eval", "--size", "big"])
