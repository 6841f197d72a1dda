"""The world's remembered objects as Empties (docs/objects.md): one Empty per object, named
"{label} {id}", in the collection "Spatia Objects", at the object's latest pose, with its points
as a child point object (in the object's own frame, so the identity local transform places
them). The artist directs an object by keying its Empty, forgets it by deleting the Empty and
copies it with Shift+D; directing.py decides what that means for the shot, this module only
reads and writes the Blender data (main thread).
"""

from __future__ import annotations

import numpy as np

from . import directing, memory_object
from .compat import action_fcurves

COLLECTION = "Spatia Objects"
POSE_PATHS = ("location", "rotation_euler")


def object_empties(scene) -> list:
    """The scene's Empties that stand for objects of the world."""
    return [obj for obj in scene.objects if obj.type == "EMPTY" and obj.spatia_object.object_id > 0]


def owner_of(obj):
    """The object Empty for an active object: itself, or the Empty its points belong to."""
    while obj is not None:
        if obj.type == "EMPTY" and obj.spatia_object.object_id > 0:
            return obj
        obj = obj.parent if obj.spatia_object.is_points else None
    return None


def known_ids(settings) -> list[int]:
    return [item.object_id for item in settings.known_objects]


def is_animated(obj) -> bool:
    return any(fc.data_path in POSE_PATHS for fc in action_fcurves(obj)) or is_driven(obj)


LOCATION_PATHS = ("location", "delta_location")


def _animated(obj) -> bool:
    data = obj.animation_data
    return data is not None and (data.action is not None or len(data.drivers) > 0 or len(data.nla_tracks) > 0)


def is_driven(obj) -> bool:
    """Whether an Empty's pose can change over the frames: keyed, driven, constrained, or parented
    to something that is."""
    while obj is not None:
        if _animated(obj) or len(obj.constraints):
            return True
        obj = obj.parent
    return False


def location_only(obj) -> bool:
    """Whether only the Empty's own location is animated (no rotation keys or drivers, no
    constraints, no moving parent): its heading then comes from its path's tangent."""
    if len(obj.constraints) or (obj.parent is not None and is_driven(obj.parent)):
        return False
    data = obj.animation_data
    if data is not None and any(d.data_path not in LOCATION_PATHS for d in data.drivers):
        return False
    paths = {fc.data_path for fc in action_fcurves(obj)}
    return bool(paths) and paths <= set(LOCATION_PATHS)


def sample_world_poses(scene, objects, start: int, end: int) -> dict:
    """{name: [matrix_world as nested lists] per frame of [start, end]} for `objects`, read from
    the evaluated scene frame by frame (F-curves of any interpolation, constraints, parents,
    drivers: what Blender shows); the current frame is restored."""
    if not objects:
        return {}
    frame, subframe = scene.frame_current, scene.frame_subframe
    out = {obj.name: [] for obj in objects}
    try:
        for f in range(int(start), int(end) + 1):
            scene.frame_set(f)
            for obj in objects:
                out[obj.name].append([list(row) for row in obj.matrix_world])
    finally:
        scene.frame_set(frame, subframe=subframe)
    return out


def describe(obj, start: int, end: int, up=(0.0, 0.0, 1.0), samples=None) -> dict:
    """An object Empty as directing.py takes it: its path over [start, end] (every frame, as the
    evaluated scene places it: `samples`, from sample_world_poses, when it is driven; empty when
    it is not) and current pose."""
    index, sign = directing.up_axis(up)
    path = []
    if samples is not None:
        rest = sign * obj.rotation_euler[index]
        path = directing.sampled_path(range(int(start), int(end) + 1), samples, up,
                                      rotation_from_path=location_only(obj), rest_heading=rest)
    settings = obj.spatia_object
    return {"name": obj.name, "id": settings.object_id, "label": settings.label, "copy_of": settings.copy_of,
            "condition": settings.condition, "reference": settings.reference, "path": path,
            "pose": {"position": list(obj.location), "heading": sign * obj.rotation_euler[index]}}


