from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse

from spatia.cameras import Cameras
from spatia.engine.retrieval import (
    RetrievalError,
    assign,
    overlap_matrices,
    reduced_size,
    retrieve,
    retrieve_from_memory,
    sample_at_rate,
    visible_points,
)

SPACING = 0.1
FRONT, BACK = (0.0, 5.0, 0.0), (0.0, -5.0, 0.0)  # look-at targets: the wall at y = +5 and the wall at y = -5


def two_walls() -> np.ndarray:
    """Two parallel walls facing each other, at y = +5 and y = -5, 8 m wide and 6 m high."""
    xs = np.arange(-40, 41) * SPACING
    zs = np.arange(-30, 31) * SPACING
    gx, gz = np.meshgrid(xs, zs, indexing="ij")
    walls = [np.stack([gx.ravel(), np.full(gx.size, y), gz.ravel()], axis=1) for y in (5.0, -5.0)]
    return np.concatenate(walls).astype(np.float32)


def cams(*views) -> Cameras:
    """Cameras from (eye, target) pairs, world z up, 64x48, 60 degree field of view."""
    eyes = [eye for eye, _ in views]
    targets = [target for _, target in views]
    return Cameras.look_at(eyes, targets, up=(0, 0, 1), width=64, height=48)


ORIGIN = (0.0, 0.0, 0.0)
ALL_FRAMES = dict(frame_fps=24.0, history_fps=24.0, target_fps=24.0, point_size=SPACING)


def test_frame_seeing_the_same_wall_is_chosen_and_the_one_facing_away_is_not():
    history = cams((ORIGIN, FRONT), (ORIGIN, BACK))
    target = cams((ORIGIN, FRONT))
    result = retrieve(two_walls(), history, target, exclude_recent=0, **ALL_FRAMES)
    assert result.indices.tolist() == [0]
    assert result.assigned_targets.tolist() == [0]
    assert result.iou[0, 0] == 1.0  # the same camera sees exactly the same points
    assert result.scores.tolist() == [1.0]
    assert result.shared[0, 1] == 0 and result.shared[0, 0] > 100


def test_most_recent_frames_are_excluded():
    history = cams(((0.5, 0, 0), FRONT), (ORIGIN, BACK), (ORIGIN, FRONT), (ORIGIN, FRONT), (ORIGIN, FRONT))
    target = cams((ORIGIN, FRONT))
    kept = retrieve(two_walls(), history, target, exclude_recent=3, **ALL_FRAMES)
    assert kept.candidate_indices.tolist() == [0, 1]
    assert kept.indices.tolist() == [0]
    everything = retrieve(two_walls(), history, target, exclude_recent=0, **ALL_FRAMES)
    assert sorted(everything.indices.tolist()) == [0, 2, 3, 4]


def test_recency_follows_the_frame_times():
    history = cams((ORIGIN, FRONT), (ORIGIN, BACK), ((0.5, 0, 0), FRONT))
    target = cams((ORIGIN, FRONT))
    result = retrieve(two_walls(), history, target, exclude_recent=1, history_times=[2.0, 0.0, 1.0], **ALL_FRAMES)
    assert result.candidate_indices.tolist() == [1, 2]  # frame 0 is the latest
    assert result.indices.tolist() == [2]


def test_k_limits_the_count_and_keeps_the_best():
    history = cams(*[((0.4 * i, 0.0, 0.0), (0.4 * i, 5.0, 0.0)) for i in range(6)])  # sliding sideways
    target = cams((ORIGIN, FRONT))
    result = retrieve(two_walls(), history, target, k=2, exclude_recent=0, **ALL_FRAMES)
    assert result.indices.tolist() == [0, 1]
    assert result.scores[0] == 1.0 and 0 < result.scores[1] < 1.0
    assert np.all(np.diff(result.iou[0]) < 0)  # overlap falls as the camera slides away


def test_zero_overlap_frames_are_never_chosen():
    history = cams((ORIGIN, BACK), ((1.0, 0, 0), BACK))
    target = cams((ORIGIN, FRONT))
    result = retrieve(two_walls(), history, target, exclude_recent=0, **ALL_FRAMES)
    assert result.indices.tolist() == []
    assert result.shared.tolist() == [[0, 0]]


