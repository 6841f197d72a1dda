import numpy as np
import pytest
import torch
import trimesh

from spatia.engine.memory import FIELDS, MemoryFormatError, SpatialMemory, export_ply, import_ply


def sample_memory() -> SpatialMemory:
    rng = np.random.default_rng(3)
    memory = SpatialMemory.from_points(
        rng.normal(size=(25, 3)), rng.integers(0, 256, (25, 3)), rng.uniform(0.5, 9, 25), voxel_size=0.02, first_id=40
    )
    return memory.replace(
        first_frame=torch.arange(25, dtype=torch.int32),
        last_frame=torch.arange(25, dtype=torch.int32) + 3,
        side=torch.from_numpy(rng.integers(0, 6, 25).astype(np.uint8)),
        next_id=80,
    )


def test_round_trip_is_exact(tmp_path):
    memory = sample_memory()
    loaded = import_ply(export_ply(memory, tmp_path / "m.ply"))
    for name in FIELDS:
        assert torch.equal(getattr(loaded, name), getattr(memory, name)), name
    assert loaded.voxel_size == 0.02 and loaded.next_id == 80
    assert loaded.sha256() == memory.sha256()


def test_header_uses_standard_vertex_properties(tmp_path):
    path = export_ply(sample_memory(), tmp_path / "m.ply")
    header = path.read_bytes().split(b"end_header\n", 1)[0].decode().splitlines()
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    properties = [line.split()[1:] for line in header if line.startswith("property") and "list" not in line]
    assert properties[:6] == [["float", "x"], ["float", "y"], ["float", "z"],
                              ["uchar", "red"], ["uchar", "green"], ["uchar", "blue"]]
    assert ["float", "conf"] in properties and ["int", "point_id"] in properties
    assert "element vertex 25" in header
    # A generic reader sees the same vertices and colours.
    cloud = trimesh.load(path, process=False)
    np.testing.assert_array_equal(np.asarray(cloud.vertices, dtype=np.float32), sample_memory().xyz.numpy())


def test_plain_ply_gets_fresh_ids_and_unit_confidence(tmp_path):
    path = tmp_path / "plain.ply"
    path.write_text(
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        "0 0 0 255 0 0\n1 2 3 0 255 0\n-1 0.5 2 0 0 255\n"
    )
    memory = import_ply(path, voxel_size=0.1, frame=5)
    assert memory.xyz.tolist() == [[0, 0, 0], [1, 2, 3], [-1, 0.5, 2]]
    assert memory.rgb.tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    assert memory.point_id.tolist() == [0, 1, 2] and memory.next_id == 3
    assert memory.conf.tolist() == [1.0, 1.0, 1.0]
    assert memory.first_frame.tolist() == [5, 5, 5]
    with pytest.raises(MemoryFormatError, match="records no voxel size"):
        import_ply(path)


def test_ply_without_colours_is_grey(tmp_path):
    path = tmp_path / "bare.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
                    "end_header\n1 2 3\n")
    assert import_ply(path, voxel_size=0.1).rgb.tolist() == [[128, 128, 128]]


@pytest.mark.bpy
def test_blender_imports_the_export(tmp_path):
    import bpy

    memory = sample_memory()
    path = export_ply(memory, tmp_path / "m.ply")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.ply_import(filepath=str(path))
    mesh = bpy.context.selected_objects[0].data
    coords = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", coords)
    np.testing.assert_array_equal(coords.reshape(-1, 3), memory.xyz.numpy())
    colours = mesh.color_attributes[0]
    rgba = np.empty(len(colours.data) * 4, dtype=np.float32)
    colours.data.foreach_get("color_srgb", rgba)
    np.testing.assert_allclose(rgba.reshape(-1, 4)[:, :3] * 255, memory.rgb.numpy(), atol=0.51)
