"""Evaluation scenes with moving objects, built with bpy: a car that drives behind a building, a
person the camera pans away from, and two look-alike figures that cross while out of view.

Each moving object is an Empty (its pose is the Empty's matrix_world: a position and a heading
about +Z) with textured meshes as children. The Empty carries the custom properties
`spatia_instance` (the object's id in the ground truth, > 0) and `spatia_label`; every child mesh
has that id as its pass index, so the ground-truth render's object-index channel is an exact
instance map. Objects move on linear keyframes over the shot's frames; the camera paths never
repeat a pose, so a frame is found from its camera alone.

All motion is laid out in the shot's normalised time t in [0, 1] (frame 1 .. frame_count), so a
longer shot moves the same way, only slower.
"""

from __future__ import annotations

import math

import numpy as np

from spatia.demo.scene import DemoScene, add_box, look_at_matrix_world, material

from .scenes import _add_cylinder, _empty_scene, _object_space_material

INSTANCE_PROPERTY = "spatia_instance"
LABEL_PROPERTY = "spatia_label"
EYE = 1.6


# --- helpers ----------------------------------------------------------------------------------
def _moving_root(bpy, scene, name: str, instance: int, label: str):
    root = bpy.data.objects.new(name, None)
    scene.collection.objects.link(root)
    root[INSTANCE_PROPERTY] = int(instance)
    root[LABEL_PROPERTY] = label
    return root


def _attach(root, part, instance: int):
    part.parent = root
    part.pass_index = int(instance)
    return part


def _car(bpy, scene, name: str, instance: int, body_colours, cabin_colours):
    """A box body (4.2 x 1.8 x 0.8 m) and a cabin on top; the root sits on the ground at the
    body's centre, the car points along its +x axis."""
    root = _moving_root(bpy, scene, name, instance, "car")
    body = material(bpy, f"{name} body", "checker", *body_colours, 6.0)
    cabin = material(bpy, f"{name} cabin", "wave", *cabin_colours, 5.0)
    _attach(root, add_box(bpy, f"{name} body", (0.0, 0.0, 0.55), (4.2, 1.8, 0.8), body), instance)
    _attach(root, add_box(bpy, f"{name} cabin", (-0.3, 0.0, 1.25), (2.2, 1.6, 0.6), cabin), instance)
    return root


def _figure(bpy, scene, name: str, instance: int, shirt_colours):
    """A person-sized figure 1.75 m tall: legs and torso cylinders and a head; the root is on
    the ground below its centre."""
    root = _moving_root(bpy, scene, name, instance, "person")
    shirt = material(bpy, f"{name} shirt", "checker", *shirt_colours, 9.0)
    trousers = material(bpy, f"{name} trousers", "noise", (0.1, 0.12, 0.3), (0.25, 0.3, 0.55), 6.0)
    skin = material(bpy, f"{name} skin", "noise", (0.75, 0.55, 0.42), (0.9, 0.7, 0.55), 8.0)
    _attach(root, _add_cylinder(bpy, f"{name} legs", (0.0, 0.0, 0.45), 0.17, 0.9, trousers, vertices=12), instance)
    _attach(root, _add_cylinder(bpy, f"{name} torso", (0.0, 0.0, 1.2), 0.24, 0.6, shirt, vertices=12), instance)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.14, location=(0.0, 0.0, 1.63), segments=12, ring_count=8)
    head = bpy.context.active_object
    head.name = f"{name} head"
    head.data.materials.append(skin)
    _attach(root, head, instance)
    return root


def _fcurves(obj):
    """The F-curves of `obj`'s action: a layered action's channel bag (Blender 4.4 on) or the
    legacy action's own list."""
    data = obj.animation_data
    action = data.action
    if hasattr(action, "fcurves"):
        return list(action.fcurves)
    return [fc for layer in action.layers for strip in layer.strips
            for fc in strip.channelbag(data.action_slot).fcurves]


def key_linear(obj, keys) -> None:
    """Key `obj`'s location and heading (rotation about +Z) at each (frame, (x, y, z), heading)
    with linear interpolation (Blender's constant extrapolation holds the ends)."""
    obj.animation_data_clear()
    for frame, location, heading in keys:
        obj.location = tuple(float(v) for v in location)
        obj.rotation_euler = (0.0, 0.0, float(heading))
        obj.keyframe_insert("location", frame=int(frame))
        obj.keyframe_insert("rotation_euler", frame=int(frame))
    for fc in _fcurves(obj):
        for key in fc.keyframe_points:
            key.interpolation = "LINEAR"
        fc.update()