def directions_for_scene(scene, start: int, end: int) -> dict:
    """directing.direct_objects for the scene's Empties over the shot [start, end]. Empties
    fetched from another world than the scene's direct nothing."""
    settings = scene.spatia
    if not settings.world_id or settings.objects_world != settings.world_id:
        return {"objects": [], "forget_objects": [], "assign": {}, "stale": []}
    empties = object_empties(scene)
    samples = sample_world_poses(scene, [obj for obj in empties if is_driven(obj)], start, end)
    described = [describe(obj, start, end, settings.objects_up, samples.get(obj.name)) for obj in empties]
    return directing.direct_objects(described, known_ids(settings), start=start, next_id=settings.objects_next_id)


def assign_copies(scene, assign: dict) -> None:
    """Give each duplicated Empty the id its copy gets, so a retried shot sends the same copy
    and the fetch after the generation finds the Empty of the new object."""
    import bpy

    settings = scene.spatia
    for name, (object_id, copy_of) in assign.items():
        obj = bpy.data.objects.get(name)
        if obj is None:
            continue
        obj.spatia_object.object_id, obj.spatia_object.copy_of = int(object_id), int(copy_of)
        obj.name = directing.object_name(obj.spatia_object.label, object_id)
        settings.objects_next_id = max(settings.objects_next_id, int(object_id) + 1)


# --- building the Empties from a fetch -----------------------------------------------------------
def _collection(bpy, scene):
    collection = bpy.data.collections.get(COLLECTION) or bpy.data.collections.new(COLLECTION)
    if collection not in scene.collection.children_recursive:
        scene.collection.children.link(collection)
    return collection


def _points_child(empty):
    return next((child for child in empty.children if child.type == "MESH" and child.spatia_object.is_points), None)


def _remove(bpy, obj) -> None:
    """Remove an object (and its points child), leaving Edit Mode on it first if needed."""
    for child in list(obj.children):
        if child.spatia_object.is_points:
            _remove(bpy, child)
    mesh = obj.data if obj.type == "MESH" else None
    with memory_object.outside_edit_mode(obj if obj.mode == "EDIT" else None):
        bpy.data.objects.remove(obj, do_unlink=True)
    if mesh is not None and mesh.users == 0:
        bpy.data.meshes.remove(mesh)


def _set_points(bpy, empty, name: str, points: dict, radius: float) -> None:
    xyz = np.asarray(points.get("xyz", []), dtype=np.float32).reshape(-1, 3)
    rgb = np.asarray(points.get("rgb", []), dtype=np.uint8).reshape(-1, 3)
    mesh = memory_object.build_mesh(bpy, name, xyz, rgb, np.arange(len(xyz)))
    child = _points_child(empty)
    if child is None:
        child = bpy.data.objects.new(name, mesh)
        for collection in empty.users_collection:
            collection.objects.link(child)
        child.parent = empty
        child.matrix_parent_inverse.identity()  # points are in the object's frame: the Empty's
        child.hide_render = True  # a guide, like the memory
        child.spatia_object.is_points = True
    else:
        with memory_object.outside_edit_mode(child if child.mode == "EDIT" else None):
            old = child.data
            child.data = mesh
            if old.users == 0:
                bpy.data.meshes.remove(old)
        child.name = name
    child.spatia_object.object_id = empty.spatia_object.object_id
    memory_object.draw_as_points(bpy, child, radius)


def _refresh(bpy, empty, collection, info: dict, points: dict, *, version: int, up, world_start: int, radius: float):
    object_id, label = int(info["id"]), str(info.get("label") or "object")
    name = directing.object_name(label, object_id)
    if empty is None:
        empty = bpy.data.objects.new(name, None)
        collection.objects.link(empty)
        empty.empty_display_type = "CUBE"  # a box around the points: something to click
        empty.empty_display_size = max(0.5 * max((float(v) for v in info.get("extent") or [1.0]), default=1.0), 0.05)
        empty.spatia_object.condition = bool(info.get("condition", True))
        empty.spatia_object.reference = bool(info.get("reference", True))
    elif empty.name != name:
        empty.name = name
    settings = empty.spatia_object
    settings.object_id, settings.label, settings.objects_version, settings.copy_of = object_id, label, version, 0
    settings.state = str(info.get("state", ""))
    settings.points = int(info.get("points", len(points.get("xyz", []))))
    if info.get("last_seen") is not None:
        settings.last_seen = world_start + int(info["last_seen"])
    if not is_animated(empty):  # the artist's keys win; an unkeyed Empty shows where the object is now
        index, sign = directing.up_axis(up)
        position, heading = directing.latest_pose(info.get("keys") or [])
        empty.location = position
        empty.rotation_euler[index] = sign * heading
    _set_points(bpy, empty, f"{name} points", points, radius)
    return empty


