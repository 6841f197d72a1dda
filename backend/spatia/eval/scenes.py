"""Evaluation scenes built with bpy: the demo room, a street of look-alike houses, and outdoor
terrain. Each is small enough for Cycles to render in about a second per frame on a CPU, and
textured everywhere so that feature matching and photometric metrics have something to see.

Every builder resets Blender to an empty file and returns DemoScene(scene, camera).
"""

from __future__ import annotations

import math

import numpy as np

from spatia.demo.scene import DemoScene, add_box, build_demo_room, empty_scene, material


def _empty_scene(width: int, height: int, fps: int = 24, sky=(0.6, 0.7, 0.9)):
    """The demo room's empty scene, with a stronger sun and a far clip for large outdoor scenes."""
    import bpy

    scene, camera = empty_scene(width, height, fps, sky=sky, sun_energy=3.0, clip_end=500.0)
    return bpy, scene, camera


def _object_space_material(bpy, name: str, color_a, color_b, scale: float, detail: float = 4.0):
    """Noise texture in object coordinates, so the pattern's size is in metres (not stretched
    over the object's bounds as generated coordinates are on large meshes)."""
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.9
    coords = nodes.new("ShaderNodeTexCoord")
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = scale
    noise.inputs["Detail"].default_value = detail
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = (*color_a, 1.0)
    ramp.color_ramp.elements[1].color = (*color_b, 1.0)
    ramp.color_ramp.elements[0].position = 0.35
    ramp.color_ramp.elements[1].position = 0.65
    links.new(coords.outputs["Object"], noise.inputs["Vector"])
    links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def _add_cylinder(bpy, name, location, radius, depth, material, vertices=16):
    bpy.ops.mesh.primitive_cylinder_add(vertices=vertices, radius=radius, depth=depth, location=location)
    obj = bpy.context.active_object
    obj.name = name
    obj.data.materials.append(material)
    return obj


# --- the room --------------------------------------------------------------------------------
def build_room(width: int, height: int) -> DemoScene:
    """The demo room: 8 x 8 m, open to the sky, a table, a cabinet and a ball."""
    return build_demo_room(width, height)


# --- a street ---------------------------------------------------------------------------------
STREET_HOUSE_SPACING = 7.0  # metres between look-alike houses along the road
STREET_HOUSES = range(-2, 7)  # house index i stands at y = i * spacing


def build_street(width: int, height: int) -> DemoScene:
    """A straight road (along +y) between two rows of similar houses with lamp posts every
    7 m: places a few metres apart look alike, which tests retrieval by geometry rather than
    by appearance."""
    bpy, scene, camera = _empty_scene(width, height)
    asphalt = _object_space_material(bpy, "Asphalt", (0.12, 0.12, 0.13), (0.35, 0.34, 0.33), 3.0, detail=8.0)
    add_box(bpy, "Road", (0.0, 15.0, -0.05), (8.0, 70.0, 0.1), asphalt)
    paving = material(bpy, "Pavement", "checker", (0.7, 0.68, 0.64), (0.5, 0.48, 0.45), 40.0)
    for side in (-1, 1):
        add_box(bpy, f"Pavement {side:+d}", (side * 5.25, 15.0, 0.05), (2.5, 70.0, 0.3), paving)
    marking = material(bpy, "Marking", "checker", (0.95, 0.95, 0.9), (0.95, 0.95, 0.9), 1.0)
    for k in range(-6, 30):  # dashed centre line, 1.5 m dashes every 3 m
        add_box(bpy, f"Dash {k}", (0.0, 1.5 * k * 2 + 0.75, 0.005), (0.15, 1.5, 0.01), marking)

    # Three facade looks repeat along the street: neighbours differ, houses 3 apart look alike.
    facades = [
        material(bpy, "Brick", "wave", (0.55, 0.22, 0.15), (0.8, 0.55, 0.4), 4.0),
        material(bpy, "Plaster", "noise", (0.85, 0.8, 0.65), (0.6, 0.55, 0.45), 3.0),
        material(bpy, "Siding", "checker", (0.35, 0.45, 0.6), (0.75, 0.8, 0.85), 9.0),
    ]
    glass = material(bpy, "Glass", "checker", (0.08, 0.1, 0.14), (0.2, 0.25, 0.3), 3.0)
    door = material(bpy, "Door", "wave", (0.3, 0.18, 0.1), (0.45, 0.3, 0.15), 8.0)
    metal = material(bpy, "Lamp", "noise", (0.15, 0.15, 0.16), (0.3, 0.3, 0.32), 8.0)
    for side in (-1, 1):
        face_x = side * 7.0  # the facade facing the road
        for i in STREET_HOUSES:
            y = i * STREET_HOUSE_SPACING
            storeys = 2 + (i % 2)
            h = 2.8 * storeys
            add_box(bpy, f"House {side:+d} {i}", (face_x + side * 2.5, y, h / 2), (5.0, 5.5, h), facades[i % 3])
            add_box(bpy, f"Door {side:+d} {i}", (face_x - side * 0.03, y - 1.2, 1.05), (0.08, 1.0, 2.1), door)
            for s in range(storeys):
                for dy in ((0.8,) if s == 0 else (-1.3, 1.3)):
                    add_box(bpy, f"Window {side:+d} {i} {s} {dy}", (face_x - side * 0.03, y + dy, 1.5 + 2.8 * s),
                             (0.08, 1.1, 1.3), glass)
            lamp_y = y + STREET_HOUSE_SPACING / 2
            _add_cylinder(bpy, f"Lamp post {side:+d} {i}", (side * 4.4, lamp_y, 2.0), 0.08, 4.0, metal)
            add_box(bpy, f"Lamp head {side:+d} {i}", (side * 4.0, lamp_y, 4.0), (0.9, 0.3, 0.2), metal)
    return DemoScene(scene, camera)


