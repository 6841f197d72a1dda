"""The spatial memory as a Blender object: a vertex-only mesh with `color`, `point_id` and
`conf` point attributes, drawn as points by a geometry-nodes modifier (Mesh to Points with a
material that reads the colour), so it shows in the viewport and can be edited with ordinary
mesh tools. It is hidden from renders unless the artist turns that on (Object > Visibility).

The object may be in Edit Mode whenever an operator reads or replaces it: Edit Mode keeps its
own copy of the geometry (the mesh's attributes are empty meanwhile, and that copy is written
back over the mesh on leaving), so every read and write goes through `outside_edit_mode`.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .compat import ensure_node_tree

OBJECT_NAME = "Spatia Memory"
NODE_GROUP = "Spatia Memory Points"
MATERIAL = "Spatia Memory Color"
MAX_POINT_ID = 2**31 - 1  # Blender integer attributes are 32-bit


def _point_material(bpy):
    mat = bpy.data.materials.get(MATERIAL)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(MATERIAL)
    tree = ensure_node_tree(mat)
    nodes, links = tree.nodes, tree.links
    nodes.clear()
    attribute = nodes.new("ShaderNodeAttribute")
    attribute.attribute_type = "GEOMETRY"
    attribute.attribute_name = "color"
    emission = nodes.new("ShaderNodeEmission")  # the memory's colours are already lit
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(attribute.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return mat


def _points_node_group(bpy):
    group = bpy.data.node_groups.get(NODE_GROUP)
    if group is not None:
        return group
    group = bpy.data.node_groups.new(NODE_GROUP, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    radius = group.interface.new_socket("Radius", in_out="INPUT", socket_type="NodeSocketFloat")
    radius.default_value, radius.min_value = 0.01, 0.0
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    group_in = nodes.new("NodeGroupInput")
    group_out = nodes.new("NodeGroupOutput")
    to_points = nodes.new("GeometryNodeMeshToPoints")
    set_material = nodes.new("GeometryNodeSetMaterial")
    set_material.inputs["Material"].default_value = _point_material(bpy)
    links.new(group_in.outputs["Geometry"], to_points.inputs["Mesh"])
    links.new(group_in.outputs["Radius"], to_points.inputs["Radius"])
    links.new(to_points.outputs["Points"], set_material.inputs["Geometry"])
    links.new(set_material.outputs["Geometry"], group_out.inputs["Geometry"])
    return group


def build_mesh(bpy, name: str, xyz: np.ndarray, rgb: np.ndarray, point_id: np.ndarray, conf: np.ndarray | None = None):
    """A vertex-only mesh holding the points and their attributes (vectorised foreach_set)."""
    xyz = np.ascontiguousarray(xyz, dtype=np.float32).reshape(-1, 3)
    count = len(xyz)
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(count, 3)
    point_id = np.asarray(point_id, dtype=np.int64).reshape(count)
    if count and (point_id.min() < 0 or point_id.max() > MAX_POINT_ID):
        raise ValueError(f"point ids must be in [0, {MAX_POINT_ID}] to be stored in Blender")
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(count)
    mesh.vertices.foreach_set("co", xyz.ravel())
    colors = mesh.attributes.new("color", "BYTE_COLOR", "POINT")
    rgba = np.ones((count, 4), dtype=np.float32)
    rgba[:, :3] = rgb / 255.0
    colors.data.foreach_set("color_srgb", rgba.ravel())
    ids = mesh.attributes.new("point_id", "INT", "POINT")
    ids.data.foreach_set("value", point_id.astype(np.int32))
    confidence = mesh.attributes.new("conf", "FLOAT", "POINT")
    confidence.data.foreach_set("value", np.ones(count, np.float32) if conf is None else np.asarray(conf, np.float32))
    mesh.update()
    return mesh


def draw_as_points(bpy, obj, radius: float) -> None:
    """Draw a vertex-only mesh object as coloured points of `radius` (geometry nodes)."""
    modifier = obj.modifiers.get("Spatia Points") or obj.modifiers.new("Spatia Points", "NODES")
    modifier.node_group = _points_node_group(bpy)
    radius_socket = next(item for item in modifier.node_group.interface.items_tree
                         if getattr(item, "in_out", "") == "INPUT" and item.name == "Radius")
    modifier[radius_socket.identifier] = float(radius)


class EditModeError(RuntimeError):
    pass


def _set_mode(bpy, obj, mode: str) -> None:
    view_layer = bpy.context.view_layer
    if view_layer is None or obj.name not in view_layer.objects:
        raise EditModeError(f"'{obj.name}' is in Edit Mode outside the current view layer; leave Edit Mode first")
    view_layer.objects.active = obj
    with bpy.context.temp_override(active_object=obj, object=obj, selected_objects=[obj]):
        bpy.ops.object.mode_set(mode=mode)
    if obj.mode != mode:
        raise EditModeError(f"could not switch '{obj.name}' to {mode.title()} Mode; leave Edit Mode and try again")


@contextlib.contextmanager
def outside_edit_mode(obj):
    """Leave Edit Mode on `obj` for the block (writing its edits to the mesh first), then enter it
    again, so the block reads and replaces the real mesh. Does nothing outside Edit Mode."""
    import bpy

    if obj is None or obj.mode != "EDIT":
        yield obj
        return
    name = obj.name
    _set_mode(bpy, obj, "OBJECT")
    try:
        yield obj
    finally:
        again = bpy.data.objects.get(name)
        if again is not None and again.type == "MESH":
            _set_mode(bpy, again, "EDIT")


def import_memory(context_or_scene, xyz, rgb, point_id, conf=None, *, radius: float = 0.01,
                  version: int | None = None, world: str = "", name: str = OBJECT_NAME):
    """Create or replace the memory object in the scene; returns the object."""
    import bpy

    scene = getattr(context_or_scene, "scene", context_or_scene)
    obj = bpy.data.objects.get(name)
    with outside_edit_mode(obj if obj is not None and obj.type == "MESH" else None):
        return _import_memory(bpy, scene, obj, name, xyz, rgb, point_id, conf, radius, version, world)


def _import_memory(bpy, scene, obj, name, xyz, rgb, point_id, conf, radius, version, world):
    mesh = build_mesh(bpy, name, xyz, rgb, point_id, conf)
    if obj is not None and obj.type == "MESH":
        old = obj.data
        obj.data = mesh
        if old.users == 0:
            bpy.data.meshes.remove(old)
    else:
        obj = bpy.data.objects.new(name, mesh)
        obj.hide_render = True  # a guide for the artist, not part of the picture
    if obj.name not in scene.collection.all_objects:
        scene.collection.objects.link(obj)
    draw_as_points(bpy, obj, radius)
    obj["spatia_memory_version"] = -1 if version is None else int(version)
    obj["spatia_world"] = world
    return obj


def read_memory(obj) -> dict:
    """The points of a memory object as arrays: xyz (world space), rgb, point_id (-1 for
    vertices the artist added), conf; in Edit Mode, the geometry being edited."""
    with outside_edit_mode(obj):
        return _read_memory(obj)


def _read_memory(obj) -> dict:
    mesh = obj.data
    count = len(mesh.vertices)
    co = np.empty(count * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    xyz = co.reshape(count, 3)
    matrix = np.array(obj.matrix_world, dtype=np.float64)
    if not np.allclose(matrix, np.eye(4)):
        xyz = (xyz @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)
    rgba = np.empty(count * 4, dtype=np.float32)
    rgb = np.zeros((count, 3), dtype=np.uint8)
    if "color" in mesh.attributes:
        mesh.attributes["color"].data.foreach_get("color_srgb", rgba)
        rgb = np.clip(np.round(rgba.reshape(count, 4)[:, :3] * 255.0), 0, 255).astype(np.uint8)
    ids = np.full(count, -1, dtype=np.int32)
    if "point_id" in mesh.attributes:
        mesh.attributes["point_id"].data.foreach_get("value", ids)
    conf = np.ones(count, dtype=np.float32)
    if "conf" in mesh.attributes:
        mesh.attributes["conf"].data.foreach_get("value", conf)
    return {"xyz": xyz, "rgb": rgb, "point_id": ids.astype(np.int64), "conf": conf}
