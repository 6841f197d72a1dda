import numpy as np
import pytest

from spatia.engine.memory import (
    MemoryFormatError,
    SpatialMemory,
    delete_ids,
    delete_in_box,
    delete_in_sphere,
    diff,
    merge,
    transform,
)

XYZ = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)


def memory() -> SpatialMemory:
    return SpatialMemory.from_points(XYZ, voxel_size=0.1, first_id=100)


def test_delete_ids_keeps_the_other_ids():
    left = delete_ids(memory(), [101, 104, 999])
    assert left.point_id.tolist() == [100, 102, 103]
    assert left.next_id == 105
    with pytest.raises(MemoryFormatError, match="unknown point ids"):
        delete_ids(memory(), [999], missing_ok=False)


def test_delete_in_axis_aligned_box():
    left = delete_in_box(memory(), [0.5, -0.5, -0.5], [2.0, 0.5, 0.5])  # inclusive: (2,0,0) goes too
    assert left.point_id.tolist() == [100, 103, 104]


def test_delete_in_rotated_box():
    # Unit cube [-1,1]^3 scaled to half-size 0.2 along x' and rotated 90 degrees about z: x' maps to world y.
    box_to_world = np.array([[0, -1, 0, 0], [0.2, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    # columns: x' -> (0, 0.2, 0), y' -> (-1, 0, 0), z' -> (0, 0, 1); centre (0, 1, 0)
    left = delete_in_box(memory(), [-1, -1, -1], [1, 1, 1], box_to_world=box_to_world)
    assert left.point_id.tolist() == [100, 101, 102, 104]  # only (0, 1, 0) is inside
    with pytest.raises(MemoryFormatError, match="box_min .* exceeds box_max"):
        delete_in_box(memory(), [1, 0, 0], [0, 1, 1])


def test_delete_in_sphere():
    assert delete_in_sphere(memory(), [0, 0, 0], 1.0).point_id.tolist() == [102]
    with pytest.raises(MemoryFormatError, match="radius"):
        delete_in_sphere(memory(), [0, 0, 0], -1.0)


def test_transform_moves_only_the_given_ids_and_turns_their_side():
    rotate_x_90 = np.array([[1, 0, 0, 5], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    moved = transform(memory(), [104, 101], rotate_x_90)
    assert moved.point_id.tolist() == [100, 101, 102, 103, 104]
    assert moved.xyz.tolist() == [[0, 0, 0], [6, 0, 0], [2, 0, 0], [0, 1, 0], [5, -1, 0]]
    # side +z (4) of the moved points turns to -y (3); the others keep +z
    assert moved.side.tolist() == [4, 3, 4, 4, 3]
    with pytest.raises(MemoryFormatError, match="4x4"):
        transform(memory(), [100], np.eye(3))


def test_merge_gives_the_other_points_fresh_ids():
    other = SpatialMemory.from_points(np.ones((2, 3)), voxel_size=0.5)  # ids 0, 1 clash with nothing here
    merged = merge(memory(), other)
    assert merged.point_id.tolist() == [100, 101, 102, 103, 104, 105, 106]
    assert merged.next_id == 107 and merged.voxel_size == 0.1
    assert merged.xyz[5:].tolist() == [[1, 1, 1], [1, 1, 1]]
    merged.validate()


def test_diff_finds_deleted_moved_and_added_ids():
    old = memory()
    new = delete_ids(old, [102])
    new = transform(new, [103], np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.5], [0, 0, 0, 1]], dtype=float))
    new = transform(new, [100], np.array([[1, 0, 0, 1e-8], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float))
    new = merge(new, SpatialMemory.from_points(np.zeros((1, 3)), voxel_size=0.1))
    changes = diff(old, new, tolerance=1e-6)
    assert changes.deleted.tolist() == [102]
    assert changes.moved.tolist() == [103]
    assert changes.added.tolist() == [105]
    assert not changes.unchanged and diff(old, old).unchanged
    assert diff(old, new, tolerance=1.0).moved.tolist() == []
