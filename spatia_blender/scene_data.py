"""Reading and writing the Blender data the operators need; the math is in payloads/presets."""

from __future__ import annotations

import os

import numpy as np

from . import memory_object, payloads, presets
from .compat import action_fcurves
from .safetensors_io import read_safetensors

COVERAGE_PROPERTY = "spatia_coverage"
MEMORY_PROP_VERSION = "spatia_memory_version"
MEMORY_PROP_WORLD = "spatia_world"
MEMORY_PROP_VOXEL = "spatia_voxel_size"


# --- memory ----------------------------------------------------------------------------------
def memory_cache_path(data_root: str, world_id: str, version: int) -> str:
    """The cached snapshot of a memory version under a shot's data folder (any thread)."""
    folder = os.path.join(data_root, "worlds", world_id, "memory")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"v{int(version):06d}.safetensors")


def parse_memory(data: bytes, source: str = "memory") -> dict:
    """Snapshot bytes -> {"xyz", "rgb", "conf", "point_id", "meta"} (numpy; any thread)."""
    tensors, meta = read_safetensors(data, source)
    missing = [name for name in ("xyz", "rgb", "point_id") if name not in tensors]
    if missing:
        raise ValueError(f"{source}: not a memory snapshot (missing {', '.join(missing)})")
    count = len(tensors["xyz"])
    conf = tensors.get("conf", np.ones(count, np.float32))
    return {"xyz": tensors["xyz"].reshape(count, 3), "rgb": tensors["rgb"].reshape(count, 3).astype(np.uint8),
            "conf": conf.reshape(count), "point_id": tensors["point_id"].reshape(count).astype(np.int64), "meta": meta}


def find_memory_object(context):
    obj = getattr(context, "active_object", None)
    if obj is not None and obj.type == "MESH" and MEMORY_PROP_VERSION in obj:
        return obj
    import bpy

    obj = bpy.data.objects.get(memory_object.OBJECT_NAME)
    return obj if obj is not None and obj.type == "MESH" else None


def memory_objects(scene) -> list:
    """Every memory object in the scene (objects carrying a memory version)."""
    return [obj for obj in scene.objects if MEMORY_PROP_VERSION in obj]


def import_memory_version(scene, memory: dict, world_id: str, version: int):
    """Create or replace the memory object with `memory` (main thread)."""
    voxel = float(memory["meta"].get("voxel_size", scene.spatia.voxel_size) or scene.spatia.voxel_size)
    obj = memory_object.import_memory(scene, memory["xyz"], memory["rgb"], memory["point_id"], memory["conf"],
                                      radius=voxel * scene.spatia.point_radius, version=version, world=world_id)
    obj[MEMORY_PROP_VOXEL] = voxel
    return obj


def set_versions(settings, history: list[dict]) -> None:
    settings.versions.clear()
    for entry in history:
        item = settings.versions.add()
        item.version = int(entry.get("version", 0))
        parent = entry.get("parent")
        item.parent = -1 if parent is None else int(parent)
        item.points = int(entry.get("points", 0))
        item.message = str(entry.get("message", ""))
        item.created = str(entry.get("created", ""))
    settings.version_index = max(len(settings.versions) - 1, 0)


def set_world(settings, world: dict) -> None:
    settings.world_id = world["id"]
    settings.world_frames = int(world.get("frames", 0))
    if world.get("memory_version") is not None:
        settings.memory_version = int(world["memory_version"])
    if world.get("voxel_size"):
        settings.voxel_size = float(world["voxel_size"])


# --- added geometry --------------------------------------------------------------------------
def _material_color(material) -> np.ndarray:
    """Base colour (sRGB uint8) of a material: Principled Base Color, else its viewport colour."""
    color = None
    if material is not None and material.node_tree is not None:
        for node in material.node_tree.nodes:
            if node.type == "BSDF_PRINCIPLED":
                color = tuple(node.inputs["Base Color"].default_value)[:3]
                break
    if color is None:
        color = tuple(material.diffuse_color)[:3] if material is not None else (0.8, 0.8, 0.8)
    return payloads.linear_to_srgb(color)