def apply_objects(scene, fetched: dict, *, restore: bool = False) -> str:
    """Create or refresh the Empties from a fetch ({"world", "table", "points"}); main thread.

    - an Empty that still exists keeps its animation, switches, name's collection; its data
      (id, version, state, points) is replaced, and an unkeyed one moves to the latest pose;
    - an object whose Empty the artist deleted stays deleted (it is forgotten with the next
      shot) unless `restore`;
    - Empties of objects the backend no longer has are removed, except copies not made yet,
      and so are all Empties of another world's objects.
    """
    import bpy

    settings = scene.spatia
    world, table, points = fetched["world"], fetched["table"], fetched["points"]
    same_world = settings.objects_world == world
    if not same_world:  # Empties of another world's objects would direct this world's namesakes
        for obj in object_empties(scene):
            _remove(bpy, obj)
        settings.objects_next_id = 1
    empties = object_empties(scene)
    plain = [{"name": obj.name, "id": obj.spatia_object.object_id, "label": obj.spatia_object.label} for obj in empties]
    deleted = set() if restore or not same_world else set(directing.pending_forgets(known_ids(settings), plain))
    groups = directing.group_by_id(plain)
    listed = {int(info["id"]): info for info in table.get("objects") or []}
    version = -1 if table.get("version") is None else int(table["version"])
    up = table.get("up") or (0.0, 0.0, 1.0)
    radius = settings.voxel_size * settings.point_radius
    collection = _collection(bpy, scene) if listed else None
    made = refreshed = removed = 0
    for object_id, info in sorted(listed.items()):
        if object_id in deleted:
            continue
        group = groups.get(object_id)
        empty = bpy.data.objects[group[0]["name"]] if group else None
        made, refreshed = made + (empty is None), refreshed + (empty is not None)
        _refresh(bpy, empty, collection, info, points.get(object_id) or {}, version=version, up=up,
                 world_start=settings.world_frame_start, radius=radius)
    for object_id, group in groups.items():
        if object_id in listed:
            continue  # further Empties of a listed id are duplicates waiting to become copies
        for entry in group:
            obj = bpy.data.objects[entry["name"]]
            if obj.spatia_object.copy_of in listed:
                continue  # a copy the next generation makes
            _remove(bpy, obj)
            removed += 1
    for obj in list(scene.objects):  # points whose Empty was deleted
        if obj.spatia_object.is_points and owner_of(obj.parent) is None:
            _remove(bpy, obj)
    settings.objects_world, settings.objects_version, settings.objects_up = world, version, up
    settings.known_objects.clear()
    for object_id, info in sorted(listed.items()):
        item = settings.known_objects.add()
        item.object_id, item.label = object_id, str(info.get("label") or "object")
    settings.objects_next_id = max([settings.objects_next_id, int(table.get("next_id") or 0), *(i + 1 for i in listed)])
    parts = [f"{len(listed)} objects (version {version})" if listed else "no objects"]
    parts += [f"{n} {what}" for n, what in ((made, "new"), (refreshed, "refreshed"), (removed, "removed")) if n]
    if deleted:
        parts.append(f"{len(deleted)} deleted in Blender stay deleted (forgotten with the next shot)")
    return ", ".join(parts)


def forget_applied(scene, object_id: int, version: int) -> None:
    """After a forget on the backend: the object leaves the scene and the known ids."""
    import bpy

    settings = scene.spatia
    for obj in object_empties(scene):
        if obj.spatia_object.object_id == object_id and obj.spatia_object.copy_of == 0:
            _remove(bpy, obj)
    for i, item in enumerate(settings.known_objects):
        if item.object_id == object_id:
            settings.known_objects.remove(i)
            break
    settings.objects_version = int(version)


