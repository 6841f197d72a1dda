"""Object-memory metrics on constructed cases whose answers are known, and the oracle's
instance masks."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from spatia.cameras import Cameras
from spatia.eval.object_metrics import (
    ghost_pixels,
    id_changes,
    identity_swaps,
    mask_iou,
    measure_objects,
    pose_matrix,
    position_error,
    reentry_events,
    rotation_about,
    true_anchor,
    visible_frames,
)
from spatia.engine.models.base import GenerationRequest
from spatia.engine.models.oracle import FrameTable, OracleGenerator, renumbering


# --- poses ------------------------------------------------------------------------------------
def test_rotation_about_up_is_a_right_handed_turn():
    np.testing.assert_allclose(rotation_about((0, 0, 1), math.pi / 2) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(rotation_about((0, -1, 0), math.pi / 2) @ [1, 0, 0], [0, 0, 1], atol=1e-12)
    m = pose_matrix([[1, 2, 3], [0, 0, 0]], [0.3, -1.0])
    assert m.shape == (2, 4, 4)
    np.testing.assert_allclose(m[0] @ [0, 0, 0, 1], [1, 2, 3, 1])


def turning_truth(frames=20):
    """An object driving along a curve: position and heading change every frame."""
    t = np.arange(frames) / 10.0
    position = np.stack([3 * t, 0.5 * t**2, np.zeros_like(t)], 1)
    heading = 0.4 * t
    return pose_matrix(position, heading)


def test_position_error_ignores_the_tracks_own_origin_and_measures_a_known_offset():
    truth = turning_truth()
    # the track put its origin 0.4 m ahead and 0.2 m up of Blender's origin, turned by 0.3 rad
    offset = pose_matrix([0.4, 0.0, 0.2], 0.3)
    track = truth @ offset  # the track's true pose at every frame
    anchor = np.array([0.1, -0.2, 0.3])  # its points' centroid in its own frame
    f0, frames = 2, np.arange(5, 20)
    observed = track[f0]
    # a perfect prediction scores 0 whatever the offset
    err = position_error(track[frames], truth, f0, observed, anchor, frames)
    np.testing.assert_allclose(err, 0.0, atol=1e-9)
    # a prediction 0.7 m off to the side (world y) scores 0.7
    wrong = track[frames].copy()
    wrong[:, 1, 3] += 0.7
    np.testing.assert_allclose(position_error(wrong, truth, f0, observed, anchor, frames), 0.7, atol=1e-9)
    # a prediction turned by 90 degrees about its own origin moves the anchor by |c_xy| * sqrt(2)
    turned = track[frames] @ pose_matrix([0, 0, 0], math.pi / 2)
    np.testing.assert_allclose(position_error(turned, truth, f0, observed, anchor, frames),
                               math.hypot(0.1, -0.2) * math.sqrt(2), atol=1e-9)
    np.testing.assert_allclose(true_anchor(truth, f0, observed, anchor)[7], (track[7] @ [*anchor, 1])[:3])


# --- visibility, re-entry, IoU ----------------------------------------------------------------
def test_reentry_frames_follow_the_rule():
    v = np.array([1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1], bool)
    # a gap of 3 before frame 5 (window of 4), a gap of 1 before 12 (not a re-entry), a gap of 3
    # before 16 (cut short by the end)
    assert reentry_events(v) == [[5, 6, 7, 8], [16, 17]]
    assert reentry_events(np.array([0, 0, 0, 0, 1, 1], bool)) == []  # first appearance is no re-entry
    masks = np.zeros((3, 100, 100), bool)
    masks[1, :3, :3] = True  # 9 px < 0.1% of 10,000 = 10
    masks[2, :4, :3] = True  # 12 px
    assert visible_frames(masks).tolist() == [False, False, True]


def test_mask_iou_known_values():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 20 px
    b[2:6, 0:5] = True  # 20 px, 10 shared
    assert mask_iou(a, b) == pytest.approx(10 / 30)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, np.zeros_like(a)) == 0.0
    assert math.isnan(mask_iou(np.zeros_like(a), np.zeros_like(a)))


# --- identities -------------------------------------------------------------------------------
def test_a_constructed_swap_counts_one_and_steady_ids_none():
    swapped = [{"A": 1, "B": 2}, {"A": 1, "B": 2}, {"A": 2, "B": 1}]
    assert identity_swaps(swapped) == 1
    assert id_changes([c["A"] for c in swapped]) == 1 and id_changes([c["B"] for c in swapped]) == 1
    steady = [{"A": 1, "B": 2}, {"A": 1}, {"A": 1, "B": 2}, {"B": 2}]
    assert identity_swaps(steady) == 0
    assert id_changes([c.get("A") for c in steady]) == 0
    # one object taking over the other's id while that one gets a new id is a swap too
    assert identity_swaps([{"A": 1, "B": 2}, {"A": 2, "B": 3}]) == 1
    # a new id for one object is an identity change but no swap
    assert identity_swaps([{"A": 1, "B": 2}, {"A": 5, "B": 2}]) == 0
    assert id_changes([1, None, 1, 5, 5, 1]) == 2


# --- one run, end to end on synthetic inputs --------------------------------------------------
def synthetic_run(memory: bool, shift: float = 0.0):
    """A 1-D world: a 4 px wide object slides right 1 px per frame along a 12-frame shot, out of
    view (a wall covers it) in frames 4-7. Two rounds: [0, 6) and [5, 12) with one overlap frame.
    The track's conditioning draws the object `shift` pixels (= metres) off."""
    n, h, w = 12, 8, 24
    truth_rgb = np.full((n, h, w, 3), 100, np.uint8)
    inst = np.zeros((n, h, w), np.int32)
    position = np.zeros((n, 3))
    for f in range(n):
        position[f, 0] = f
        if not 4 <= f <= 7:
            inst[f, 2:6, f + 2:f + 6] = 1
            truth_rgb[f][inst[f] == 1] = 200
    truth = {1: SimpleNamespace(label="car", position=position, heading=np.zeros(n))}
    frames = list(range(5, 12))
    predicted = {"frames": frames, "position": [[f + shift, 0.0, 0.0] for f in frames], "heading": [0.0] * 7}
    records = [{"round": 0, "start": 0, "end": 6, "overlap": 0},
               {"round": 1, "start": 5, "end": 12, "overlap": 1}]
    if memory:
        # the track's origin is the object's centroid, 4 m right of Blender's origin
        observed = {"frames": [0, 2], "position": [[4.0, 0, 0], [6.0, 0, 0]], "heading": [0.0, 0.0]}
        records[0].update(instances={"7": 3}, objects=[{"id": 3, "label": "car", "observed": observed,
                                                        "predicted": None}])
        records[1].update(instances={"2": 3}, objects=[{"id": 3, "label": "car", "observed": None,
                                                        "predicted": {**predicted, "position": [
                                                            [p[0] + 4.0, 0, 0] for p in predicted["position"]]}}])
    renumberings = {0: {1: 7}, 1: {1: 2}}

    def conditioning(r):
        rec = records[r]
        f_count = rec["end"] - rec["start"]
        rgb = np.full((f_count, h, w, 3), 100, np.uint8)
        ids = np.zeros((f_count, h, w), np.int32)
        if memory and r == 1:
            for i, f in enumerate(range(rec["start"], rec["end"])):
                x = f + 2 + int(round(shift))
                ids[i, 2:6, x:x + 4] = 3
                rgb[i][ids[i] == 3] = 200
        return SimpleNamespace(rgb=rgb, object_ids=ids)

    return measure_objects(truth_rgb, inst, truth, records, renumberings, conditioning, object_memory=memory)