def mesh_triangles(obj, depsgraph) -> tuple[np.ndarray, np.ndarray]:
    """World-space triangles [T, 3, 3] of an evaluated mesh object and their colours
    (uint8 [T, 3, 3] per corner from the active colour attribute, else [T, 3] material colours)."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        tris = len(mesh.loop_triangles)
        count = len(mesh.vertices)
        co = np.empty(count * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        matrix = np.array(evaluated.matrix_world, dtype=np.float64)
        co = co.reshape(count, 3) @ matrix[:3, :3].T + matrix[:3, 3]
        verts = np.empty(tris * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", verts)
        triangles = co[verts.reshape(tris, 3)]
        attribute = mesh.color_attributes.active_color if len(mesh.color_attributes) else None
        if attribute is not None and attribute.domain in ("POINT", "CORNER"):
            size = len(attribute.data)
            rgba = np.empty(size * 4, np.float32)
            attribute.data.foreach_get("color_srgb", rgba)
            rgb = np.clip(np.round(rgba.reshape(size, 4)[:, :3] * 255), 0, 255)
            if attribute.domain == "POINT":
                colors = rgb[verts.reshape(tris, 3)]
            else:
                loops = np.empty(tris * 3, np.int32)
                mesh.loop_triangles.foreach_get("loops", loops)
                colors = rgb[loops.reshape(tris, 3)]
        else:
            material_index = np.empty(tris, np.int32)
            mesh.loop_triangles.foreach_get("material_index", material_index)
            slots = [slot.material for slot in obj.material_slots] or [None]
            table = np.stack([_material_color(material) for material in slots])
            colors = table[np.clip(material_index, 0, len(table) - 1)]
        return triangles, colors
    finally:
        evaluated.to_mesh_clear()


def sample_objects(objects, depsgraph, spacing: float, max_points: int = 200_000):
    """Points (xyz, rgb) sampled from the surfaces of mesh objects."""
    xyz_parts, rgb_parts = [], []
    for i, obj in enumerate(objects):
        triangles, colors = mesh_triangles(obj, depsgraph)
        xyz, rgb = payloads.sample_surface(triangles, colors, spacing=spacing, max_points=max_points, seed=i)
        xyz_parts.append(xyz)
        rgb_parts.append(rgb)
    if not xyz_parts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    return np.concatenate(xyz_parts), np.concatenate(rgb_parts)


# --- coverage --------------------------------------------------------------------------------
def _fcurve(scene, data_path: str):
    return next((fc for fc in action_fcurves(scene) if fc.data_path == data_path), None)


def write_coverage_curve(scene, frames, coverage) -> object:
    """Coverage per frame as an F-curve on the scene's custom property `spatia_coverage`
    (Graph Editor / Drivers can show and use it). Returns the F-curve."""
    frames = np.asarray(frames, dtype=np.float32)
    values = np.asarray(coverage, dtype=np.float32)
    path = f'["{COVERAGE_PROPERTY}"]'
    scene[COVERAGE_PROPERTY] = float(values[0]) if len(values) else 0.0
    fcurve = _fcurve(scene, path)
    if fcurve is None:
        scene.keyframe_insert(path, frame=float(frames[0]) if len(frames) else 0.0)
        fcurve = _fcurve(scene, path)
    fcurve.keyframe_points.clear()
    fcurve.keyframe_points.add(len(frames))
    fcurve.keyframe_points.foreach_set("co", np.stack([frames, values], axis=1).ravel())
    fcurve.keyframe_points.foreach_set("interpolation", np.zeros(len(frames), np.int32))  # CONSTANT
    fcurve.update()
    return fcurve


def read_coverage_curve(scene) -> tuple[np.ndarray, np.ndarray]:
    fcurve = _fcurve(scene, f'["{COVERAGE_PROPERTY}"]')
    if fcurve is None:
        return np.zeros(0), np.zeros(0)
    co = np.empty(len(fcurve.keyframe_points) * 2, np.float32)
    fcurve.keyframe_points.foreach_get("co", co)
    co = co.reshape(-1, 2)
    return co[:, 0], co[:, 1]


# --- camera paths ----------------------------------------------------------------------------
def apply_camera_path(scene, camera, preset: dict, frame_start: int, frame_end: int) -> int:
    """Key the camera's location and rotation along `preset`, from its pose at frame_start."""
    from mathutils import Matrix

    scene.frame_set(frame_start)
    base = np.array(camera.matrix_world, dtype=np.float64)
    scale = np.linalg.norm(base[:3, :3], axis=0)
    matrices = presets.camera_path(preset, base, frame_end - frame_start + 1)
    previous = None
    for i, m in enumerate(matrices):
        m = m.copy()
        m[:3, :3] *= scale
        camera.matrix_world = Matrix(m.tolist())
        if previous is not None:  # keep Euler angles continuous so interpolation does not spin
            camera.rotation_euler.make_compatible(previous)
        previous = camera.rotation_euler.copy()
        camera.keyframe_insert("location", frame=frame_start + i)
        camera.keyframe_insert("rotation_euler", frame=frame_start + i)
    scene.frame_set(frame_start)
    return len(matrices)
