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
    index = ViewIndex(per_point=64)  # large enough that nothing is forgotten
    index.add(range(24), visible_ids(xyz, ids, history))
    everything = dict(frame_fps=24.0, target_fps=24.0)
    indexed = retrieve_indexed(index, xyz, ids, targets, range(24), k=5, scoring="reference", **everything)
    brute = retrieve(xyz, history, targets, k=5, exclude_recent=0, history_fps=24.0, scoring="reference",
                     point_ids=ids, **everything)
    np.testing.assert_array_equal(indexed.shared, brute.shared)
    assert indexed.indices.tolist() == brute.indices.tolist()
    assert indexed.assigned_targets.tolist() == sorted(indexed.assigned_targets.tolist())  # ordered by target
    # IoU scoring through the index matches IoU over the same sets
    iou = retrieve_indexed(index, xyz, ids, targets, range(24), k=5, scoring="iou", **everything)
    np.testing.assert_allclose(iou.iou, brute.iou)


def test_reference_selection_is_one_assignment_in_target_order():
    shared = np.array([[0, 9, 1], [8, 10, 0], [0, 0, 0]])
    columns, rows, scores = select(shared, [10, 10, 10], [10, 10, 10], k=7, scoring="reference")
    # one assignment: target 0 -> frame 1, target 1 -> frame 0; target 2 shares nothing and is dropped
    assert rows.tolist() == [0, 1] and columns.tolist() == [1, 0] and scores.tolist() == [9.0, 8.0]
    assert select(shared, [10] * 3, [10] * 3, k=1, scoring="reference")[0].tolist() == [1]
    with pytest.raises(Exception, match="scoring"):
        select(shared, [1] * 3, [1] * 3, k=1, scoring="best")


def test_each_point_keeps_its_first_and_latest_frames():
    index = ViewIndex(per_point=4)
    for frame in range(10):
        index.add([frame], [np.array([7])])
    frames = (index.keys & 0xFFFFFFFF).tolist()
    assert frames == [0, 1, 8, 9]
    counts = index.shared_counts([np.array([7])], np.arange(10))
    assert counts[0].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]


def test_merged_points_pass_their_views_on_and_deleted_ones_are_forgotten():
    index = ViewIndex()
    index.add([0, 1], [np.array([1, 2, 3]), np.array([3, 4])])
    index.remap([1, 4], [2, 3])  # 1 merged into 2, 4 into 3
    assert index.shared_counts([np.array([2, 3])], [0, 1]).tolist() == [[2, 1]]
    index.retain([3])
    assert index.shared_counts([np.array([2, 3])], [0, 1]).tolist() == [[1, 1]]


def test_saved_batches_replay_to_the_same_index(rng):
    live = ViewIndex(per_point=4)
    batches = []
    for r in range(5):
        frames = [3 * r, 3 * r + 1]
        sets = [np.unique(rng.integers(0, 200, 80)) for _ in frames]
        merged = (np.array([r + 300]), np.array([r + 301]))
        live.remap(*merged)
        live.add(frames, sets)
        batches.append(live.batch_arrays(frames, sets, *merged))
    replayed = ViewIndex(per_point=4)
    for arrays in batches:
        replayed.replay(arrays)
    np.testing.assert_array_equal(replayed.keys, live.keys)
    assert replayed.frame_sizes == live.frame_sizes


def test_bad_input_is_named():
    with pytest.raises(ViewIndexError, match="per_point"):
        ViewIndex(per_point=1)
    with pytest.raises(ViewIndexError, match="2 frames but 1"):
        ViewIndex().add([0, 1], [np.array([1])])
    with pytest.raises(ViewIndexError, match="point ids"):
        ViewIndex().add([0], [np.array([-1])])