def test_measure_objects_on_a_perfect_track_and_without_memory():
    on = synthetic_run(memory=True)
    car = on["objects"][1]
    assert car["reentry_frames"] == [8, 9, 10, 11]
    assert car["position_error_m"] == pytest.approx(0.0, abs=1e-9)
    assert car["mask_iou"] == 1.0 and car["object_psnr_db"] == math.inf
    assert car["id_changes"] == 0 and on["swaps"] == 0 and car["tracks"] == [3]
    off = synthetic_run(memory=False)["objects"][1]
    assert off["position_error_m"] is None and off["id_changes"] is None
    assert off["mask_iou"] == 0.0
    assert off["object_psnr_db"] == pytest.approx(20 * math.log10(255 / 100))


def test_measure_objects_with_a_known_error():
    car = synthetic_run(memory=True, shift=2.0)["objects"][1]
    assert car["position_error_m"] == pytest.approx(2.0)
    assert car["mask_iou"] == pytest.approx(8 / 24)  # 4 px wide boxes 2 px apart, 4 rows high
    assert car["position_error_first_m"] == pytest.approx(2.0)


# --- the oracle's instances -------------------------------------------------------------------
def test_oracle_returns_renumbered_instance_masks():
    f, h, w = 4, 6, 8
    cams = Cameras.look_at(np.stack([np.arange(f, dtype=float), np.zeros(f), np.zeros(f)], 1),
                           np.stack([np.arange(f, dtype=float), np.ones(f), np.zeros(f)], 1),
                           width=w, height=h, fov_x_deg=60.0)
    rgb = np.random.default_rng(0).integers(0, 255, (f, h, w, 3)).astype(np.uint8)
    depth = np.ones((f, h, w), np.float32)
    inst = np.zeros((f, h, w), np.int32)
    inst[:, :2, :2] = 1
    inst[:, 4:, 5:] = 2
    oracle = OracleGenerator(FrameTable(cams, rgb, depth, inst), instance_labels={1: "car", 2: "person"},
                             renumber_seed=3)
    seen = []
    for r, frames in enumerate([[0, 1], [1, 2, 3]]):
        request = GenerationRequest(prompt="x", projection=rgb[frames], projection_depth=depth[frames],
                                    hole_mask=np.zeros((len(frames), h, w), bool), cameras=cams[frames], round_index=r)
        out = oracle.generate(request)
        masks, labels = out.info["instance_masks"], out.info["instance_labels"]
        assert masks.dtype == np.int32 and masks.shape == (len(frames), h, w)
        ids = oracle.renumberings[r]
        assert set(ids) == {1, 2} and len(set(ids.values())) == 2 and 0 not in ids.values()
        for truth_id, clip_id in ids.items():
            np.testing.assert_array_equal(masks == clip_id, inst[frames] == truth_id)
        assert labels == {ids[1]: "car", ids[2]: "person"}
        np.testing.assert_array_equal(masks == 0, inst[frames] == 0)
        seen.append(ids)
    # renumbered per clip: over a few clips the ids are not all the truth's
    assert any(ids != {1: 1, 2: 2} for ids in seen)
    # without a seed the truth ids pass through; without instances nothing is added
    plain = OracleGenerator(FrameTable(cams, rgb, depth, inst), instance_labels={1: "car"})
    out = plain.generate(GenerationRequest(prompt="x", projection=rgb[:2], projection_depth=depth[:2],
                                           hole_mask=np.zeros((2, h, w), bool), cameras=cams[:2]))
    np.testing.assert_array_equal(out.info["instance_masks"], inst[:2])
    assert out.info["instance_labels"] == {1: "car", 2: "object"}
    none = OracleGenerator(FrameTable(cams, rgb, depth)).generate(
        GenerationRequest(prompt="x", projection=rgb[:2], projection_depth=depth[:2],
                          hole_mask=np.zeros((2, h, w), bool), cameras=cams[:2]))
    assert "instance_masks" not in none.info