def moving_objects(scene) -> list:
    """The scene's moving-object roots, ordered by instance id."""
    roots = [o for o in scene.objects if INSTANCE_PROPERTY in o.keys()]
    return sorted(roots, key=lambda o: int(o[INSTANCE_PROPERTY]))


def _times(frame_count: int) -> np.ndarray:
    if frame_count < 3:
        raise ValueError(f"a moving-object shot needs at least 3 frames, got {frame_count}")
    return np.arange(frame_count) / (frame_count - 1)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _pan_away_and_back(t: float, away: float, t0: float, t1: float, t2: float, t3: float) -> float:
    """Yaw (radians) that ramps smoothly 0 -> away over [t0, t1], holds, and back over [t2, t3]."""
    return away * (_smoothstep((t - t0) / (t1 - t0)) - _smoothstep((t - t2) / (t3 - t2)))


def _yaw_view(eye, yaw: float, pitch: float = -0.08) -> np.ndarray:
    """Blender matrix_world of a camera at `eye` looking along +y turned by `yaw` (radians,
    positive to the left, about +Z)."""
    direction = np.array([-math.sin(yaw), math.cos(yaw), pitch])
    return look_at_matrix_world(eye, np.asarray(eye) + direction)


def _ground(bpy, name, size, colours, scale):
    return add_box(bpy, name, (0.0, size[1] / 2 - 10.0, -0.05), (size[0], size[1], 0.1),
                   _object_space_material(bpy, name, *colours, scale, detail=8.0))


# --- a car behind a building --------------------------------------------------------------------
CAR_LANE_Y = 11.0
CAR_X = (-9.0, 9.0)  # the car drives from x = -9 to x = +9 over the shot


def build_car_behind_building(width: int, height: int) -> DemoScene:
    """A street across the view behind a building: the car passes behind the building (out of
    view for about the middle 40% of the shot) and comes out on the other side."""
    bpy, scene, camera = _empty_scene(width, height)
    _ground(bpy, "Pavement", (60.0, 40.0), ((0.3, 0.29, 0.27), (0.5, 0.48, 0.45)), 2.0)
    add_box(bpy, "Road", (0.0, CAR_LANE_Y, 0.005), (60.0, 6.0, 0.01),
            _object_space_material(bpy, "Asphalt", (0.12, 0.12, 0.13), (0.35, 0.34, 0.33), 3.0, detail=8.0))
    add_box(bpy, "Building", (0.0, 6.0, 3.0), (6.0, 2.0, 6.0),
            material(bpy, "Brick", "wave", (0.55, 0.22, 0.15), (0.8, 0.55, 0.4), 4.0))
    add_box(bpy, "Facades", (0.0, 16.0, 4.0), (40.0, 2.0, 8.0),
            material(bpy, "Siding", "checker", (0.3, 0.4, 0.55), (0.65, 0.7, 0.75), 9.0))
    metal = material(bpy, "Lamp", "noise", (0.15, 0.15, 0.16), (0.3, 0.3, 0.32), 8.0)
    for k, x in enumerate((-9.0, 9.0)):
        _add_cylinder(bpy, f"Lamp post {k}", (x, 7.5, 2.0), 0.1, 4.0, metal)
    _car(bpy, scene, "Car", 1, ((0.85, 0.1, 0.08), (0.95, 0.8, 0.1)), ((0.1, 0.15, 0.35), (0.5, 0.7, 0.85)))
    return DemoScene(scene, camera)


def animate_car_behind_building(scene, frame_count: int) -> None:
    car = moving_objects(scene)[0]
    first, last = scene.frame_start, scene.frame_start + frame_count - 1
    key_linear(car, [(first, (CAR_X[0], CAR_LANE_Y, 0.0), 0.0), (last, (CAR_X[1], CAR_LANE_Y, 0.0), 0.0)])


def car_gentle_pan(frame_count: int) -> list[np.ndarray]:
    """From across the square the camera pans slowly (from 4 degrees left to 4 degrees right)
    while drifting half a metre sideways: it stays roughly put."""
    return [_yaw_view((-0.25 + 0.5 * t, -2.0, EYE), math.radians(4.0 - 8.0 * t)) for t in _times(frame_count)]


