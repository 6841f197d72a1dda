"""Ground truth from Blender (Cycles colour + exact depth) and the oracle evaluation of the room."""

import json
import math

import numpy as np
import pytest
from spatia.eval import EvalOptions, render_ground_truth, run_eval
from spatia.eval import groundtruth as groundtruth_module
from spatia.eval.scenes import terrain_height

pytestmark = pytest.mark.bpy


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    pytest.importorskip("bpy")
    return tmp_path_factory.mktemp("gt-cache")


@pytest.mark.slow
def test_street_renders_on_its_road_and_loops_back(cache):
    gt = render_ground_truth("street", 3, 48, 32, samples=1, cache_dir=cache, progress=False)
    assert gt.rgb.shape == (3, 32, 48, 3) and gt.depth.shape == (3, 32, 48)
    np.testing.assert_allclose(gt.cameras.w2c[-1], gt.cameras.w2c[0], atol=1e-9)
    sky = gt.depth[0] == 0
    assert 0.02 < sky.mean() < 0.6  # sky above the street, surfaces below
    # the bottom rows see the road, whose top is at z = 0 (dashes 1 cm above it)
    road = gt.cameras[0].unproject(gt.depth[:1])[0, -3:].reshape(-1, 3)
    assert np.median(np.abs(road[:, 2])) < 0.015
    assert gt.rgb.std() > 10  # textured, not blank


def test_terrain_points_lie_on_the_height_field(cache):
    gt = render_ground_truth("terrain", 3, 48, 32, samples=1, cache_dir=cache, progress=False)
    np.testing.assert_allclose(gt.cameras.w2c[-1], gt.cameras.w2c[0], atol=1e-9)
    pts = gt.points([0, 1])
    assert len(pts) > 1000
    # most pixels see the ground (rocks and trees stand above it); the mesh samples the
    # height field every 0.5 m, so flat facets depart from it by a few centimetres
    err = np.abs(pts[:, 2] - terrain_height(pts[:, 0], pts[:, 1]))
    assert np.median(err) < 0.05


def test_ground_truth_is_cached_per_scene_size_and_samples(cache, monkeypatch):
    first = render_ground_truth("street", 3, 48, 32, samples=1, cache_dir=cache, progress=False)
    monkeypatch.setattr(groundtruth_module, "_render", lambda *a, **k: pytest.fail("rendered again"))
    again = render_ground_truth("street", 3, 48, 32, samples=1, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(first.rgb, again.rgb)
    np.testing.assert_array_equal(first.depth, again.depth)
    assert again.cameras.equals(first.cameras)
    with pytest.raises(pytest.fail.Exception, match="rendered again"):
        render_ground_truth("street", 3, 48, 32, samples=2, cache_dir=cache, progress=False)
    with pytest.raises(ValueError, match="unknown evaluation scene"):
        render_ground_truth("moon", 3, 48, 32, cache_dir=cache)


@pytest.mark.slow
def test_oracle_evaluation_of_the_room_bounds_memory_error(cache, tmp_path):
    options = EvalOptions.quick(scenes=["room"], out=tmp_path / "eval", cache_dir=cache, progress=False)
    report = run_eval(options)
    scene = report["scenes"]["room"]
    s = scene["summary"]
    assert (s["frames"], s["rounds"], s["size"]) == (25, 3, "96x64")
    # the oracle returns the renders: the revisit is the start view exactly
    assert s["revisit_psnr_db"] is None and s["revisit_ssim"] is None  # the oracle's frames are the truth
    assert scene["closed_loop"]["generated_revisit_vs_generated_start"]["match"]["accuracy"] > 0.9
    # exact depth in, so the memory lies on the true surfaces and covers what was seen
    final = scene["rounds"][-1]["geometry"]
    assert final["accuracy_median_m"] < 0.02
    assert final["completeness_median_m"] < 0.03
    # the memory samples a surface about once per pixel footprint where it was seen (3-5 cm here)
    assert final["thresholds"]["5cm"]["recall"] > 0.9 and final["thresholds"]["10cm"]["recall"] > 0.99
    assert final["thresholds"]["5cm"]["precision"] > 0.95
    assert s["memory_at_revisit_coverage"] > 0.97
    assert s["memory_at_revisit_psnr_db"] > 17.0  # 2 cm voxels blur fine texture at this size
    unrelated = scene["closed_loop"]["unrelated_truth_baseline"]
    assert unrelated["psnr_db"] < s["memory_at_revisit_psnr_db"]
    # coverage grows: the first view barely covers the swing's far end, the final memory all of it
    before = np.array(scene["per_frame"]["coverage_before_generation"], dtype=float)
    assert np.nanmin(before) < 0.8 and min(scene["per_frame"]["coverage_final_memory"]) > 0.95
    points = [r["memory_points"] for r in scene["rounds"]]
    assert points == sorted(points) and points[-1] > 2 * points[0]
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["scenes"]["room"]["summary"]["memory_points"] \
        == s["memory_points"]
    assert math.isfinite(s["memory_chamfer_m"]) and s["memory_chamfer_m"] < 0.03