def test_renumbering_draws_distinct_ids_and_the_frame_table_resolves_repeated_poses():
    rng = np.random.default_rng(0)
    maps = [renumbering([5], rng) for _ in range(20)]
    assert len({m[5] for m in maps}) > 1 and all(1 <= m[5] <= 8 for m in maps)
    # a closed loop: the last pose is the first; a request for the run ending there gets the last frame
    f, h, w = 5, 4, 4
    eye = np.stack([[0, 0, 0], [1, 0, 0], [2, 0, 0], [1, 0, 0.5], [0, 0, 0]]).astype(float)
    cams = Cameras.look_at(eye, eye + [0, 1, 0], width=w, height=h, fov_x_deg=60.0)
    table = FrameTable(cams, np.zeros((f, h, w, 3), np.uint8), np.zeros((f, h, w), np.float32))
    assert table.index(cams[[3, 4]]).tolist() == [3, 4]
    assert table.index(cams[[0, 1]]).tolist() == [0, 1]


# --- command line -----------------------------------------------------------------------------
def test_scene_lists_and_sets_on_the_command_line(tmp_path, capsys):
    import argparse

    from spatia.cli.main import main
    from spatia.eval import EvalOptions
    from spatia.eval.commands import _scenes

    assert _scenes("objects") == ["car-behind-building", "person-pan", "crossing"]
    assert _scenes("room, crossing,room") == ["room", "crossing"]
    assert _scenes("static") == ["room", "street", "terrain"]
    assert len(_scenes("all")) == 6
    assert _scenes("scenarios")[:2] == ["scenario-00", "scenario-01"] and len(_scenes("scenarios")) == 30
    with pytest.raises(argparse.ArgumentTypeError, match="unknown scene 'moon'"):
        _scenes("room,moon")
    with pytest.raises(ValueError, match="oracle generator only"):
        EvalOptions(scenes=["crossing"], generator="preview").validate()
    assert main(["eval", "--scenes", "person-pan", "--generator", "preview", "--out", str(tmp_path / "x")]) == 2
    assert "oracle generator only" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_camera_held_still_is_found_by_where_the_clip_starts():
    """Objects move while the camera holds: the same pose in every frame; the clip's start picks
    the right frames, which the oracle is told."""
    from spatia.engine.models import GenerationRequest
    from spatia.engine.models.oracle import OracleGenerator

    f, h, w = 6, 4, 4
    cams = Cameras.look_at(np.zeros((f, 3)), np.tile([0.0, 1.0, 0.0], (f, 1)), width=w, height=h, fov_x_deg=60.0)
    frames = np.arange(f, dtype=np.uint8)[:, None, None, None].repeat(h, 1).repeat(w, 2).repeat(3, 3)
    table = FrameTable(cams, frames, np.ones((f, h, w), np.float32))
    assert table.index(cams[:3]).tolist() == [0, 1, 2] and table.index(cams[:3], 3).tolist() == [3, 4, 5]
    request = GenerationRequest(prompt="p", projection=np.zeros((3, h, w, 3), np.uint8),
                                projection_depth=np.zeros((3, h, w), np.float32), hole_mask=np.ones((3, h, w), bool),
                                cameras=cams[3:], start_frame=3)
    assert OracleGenerator(table).generate(request).frames[:, 0, 0, 0].tolist() == [3, 4, 5]


