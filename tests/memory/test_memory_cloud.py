import numpy as np
import pytest
import torch

from spatia.engine.memory import BYTES_PER_POINT, MemoryFormatError, SpatialMemory


def small_memory() -> SpatialMemory:
    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3]], dtype=np.float32)
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], dtype=np.uint8)
    return SpatialMemory.from_points(xyz, rgb, [1.0, 2.0, 3.0, 4.0], voxel_size=0.1, first_id=10)


def test_from_points_assigns_fresh_ids_and_defaults():
    memory = small_memory()
    assert len(memory) == 4
    assert memory.point_id.tolist() == [10, 11, 12, 13]
    assert memory.next_id == 14
    assert memory.xyz.dtype == torch.float32 and memory.rgb.dtype == torch.uint8
    assert memory.first_frame.tolist() == [0] * 4 and memory.last_frame.tolist() == [0] * 4
    grey = SpatialMemory.from_points(np.zeros((2, 3)), voxel_size=1.0)
    assert grey.rgb.tolist() == [[128, 128, 128]] * 2 and grey.conf.tolist() == [1.0, 1.0]


def test_empty_memory():
    memory = SpatialMemory.empty(0.05)
    assert len(memory) == 0 and memory.next_id == 0 and memory.nbytes == 0
    assert memory.xyz.shape == (0, 3)


def test_nbytes_counts_every_field():
    assert small_memory().nbytes == 4 * BYTES_PER_POINT == 4 * (12 + 3 + 4 + 8 + 4 + 4 + 1 + 1 + 1)


def test_subset_and_select_ids_keep_ids():
    memory = small_memory()
    picked = memory.subset(torch.tensor([True, False, True, False]))
    assert picked.point_id.tolist() == [10, 12]
    assert picked.xyz[1].tolist() == [0.0, 2.0, 0.0]
    assert picked.next_id == 14
    by_id = memory.select_ids([13, 11])
    assert by_id.point_id.tolist() == [13, 11]
    assert by_id.rgb.tolist() == [[9, 9, 9], [0, 255, 0]]
    with pytest.raises(MemoryFormatError, match="unknown point ids: \\[99\\]"):
        memory.select_ids([11, 99])
    assert memory.select_ids([11, 99], missing_ok=True).point_id.tolist() == [11]


def test_sha256_is_deterministic_and_content_sensitive():
    a, b = small_memory(), small_memory()
    assert a.sha256() == b.sha256()
    moved = a.replace(xyz=a.xyz + torch.tensor([0, 0, 1e-3]))
    assert moved.sha256() != a.sha256()
    assert a.replace(next_id=15).sha256() != a.sha256()
    assert a.replace(voxel_size=0.2).sha256() != a.sha256()


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("xyz", torch.zeros(4, 2), "xyz must have shape"),
        ("rgb", torch.zeros(3, 3, dtype=torch.uint8), "rgb must have shape \\[4, 3\\]"),
        ("rgb", torch.zeros(4, 3), "rgb must be torch.uint8"),
        ("conf", torch.tensor([1.0, -1.0, 1.0, 1.0]), "conf must be finite and non-negative"),
        ("xyz", torch.tensor([[0, 0, float("nan")]] * 4), "NaN or infinite"),
        ("side", torch.tensor([0, 1, 2, 6], dtype=torch.uint8), "side must be in 0..5"),
        ("voxel_size", 0.0, "voxel_size must be a positive"),
    ],
)
def test_malformed_fields_raise(field, value, message):
    with pytest.raises(MemoryFormatError, match=message):
        small_memory().replace(**{field: value})


def test_validate_rejects_duplicate_and_out_of_range_ids():
    memory = small_memory()
    with pytest.raises(MemoryFormatError, match="duplicates"):
        memory.replace(point_id=torch.tensor([10, 10, 11, 12])).validate()
    with pytest.raises(MemoryFormatError, match="not below next_id"):
        memory.replace(next_id=13).validate()


def test_from_arrays_keeps_ids_and_infers_next_id():
    arrays = small_memory().arrays()
    arrays["point_id"] = np.array([5, 7, 100, 6])
    memory = SpatialMemory.from_arrays(arrays, voxel_size=0.1)
    assert memory.point_id.tolist() == [5, 7, 100, 6] and memory.next_id == 101
    del arrays["conf"]
    with pytest.raises(MemoryFormatError, match="missing arrays: conf"):
        SpatialMemory.from_arrays(arrays, voxel_size=0.1)