# --- terrain ----------------------------------------------------------------------------------
TERRAIN_HALF = 30.0  # metres: the ground spans [-30, 30]^2
TERRAIN_GRID = 121  # vertices per side (0.5 m spacing)


def terrain_height(x, y) -> np.ndarray:
    """Ground height (metres) at (x, y): rolling hills from a few sines, the same function the
    mesh is built from, so cameras and objects can be placed on the ground."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return (0.9 * np.sin(0.21 * x + 0.5) * np.cos(0.17 * y - 0.3)
            + 0.35 * np.sin(0.55 * x + 0.8 * y)
            + 0.12 * np.sin(1.7 * x - 1.3 * y + 0.4))


TERRAIN_ROCKS = [(2.5, 1.0, 0.7), (-1.5, 3.0, 0.5), (-3.0, -2.0, 0.9), (1.0, -3.5, 0.4), (4.5, -1.5, 0.6), (-5.0, 4.5, 0.8)]
TERRAIN_TREES = [(0.0, 0.5, 3.5), (3.5, 3.5, 4.5), (-3.5, 0.5, 3.0), (-1.0, -5.0, 4.0), (5.5, 2.0, 3.2),
                 (-6.0, -4.0, 5.0), (12.0, 6.0, 5.5), (-10.0, 11.0, 6.0), (8.0, -12.0, 5.0), (-14.0, -6.0, 6.5)]


def build_terrain(width: int, height: int) -> DemoScene:
    """Rolling, noise-textured ground (a 60 x 60 m height field) with rocks and trees."""
    bpy, scene, camera = _empty_scene(width, height, sky=(0.55, 0.7, 0.95))
    n = TERRAIN_GRID
    g = np.linspace(-TERRAIN_HALF, TERRAIN_HALF, n)
    gx, gy = np.meshgrid(g, g, indexing="xy")
    verts = np.stack([gx, gy, terrain_height(gx, gy)], axis=-1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], axis=-1).reshape(-1, 4)
    mesh = bpy.data.meshes.new("Terrain")
    mesh.from_pydata(verts.tolist(), [], quads.tolist())
    mesh.update()
    ground = bpy.data.objects.new("Terrain", mesh)
    scene.collection.objects.link(ground)
    ground.data.materials.append(_object_space_material(bpy, "Grass", (0.16, 0.3, 0.08), (0.5, 0.45, 0.25), 0.9, detail=10.0))
    for poly in mesh.polygons:
        poly.use_smooth = True

    stone = _object_space_material(bpy, "Stone", (0.3, 0.3, 0.32), (0.7, 0.68, 0.65), 4.0, detail=8.0)
    for k, (x, y, size) in enumerate(TERRAIN_ROCKS):
        bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=2, radius=size, location=(x, y, float(terrain_height(x, y))))
        rock = bpy.context.active_object
        rock.name = f"Rock {k}"
        rock.scale = (1.0 + 0.3 * math.sin(k), 0.8 + 0.2 * math.cos(2 * k), 0.6)
        rock.rotation_euler = (0.0, 0.0, 0.7 * k)
        rock.data.materials.append(stone)

    bark = _object_space_material(bpy, "Bark", (0.25, 0.15, 0.08), (0.45, 0.3, 0.18), 6.0)
    leaves = _object_space_material(bpy, "Leaves", (0.05, 0.25, 0.05), (0.35, 0.55, 0.15), 3.0, detail=8.0)
    for k, (x, y, h) in enumerate(TERRAIN_TREES):
        z = float(terrain_height(x, y))
        _add_cylinder(bpy, f"Trunk {k}", (x, y, z + 0.35 * h / 2), 0.12 + 0.02 * h, 0.35 * h, bark, vertices=12)
        bpy.ops.mesh.primitive_cone_add(vertices=16, radius1=0.3 * h, radius2=0.0, depth=0.75 * h,
                                        location=(x, y, z + 0.3 * h + 0.375 * h))
        crown = bpy.context.active_object
        crown.name = f"Crown {k}"
        crown.data.materials.append(leaves)
    return DemoScene(scene, camera)
