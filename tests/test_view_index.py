"""The view index: what it records, how it forgets, and that retrieval through it picks what a
brute-force visibility count over the same memory picks."""

import numpy as np
import pytest

from spatia.cameras import Cameras
from spatia.engine.retrieval import retrieve, retrieve_indexed, select
from spatia.engine.view_index import ViewIndex, ViewIndexError, visible_ids


def room_points(rng) -> np.ndarray:
    """A closed box room of 6 x 6 x 3 m sampled every 8 cm, with some jitter."""
    step = 0.08
    axis = np.arange(-3, 3 + 1e-9, step)
    height = np.arange(0, 3 + 1e-9, step)
    walls = []
    for fixed in (-3.0, 3.0):
        a, z = np.meshgrid(axis, height, indexing="ij")
        walls.append(np.stack([np.full(a.size, fixed), a.ravel(), z.ravel()], 1))
        walls.append(np.stack([a.ravel(), np.full(a.size, fixed), z.ravel()], 1))
    a, b = np.meshgrid(axis, axis, indexing="ij")
    walls.append(np.stack([a.ravel(), b.ravel(), np.zeros(a.size)], 1))
    xyz = np.concatenate(walls)
    return (xyz + rng.normal(0, 0.01, xyz.shape)).astype(np.float32)


def circle_cameras(count: int, turns: float = 1.0) -> Cameras:
    angles = np.linspace(0, 2 * np.pi * turns, count, endpoint=False)
    eyes = np.stack([0.5 * np.cos(angles), 0.5 * np.sin(angles), np.full(count, 1.5)], 1)
    targets = eyes + np.stack([np.cos(angles), np.sin(angles), np.full(count, -0.2)], 1)
    return Cameras.look_at(eyes, targets, up=(0, 0, 1), width=80, height=60)


def test_visible_ids_are_the_front_most_points_one_pixel_each():
    xyz = np.array([[0, 0, 2.0], [0, 0, 3.0], [0.5, 0, 2.0]], np.float32)  # the second hides behind the first
    cam = Cameras([40.0, 40.0, 20.0, 15.0], np.eye(4), 40, 30)
    (seen,) = visible_ids(xyz, [10, 11, 12], cam)
    assert seen.tolist() == [10, 12]


def test_index_scores_like_brute_force_and_retrieval_picks_the_same_frames(rng):
    xyz = room_points(rng)
    ids = np.arange(len(xyz)) * 3 + 5  # ids need not be positions
    history = circle_cameras(24)
    targets = circle_cameras(6, turns=0.5)
    index = ViewIndex()
    index.add(range(24), visible_ids(xyz, ids, history, rule="reference"))
    everything = dict(frame_fps=24.0, target_fps=24.0)
    indexed = retrieve_indexed(index, xyz, ids, targets, range(24), k=5, scoring="reference", **everything)
    brute = retrieve(xyz, history, targets, k=5, exclude_recent=0, history_fps=24.0, scoring="reference",
                     point_ids=ids, **everything)
    np.testing.assert_array_equal(indexed.shared, brute.shared)
    assert indexed.indices.tolist() == brute.indices.tolist()
    assert indexed.assigned_targets.tolist() == sorted(indexed.assigned_targets.tolist())  # ordered by target
    np.testing.assert_allclose(indexed.iou, brute.iou)
    # IoU scoring through an index of the renderer's visible sets matches IoU over those sets
    rendered = ViewIndex()
    rendered.add(range(24), visible_ids(xyz, ids, history))
    iou = retrieve_indexed(rendered, xyz, ids, targets, range(24), k=5, scoring="iou", **everything)
    sets_t, sets_c = visible_ids(xyz, ids, targets), visible_ids(xyz, ids, history)
    shared = np.array([[len(np.intersect1d(a, b)) for b in sets_c] for a in sets_t])
    np.testing.assert_array_equal(iou.shared, shared)