def test_assignment_is_one_to_one_across_targets():
    history = cams(((0.3, 0, 0), BACK), ((0.3, 0, 0), FRONT))
    target = cams((ORIGIN, FRONT), (ORIGIN, BACK))
    result = retrieve(two_walls(), history, target, exclude_recent=0, score="shared", **ALL_FRAMES)
    pairs = dict(zip(result.indices.tolist(), result.assigned_targets.tolist()))
    assert pairs == {1: 0, 0: 1}
    assert result.scores.tolist() == sorted(result.scores.tolist(), reverse=True)
    assert result.scores.tolist() == sorted([result.shared[0, 1], result.shared[1, 0]], reverse=True)


def test_candidates_and_targets_are_sampled_at_their_rates():
    history = cams(*[((0.01 * i, 0, 0), FRONT) for i in range(48)])  # two seconds at 24 fps
    target = cams(*[((0.01 * i, 0, 0), FRONT) for i in range(24)])
    result = retrieve(two_walls(), history, target, exclude_recent=9, point_size=SPACING)
    assert result.candidate_indices.tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]  # 6 fps of frames 0..38
    assert result.target_indices.tolist() == [0, 12]  # 2 fps
    assert len(result.indices) == 7


def test_sample_at_rate_picks_the_nearest_frames():
    assert sample_at_rate(np.arange(48) / 24, 6).tolist() == list(range(0, 48, 4))
    assert sample_at_rate(np.arange(10) / 24, 2).tolist() == [0]
    assert sample_at_rate([3.0, 0.0, 1.0, 2.2], 1).tolist() == [1, 2, 3, 0]  # in time order
    assert sample_at_rate(np.arange(5) / 24, 100).tolist() == [0, 1, 2, 3, 4]
    assert sample_at_rate([], 2).tolist() == []


def test_overlap_matrices_count_shared_points_and_iou():
    rows = scipy.sparse.csr_matrix(np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0]]))
    columns = scipy.sparse.csr_matrix(np.array([[0, 1, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0]]))
    shared, iou = overlap_matrices(rows, columns)
    assert shared.tolist() == [[2, 0], [0, 0]]
    assert iou.tolist() == [[0.5, 0.0], [0.0, 0.0]]


def test_assign_maximises_the_total_one_to_one():
    score = np.array([[5.0, 4.0], [4.0, 1.0]])  # 4 + 4 beats 5 + 1
    columns, rows = assign(score, k=2)
    assert columns.tolist() == [1, 0] and rows.tolist() == [0, 1]
    assert assign(score, k=1)[0].tolist() == [1]
    assert assign(np.zeros((2, 3)), k=3)[0].tolist() == []
    # One target, three candidates: rounds continue until k are chosen, best first.
    assert assign(np.array([[0.2, 0.9, 0.5]]), k=2)[0].tolist() == [1, 2]


def test_visible_points_are_the_front_most_ones():
    xyz = np.array([[0.0, 5.0, 0.0], [0.0, 6.0, 0.0], [0.0, -5.0, 0.0]], dtype=np.float32)  # 1 hides behind 0
    visible = visible_points(xyz, cams((ORIGIN, FRONT), (ORIGIN, BACK)), point_size=0.0)
    assert visible.shape == (2, 3)
    assert visible.toarray().tolist() == [[1, 0, 0], [0, 0, 1]]


def test_reduced_size_keeps_the_aspect_and_never_enlarges():
    assert reduced_size(1248, 704, 256) == (256, 144)
    assert reduced_size(64, 48, 256) == (64, 48)


def test_retrieve_from_memory_uses_the_voxel_size():
    memory = SimpleNamespace(xyz=two_walls(), voxel_size=SPACING)
    history = cams((ORIGIN, FRONT), (ORIGIN, BACK))
    result = retrieve_from_memory(memory, history, cams((ORIGIN, FRONT)), exclude_recent=0, frame_fps=24.0,
                                  history_fps=24.0)
    assert result.indices.tolist() == [0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(score="best"), "score must be one of"),
        (dict(k=-1), "k and exclude_recent"),
        (dict(history_times=[0.0]), "history_times must have one time per camera"),
        (dict(frame_fps=0.0), "frame_fps"),
        (dict(history_fps=-2.0), "sampling rate"),
    ],
)
def test_bad_input_raises_a_clear_retrieval_error(kwargs, message):
    with pytest.raises(RetrievalError, match=message):
        retrieve(two_walls(), cams((ORIGIN, FRONT), (ORIGIN, BACK)), cams((ORIGIN, FRONT)), **kwargs)