# --- ghosts and the scenario suite ----------------------------------------------------------------------
def test_ghost_pixels_count_drawn_object_pixels_where_the_truth_has_none():
    truth = np.zeros((6, 4, 5), np.int32)
    truth[:, 1:3, 1:3] = 1  # the object: 4 pixels in every frame
    drawn = np.zeros((6, 4, 5), np.int32)
    drawn[:, 1:3, 2:4] = 7  # drawn one pixel column off: 2 of 4 pixels on the object, 2 beside it
    records = [{"start": 0, "end": 4, "overlap": 0}, {"start": 2, "end": 6, "overlap": 2}]
    cond = lambda r: SimpleNamespace(object_ids=drawn[records[r]["start"]:records[r]["end"]])
    out = ghost_pixels(truth, records, cond)
    assert out == {"ghost_px": 12, "drawn_px": 24, "share": 0.5}  # six new frames, overlap counted once
    nothing = ghost_pixels(truth, records, lambda r: SimpleNamespace(object_ids=np.zeros((4, 4, 5), np.int32)))
    assert nothing["share"] is None and nothing["drawn_px"] == 0


def test_the_scenario_generator_is_seeded_covers_every_class_and_absence():
    from spatia.eval.scenarios import CAR_IN_VIEW_X, CLASSES, IN_VIEW_X, _keys_for, make_scenarios

    a, b = make_scenarios(7, 30), make_scenarios(7, 30)
    assert [(s.motion, s.params, s.away) for s in a] == [(s.motion, s.params, s.away) for s in b]
    other = make_scenarios(8, 30)
    assert [s.params for s in other] != [s.params for s in a]  # another seed: other scenarios
    assert {s.motion for s in a} == set(CLASSES) and len(a) >= 30
    absences = [s.absence_s for s in a]
    assert min(absences) >= 0.9 and max(absences) <= 15.5 and np.ptp(absences) > 8
    for s in a:
        t0, t1, t2, t3 = s.away
        assert 0 < t0 < t1 < t2 < t3 < 1
        n = int(round(s.duration_s * 6))
        keys = _keys_for(s, n, 1, 1)
        frames = [k[0] for k in keys]
        assert frames == sorted(frames) and frames[0] == 1 and frames[-1] == n
        x0 = np.interp(1 + t0 * (n - 1), frames, [k[1][0] for k in keys])
        if s.motion not in ("approach", "recede"):
            reach = CAR_IN_VIEW_X if s.params["label"] == "car" else IN_VIEW_X
            assert abs(x0) == pytest.approx(reach, abs=1e-6)  # in view as the camera turns away
        if s.motion == "stop":
            assert keys[-1][1] == keys[-2][1]  # parked while unseen, stays
        if s.motion == "reversal":
            assert abs(keys[-1][2] - keys[0][2]) == pytest.approx(np.pi)
        if s.motion == "turn":
            assert abs(keys[-1][2] - keys[0][2]) == pytest.approx(np.pi / 2)


def test_scenarios_of_an_unseen_seed_replace_the_scenario_scenes_and_are_cached_apart(tmp_path):
    from spatia.eval import groundtruth, scenarios

    try:
        groundtruth.use_scenario_seed(7)
        drawn = scenarios.make_scenarios(7, 2)
        assert [groundtruth.SCENES[s.name].description for s in drawn] == [s.description() for s in drawn]
        assert groundtruth.SCENES["scenario-00"].frames == scenarios._frames(drawn[0].duration_s)
        assert groundtruth.scenario_cache_dir(tmp_path, 7) == tmp_path / "scenarios-seed-7"
        assert groundtruth.scenario_cache_dir(tmp_path, scenarios.DEFAULT_SEED) == tmp_path
    finally:
        groundtruth.use_scenario_seed(scenarios.DEFAULT_SEED)
    assert groundtruth.SCENES["scenario-00"].description == scenarios.make_scenarios()[0].description()