def test_reference_selection_is_one_assignment_in_target_order_keeping_empty_pairs():
    shared = np.array([[0, 9, 1], [8, 10, 0], [0, 0, 0]])
    columns, rows, scores = select(shared, [10, 10, 10], [10, 10, 10], k=7, scoring="reference")
    # one assignment: target 0 -> frame 1, target 1 -> frame 0; target 2 shares nothing and still
    # gets the last frame, as the reference keeps every assigned pair
    assert rows.tolist() == [0, 1, 2] and columns.tolist() == [1, 0, 2] and scores.tolist() == [9.0, 8.0, 0.0]
    assert select(shared, [10] * 3, [10] * 3, k=1, scoring="reference")[0].tolist() == [1]
    with pytest.raises(Exception, match="scoring"):
        select(shared, [1] * 3, [1] * 3, k=1, scoring="best")


def test_reference_selection_rounds_counts_to_bfloat16_and_breaks_ties_as_the_reference():
    # 1001 and 1002 both round to 1000 in bfloat16: a tie the float32 assignment breaks by order
    shared = np.array([[1001, 1002]])
    columns, _, scores = select(shared, [2000], [2000, 2000], k=7, scoring="reference")
    assert scores.tolist() == [1000.0] and columns.tolist() == [0]
    exact = np.array([[1001, 1009]])  # 1008 vs 1000 in bfloat16: the larger still wins
    assert select(exact, [2000], [2000, 2000], k=7, scoring="reference")[0].tolist() == [1]


def test_each_point_keeps_every_frame_that_saw_it():
    index = ViewIndex()
    for frame in range(40):
        index.add([frame], [np.array([7, 8])])
    counts = index.shared_counts([np.array([7]), np.array([7, 8, 9])], np.arange(41))
    assert counts[0].tolist() == [1] * 40 + [0] and counts[1].tolist() == [2] * 40 + [0]


def test_merged_points_pass_their_views_on_and_deleted_ones_are_forgotten():
    index = ViewIndex()
    index.add([0, 1], [np.array([1, 2, 3]), np.array([3, 4])])
    index.remap([1, 4], [2, 3])  # 1 merged into 2, 4 into 3
    assert index.shared_counts([np.array([2, 3])], [0, 1]).tolist() == [[2, 1]]
    index.retain([3])
    assert index.shared_counts([np.array([2, 3])], [0, 1]).tolist() == [[1, 1]]


def test_saved_batches_replay_to_the_same_index(rng):
    live = ViewIndex()
    batches = []
    for r in range(5):
        frames = [3 * r, 3 * r + 1]
        sets = [np.unique(rng.integers(0, 200, 80)) for _ in frames]
        merged = (np.array([r + 300]), np.array([r + 301]))
        live.remap(*merged)
        live.add(frames, sets)
        batches.append(live.batch_arrays(frames, sets, *merged))
    replayed = ViewIndex()
    for arrays in batches:
        replayed.replay(arrays)
    assert replayed.sets == live.sets and replayed.gone == live.gone
    assert replayed.frame_sizes == live.frame_sizes


def test_bad_input_is_named():
    with pytest.raises(ViewIndexError, match="2 frames but 1"):
        ViewIndex().add([0, 1], [np.array([1])])
    with pytest.raises(ViewIndexError, match="point ids"):
        ViewIndex().add([0], [np.array([-1])])


def test_frontmost_mask_follows_the_reference_pixel_rule():
    from spatia.engine.view_index import frontmost_mask

    cam = Cameras([10.0, 10.0, 5.0, 5.0], np.eye(4), 10, 10)
    xyz = np.array([
        [-0.55, 0.0, 1.0],   # u = -0.5: truncated toward zero, column 0, seen
        [-0.65, 0.0, 1.0],   # u = -1.5: outside
        [0.0, 0.0, 2.0],     # pixel (5, 5) ...
        [0.0, 0.0, 2.0 + 5e-7],  # ... within 1e-6 of the nearest: seen too
        [0.01, 0.0, 3.0],    # same pixel, behind: hidden
        [0.0, 0.0, -1.0],    # behind the camera
    ], np.float32)
    assert frontmost_mask(xyz, cam)[0].tolist() == [True, False, True, True, False, False]
    assert visible_ids(xyz, np.arange(6) + 10, cam, rule="reference")[0].tolist() == [10, 12, 13]