def write_entries(scene, marks) -> None:
    """Store the expected re-entries ((frame, id, label), from directing.entry_frames) on the
    scene, where they are saved with the .blend and drawn in the Timeline."""
    entries = scene.spatia.object_entries
    entries.clear()
    for frame, object_id, label in marks:
        item = entries.add()
        item.frame, item.object_id, item.label = int(frame), int(object_id), label


# --- at once, as the artist edits: deletions and duplicates ------------------------------------------
_busy = False


def tidy(scene) -> str:
    """What a deletion or a Shift+D means, done at once (main thread): points whose Empty was
    deleted go with it (left behind they would sit at the world's origin); a duplicated Empty
    gets its own id (a copy of the original's object, made by the next generation) and its own
    points; the status line says so. Returns the message ("" when nothing changed)."""
    import bpy

    settings = scene.spatia
    messages = []
    for obj in list(scene.objects):
        if obj.spatia_object.is_points and owner_of(obj.parent) is None:
            name = obj.name
            _remove(bpy, obj)
            messages.append(f"removed {name}")
    empties = object_empties(scene)
    plain = [{"name": obj.name, "id": obj.spatia_object.object_id, "label": obj.spatia_object.label} for obj in empties]
    known = known_ids(settings)
    for object_id, group in directing.group_by_id(plain).items():
        first, *rest = group
        if object_id not in known or not rest:
            continue
        original = bpy.data.objects[first["name"]]
        for entry in rest:
            obj = bpy.data.objects[entry["name"]]
            new_id = directing.next_copy_id(known, [e.spatia_object.object_id for e in object_empties(scene)],
                                            [e.spatia_object.copy_of for e in object_empties(scene)],
                                            settings.objects_next_id)
            item = obj.spatia_object
            item.object_id, item.copy_of = new_id, object_id
            settings.objects_next_id = new_id + 1
            obj.name = directing.object_name(item.label, new_id)
            source = _points_child(original)
            if _points_child(obj) is None and source is not None:
                child = source.copy()
                child.data = source.data.copy()
                for collection in obj.users_collection:
                    collection.objects.link(child)
                child.parent = obj
                child.matrix_parent_inverse.identity()
            own = _points_child(obj)
            if own is not None:
                own.spatia_object.object_id = new_id
                own.name = f"{obj.name} points"
            messages.append(f"{obj.name}: a copy of {first['name']} (made by the next generation)")
    if settings.objects_world and settings.objects_world == settings.world_id:
        deleted = directing.pending_forgets(known, [{"name": o.name, "id": o.spatia_object.object_id}
                                                   for o in object_empties(scene)])
        new_deleted = [i for i in deleted if i not in set(settings.get("_spatia_deleted", []))]
        if new_deleted:
            messages.append(f"object {', '.join(map(str, new_deleted))} deleted: forgotten with the next shot")
        if list(settings.get("_spatia_deleted", [])) != deleted:
            settings["_spatia_deleted"] = deleted
    if messages:
        settings.status = "; ".join(messages)
    return "; ".join(messages)


def _on_depsgraph_update(scene, depsgraph=None):
    global _busy
    if _busy or scene is None or not hasattr(scene, "spatia"):
        return
    _busy = True
    try:
        tidy(scene)
    finally:
        _busy = False


def register_handlers() -> None:
    import bpy
    from bpy.app.handlers import persistent

    global _handler
    _handler = persistent(_on_depsgraph_update)
    if _handler not in bpy.app.handlers.depsgraph_update_post:
        bpy.app.handlers.depsgraph_update_post.append(_handler)


def unregister_handlers() -> None:
    import bpy

    for handler in list(bpy.app.handlers.depsgraph_update_post):
        if getattr(handler, "__name__", "") == "_on_depsgraph_update" and handler.__module__ == __name__:
            bpy.app.handlers.depsgraph_update_post.remove(handler)


_handler = None
