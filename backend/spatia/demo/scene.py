"""A small textured room (open to the sky) built with bpy: the built-in scene of `spatia demo`, the tests and
the evaluation. Every surface carries a distinct procedural texture so that views can be told
apart and compared; geometry is simple so Cycles renders it in well under a second on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROOM_HALF = 4.0  # metres: the room spans [-4, 4] x [-4, 4] x [0, 3]
ROOM_HEIGHT = 3.0


@dataclass(frozen=True)
class DemoScene:
    scene: object  # bpy.types.Scene
    camera: object  # bpy.types.Object


def material(bpy, name: str, kind: str, color_a, color_b, scale: float):
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender < 5 creates node trees on demand
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.8
    texture = {
        "checker": "ShaderNodeTexChecker",
        "wave": "ShaderNodeTexWave",
        "noise": "ShaderNodeTexNoise",
    }[kind]
    tex = nodes.new(texture)
    tex.inputs["Scale"].default_value = scale
    if kind == "checker":
        tex.inputs["Color1"].default_value = (*color_a, 1.0)
        tex.inputs["Color2"].default_value = (*color_b, 1.0)
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    else:
        ramp = nodes.new("ShaderNodeValToRGB")
        ramp.color_ramp.elements[0].color = (*color_a, 1.0)
        ramp.color_ramp.elements[1].color = (*color_b, 1.0)
        links.new(tex.outputs["Fac"] if "Fac" in tex.outputs else tex.outputs[0], ramp.inputs["Fac"])
        links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def add_box(bpy, name, location, size, material):
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=location)
    obj = bpy.context.active_object
    obj.name = name
    obj.scale = size
    obj.data.materials.append(material)
    return obj


def empty_scene(width: int, height: int, fps: int = 24, *, sky=(0.6, 0.7, 0.9), sun_energy: float = 2.5,
                clip_end: float = 100.0):
    """Reset Blender to an empty file set up for fast CPU Cycles renders, open to a sky and lit
    by a sun (little bounce light needed, so few samples look clean); returns (scene, camera)."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 2
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.render.fps = fps
    scene.view_settings.view_transform = "Standard"

    world = bpy.data.worlds.new("Spatia Sky")
    if world.node_tree is None:  # Blender < 5 creates node trees on demand
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (*sky, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 1.0
    scene.world = world

    light = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    light.data.energy = sun_energy
    light.rotation_euler = (0.7, 0.0, 0.4)  # from the south: lights the room's far (north) wall
    scene.collection.objects.link(light)

    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.lens = 24.0
    camera.data.sensor_width = 36.0
    camera.data.clip_end = clip_end
    scene.collection.objects.link(camera)
    scene.camera = camera
    return scene, camera


def build_demo_room(width: int = 320, height: int = 176, fps: int = 24):
    """Reset Blender to an empty file and build the room; returns DemoScene(scene, camera)."""
    import bpy

    scene, camera = empty_scene(width, height, fps)
    h, t = ROOM_HALF, 0.1
    floor = material(bpy, "Floor", "checker", (0.85, 0.8, 0.7), (0.25, 0.2, 0.18), 8.0)
    add_box(bpy, "Floor", (0, 0, -t / 2), (2 * h, 2 * h, t), floor)
    walls = [
        ("Wall North", (0, h + t / 2, ROOM_HEIGHT / 2), (2 * h, t, ROOM_HEIGHT), ("noise", (0.75, 0.3, 0.15), (0.95, 0.85, 0.7), 2.5)),
        ("Wall South", (0, -h - t / 2, ROOM_HEIGHT / 2), (2 * h, t, ROOM_HEIGHT), ("wave", (0.15, 0.35, 0.7), (0.85, 0.9, 0.95), 2.0)),
        ("Wall East", (h + t / 2, 0, ROOM_HEIGHT / 2), (t, 2 * h, ROOM_HEIGHT), ("checker", (0.2, 0.6, 0.3), (0.9, 0.9, 0.6), 5.0)),
        ("Wall West", (-h - t / 2, 0, ROOM_HEIGHT / 2), (t, 2 * h, ROOM_HEIGHT), ("noise", (0.55, 0.2, 0.6), (0.95, 0.8, 0.4), 3.0)),
    ]
    for name, loc, size, (kind, a, b, scale) in walls:
        add_box(bpy, name, loc, size, material(bpy, name, kind, a, b, scale))

    add_box(bpy, "Table", (1.2, 1.5, 0.4), (1.4, 0.8, 0.8), material(bpy, "Table", "wave", (0.45, 0.3, 0.15), (0.7, 0.5, 0.3), 6.0))
    add_box(bpy, "Cabinet", (-2.8, 2.6, 0.9), (1.0, 1.2, 1.8), material(bpy, "Cabinet", "checker", (0.1, 0.1, 0.12), (0.95, 0.6, 0.1), 10.0))
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.45, location=(-1.0, -0.5, 0.45), segments=48, ring_count=24)
    ball = bpy.context.active_object
    ball.name = "Ball"
    ball.data.materials.append(material(bpy, "Ball", "checker", (0.9, 0.1, 0.1), (0.95, 0.95, 0.95), 6.0))
    bpy.ops.object.shade_smooth()

    return DemoScene(scene, camera)


def look_at_matrix_world(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Blender matrix_world of a camera at `eye` looking at `target` (camera looks down -z)."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    cam_up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, cam_up, back, eye
    return m


def look_away_and_back(frame_count: int, *, yaw_degrees: float = 70.0) -> list[np.ndarray]:
    """Blender matrix_world per frame: from the south side of the room, the camera turns
    away from the far wall to the east, swings to the west and returns to where it began,
    drifting on a small circle (a closed loop)."""
    out = []
    for i in range(frame_count):
        t = i / max(frame_count - 1, 1)
        yaw = math.radians(yaw_degrees) * math.sin(2 * math.pi * t)
        eye = np.array([0.4 * math.sin(2 * math.pi * t), -2.4 + 0.4 * (1 - math.cos(2 * math.pi * t)), 1.4])
        target = eye + np.array([math.sin(yaw), math.cos(yaw), -0.12])
        out.append(look_at_matrix_world(eye, target))
    return out


def keyframe_camera(scene, camera, matrices, start_frame: int = 1) -> None:
    """Key the camera's transform to each matrix_world in turn, one frame apart."""
    from mathutils import Matrix

    camera.animation_data_clear()
    for i, m in enumerate(matrices):
        camera.matrix_world = Matrix(np.asarray(m).tolist())
        camera.keyframe_insert("location", frame=start_frame + i)
        camera.keyframe_insert("rotation_euler", frame=start_frame + i)
    scene.frame_start, scene.frame_end = start_frame, start_frame + len(matrices) - 1