# --- a person the camera pans away from -------------------------------------------------------
PERSON_Y = 5.5
PERSON_X = (-2.5, 2.5)


def _plaza(bpy, scene):
    _ground(bpy, "Paving", (40.0, 40.0), ((0.3, 0.28, 0.25), (0.5, 0.46, 0.4)), 2.5)
    add_box(bpy, "North facade", (0.0, 12.0, 3.0), (30.0, 1.0, 6.0),
            material(bpy, "North facade", "wave", (0.55, 0.22, 0.15), (0.85, 0.6, 0.45), 3.0))
    add_box(bpy, "East facade", (11.0, 2.0, 3.0), (1.0, 26.0, 6.0),
            material(bpy, "East facade", "checker", (0.35, 0.45, 0.6), (0.8, 0.82, 0.85), 7.0))
    add_box(bpy, "Kiosk", (6.0, 1.0, 1.2), (2.0, 2.0, 2.4),
            material(bpy, "Kiosk", "checker", (0.1, 0.35, 0.15), (0.9, 0.85, 0.3), 10.0))
    add_box(bpy, "Bench", (-4.0, 8.0, 0.25), (2.5, 0.6, 0.5),
            material(bpy, "Bench", "wave", (0.45, 0.3, 0.15), (0.7, 0.5, 0.3), 6.0))


def build_person_pan(width: int, height: int) -> DemoScene:
    """A plaza: a person walks across in front of the camera, which pans right to a kiosk and
    a side facade (the person out of view) and back."""
    bpy, scene, camera = _empty_scene(width, height)
    _plaza(bpy, scene)
    _figure(bpy, scene, "Person", 1, ((0.85, 0.15, 0.1), (0.95, 0.9, 0.85)))
    return DemoScene(scene, camera)


def animate_person_pan(scene, frame_count: int) -> None:
    person = moving_objects(scene)[0]
    first, last = scene.frame_start, scene.frame_start + frame_count - 1
    key_linear(person, [(first, (PERSON_X[0], PERSON_Y, 0.0), 0.0), (last, (PERSON_X[1], PERSON_Y, 0.0), 0.0)])


PAN_AWAY = math.radians(-95.0)  # to the right


def pan_away_and_back(frame_count: int) -> list[np.ndarray]:
    """Look north at the person, pan 95 degrees right (t 0.2 to 0.4), hold, pan back (t 0.55 to
    0.75), while drifting 40 cm forward so no two frames share a pose."""
    return [_yaw_view((0.0, -0.4 + 0.4 * t, EYE), _pan_away_and_back(t, PAN_AWAY, 0.2, 0.4, 0.55, 0.75))
            for t in _times(frame_count)]


# --- two look-alikes crossing out of view -----------------------------------------------------
CROSSING_LANES = (5.0, 6.4)  # y of A's and B's lanes: they pass each other at x = 0, t = 0.5
CROSSING_X = 3.0


def build_crossing(width: int, height: int) -> DemoScene:
    """The plaza with two figures of the same shape whose shirts differ slightly in colour;
    they walk towards each other and cross while the camera looks away."""
    bpy, scene, camera = _empty_scene(width, height)
    _plaza(bpy, scene)
    _figure(bpy, scene, "Walker A", 1, ((0.85, 0.15, 0.1), (0.95, 0.9, 0.85)))
    _figure(bpy, scene, "Walker B", 2, ((0.8, 0.3, 0.1), (0.95, 0.9, 0.8)))
    return DemoScene(scene, camera)


def animate_crossing(scene, frame_count: int) -> None:
    a, b = moving_objects(scene)[:2]
    first, last = scene.frame_start, scene.frame_start + frame_count - 1
    key_linear(a, [(first, (-CROSSING_X, CROSSING_LANES[0], 0.0), 0.0),
                          (last, (CROSSING_X, CROSSING_LANES[0], 0.0), 0.0)])
    key_linear(b, [(first, (CROSSING_X, CROSSING_LANES[1], 0.0), math.pi),
                          (last, (-CROSSING_X, CROSSING_LANES[1], 0.0), math.pi)])


# --- truth from Blender -----------------------------------------------------------------------
def object_pose(obj) -> tuple[np.ndarray, float]:
    """(position [3], heading) of an object's matrix_world at the current frame: heading is
    the turn of its x axis about +Z."""
    m = np.array(obj.matrix_world, dtype=np.float64)
    return m[:3, 3].copy(), float(math.atan2(m[1, 0], m[0, 0]))
