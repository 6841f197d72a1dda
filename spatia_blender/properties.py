"""Everything a shot needs lives on the Scene (`scene.spatia`), so a saved .blend reproduces
its shots in batch. Job progress is kept here too (written only on the main thread)."""

from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty,
                       PointerProperty, StringProperty)

from . import plan, presets, runtime
from .compat import blend_relative_path_options

_RELATIVE = blend_relative_path_options()

# Blender keeps only pointers to enum item strings: the lists must outlive the callback.
_ENUM_CACHE: dict[str, list] = {}


def _search(kind: str):
    """Suggestions for a preset-name field. Names are stored as strings (not enum positions),
    so a .blend keeps its choice whatever presets folder it is opened with."""
    def search(self, context, edit_text):
        return [(name, description) for name, _label, description in presets.preset_items(kind, runtime.presets_dir())
                if edit_text.lower() in name.lower()]
    return search


def _camera_path_items(self, context):
    found = presets.camera_presets(runtime.presets_dir())
    items = [(key, value.get("name", key), value.get("description", "")) for key, value in found.items()]
    _ENUM_CACHE["camera_path"] = items
    return items


class SpatiaPrompt(bpy.types.PropertyGroup):
    text: StringProperty(name="Prompt", description="What the clip shows (one per round, or one for all)")


class SpatiaVersion(bpy.types.PropertyGroup):
    version: IntProperty(name="Version")
    parent: IntProperty(name="Parent", default=-1)
    points: IntProperty(name="Points")
    message: StringProperty(name="Message")
    created: StringProperty(name="Created")


class SpatiaClip(bpy.types.PropertyGroup):
    job_id: StringProperty(name="Job")
    frame_start: IntProperty(name="Start")
    frame_count: IntProperty(name="Frames")
    video: StringProperty(name="Video", subtype="FILE_PATH", options=_RELATIVE)
    frames_dir: StringProperty(name="Image sequence", subtype="DIR_PATH", options=_RELATIVE)
    memory_version: IntProperty(name="Memory version", default=-1)
    prompt: StringProperty(name="Prompt")


class SpatiaWorldEntry(bpy.types.PropertyGroup):
    """A world id on the backend (its `name`), for the world field's search list."""


class SpatiaKnownObject(bpy.types.PropertyGroup):
    """An object of the world as the last fetch listed it (an id the scene knows)."""

    object_id: IntProperty(name="Object")
    label: StringProperty(name="Label")


class SpatiaObjectEntry(bpy.types.PropertyGroup):
    """A frame where a remembered object is expected to come back into view."""

    frame: IntProperty(name="Frame")
    object_id: IntProperty(name="Object")
    label: StringProperty(name="Label")


class SpatiaObjectSettings(bpy.types.PropertyGroup):
    """On an Empty that stands for an object of the world (or on its child points, `is_points`).
    Shift+D copies it, which is how a duplicate is recognised as a copy of the object."""

    object_id: IntProperty(name="Object id", default=0, min=0, description="The world's object this Empty stands for")
    label: StringProperty(name="Label")
    objects_version: IntProperty(name="Objects version", default=-1, description="The objects version it was fetched from")
    copy_of: IntProperty(name="Copy of", default=0, min=0,
                         description="The object this Empty is a copy of, until a generation makes the copy")
    state: StringProperty(name="State", description="moving or parked, as the backend last saw it")
    points: IntProperty(name="Points")
    last_seen: IntProperty(name="Last seen", description="Scene frame it was last seen in")
    condition: BoolProperty(name="Condition", default=True,
                            description="Render the object's points into the conditioning where it is predicted")
    reference: BoolProperty(name="Reference", default=True,
                            description="Offer the object's best crop to the generator as a reference image")
    is_points: BoolProperty(name="Object points", default=False, options={"HIDDEN"})


class SpatiaSceneSettings(bpy.types.PropertyGroup):
    # world
    world_id: StringProperty(name="World", description="The backend world this scene generates into")
    world_name: StringProperty(name="World name", default="", description="Name for a new world (default: the scene's)")
    world_frames: IntProperty(name="World frames", description="Frames the world has generated so far")
    world_frame_start: IntProperty(name="First frame", default=1,
                                   description="Scene frame of the world's first frame (the frame it was initialised at)")
    memory_version: IntProperty(name="Memory version", default=-1)
    voxel_size: FloatProperty(name="Voxel size", default=0.02, min=0.001, max=1.0, unit="LENGTH",
                              description="Memory resolution of a new world (metres)")
    point_radius: FloatProperty(name="Point size", default=0.6, min=0.05, max=4.0,
                                description="Drawn point radius as a fraction of the voxel size")
    versions: CollectionProperty(type=SpatiaVersion)
    version_index: IntProperty(name="Memory version", default=0)
    clips: CollectionProperty(type=SpatiaClip)
    clip_index: IntProperty(name="Clip", default=0)
    known_worlds: CollectionProperty(type=SpatiaWorldEntry)
    data_dir: StringProperty(name="Shot data", subtype="DIR_PATH", default=runtime.DEFAULT_SHOT_DIR, options=_RELATIVE,
                             description="Folder for this shot's clips, frames, memory cache and shot files; `//` is the "
                                         ".blend's folder, so the data travels with it (until the .blend is first saved, "
                                         "the extension's user folder holds it)")

    # shot
    prompts: CollectionProperty(type=SpatiaPrompt)
    prompt_index: IntProperty(default=0)
    negative_prompt: StringProperty(name="Negative prompt")
    dynamic_prompts: StringProperty(name="Dynamic objects", description='Things that move, kept out of the memory, '
                                    'comma-separated (e.g. "person, car")')
    generator: StringProperty(name="Generator", default=presets.BUILTIN["generator"][0][0], search=_search("generator"),
                              description="Video generator preset")
    quality: StringProperty(name="Quality", default=presets.BUILTIN["quality"][0][0], search=_search("quality"),
                            description="Quality preset: steps, resolution, frames per round")
    vram: StringProperty(name="VRAM", default=presets.BUILTIN["vram"][0][0], search=_search("vram"),
                         description="How weights are placed on the GPU")
    use_seed: BoolProperty(name="Own seed", default=False,
                           description="Use the seed below; off: the generator's own (spatia-5b: the authors' 20917)")
    seed: IntProperty(name="Seed", default=0, min=0, description="The seed of every round, when Own seed is on")
    steps: IntProperty(name="Steps", default=0, min=0, max=1000, description="Denoising steps (0: the quality preset's)")
    guidance: FloatProperty(name="Guidance", default=0.0, min=0.0, max=100.0, description="Guidance scale (0: the preset's)")
    use_scene_range: BoolProperty(name="Scene frame range", default=True,
                                  description="Generate the scene's frame range; off: the range below")
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=121)
    first_round_frames: IntProperty(name="First round", default=plan.FIRST_ROUND_FRAMES, min=2, max=10000)
    round_frames: IntProperty(name="Later rounds", default=plan.ROUND_FRAMES, min=2, max=10000)
    overlap: IntProperty(name="Overlap", default=plan.OVERLAP, min=0, max=9999)
    camera_path: EnumProperty(name="Camera path", items=_camera_path_items)

    # job (written by the main thread as the backend reports)
    job_id: StringProperty(name="Job")
    job_status: StringProperty(name="Status", default="")
    job_stage: StringProperty(name="Stage", default="")
    job_fraction: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    preview_note: StringProperty(name="Preview", default="",
                                 description="Which denoising step the preview behind the camera shows")
    job_error: StringProperty(name="Error", default="")
    status: StringProperty(name="Last message", default="")

    # coverage
    coverage_mean: FloatProperty(name="Mean coverage", default=-1.0, subtype="FACTOR")
    coverage_min: FloatProperty(name="Lowest coverage", default=-1.0, subtype="FACTOR")
    coverage_min_frame: IntProperty(name="At frame")
    show_coverage: BoolProperty(name="Show in Timeline", default=True,
                                description="Draw the coverage of each frame as bars in the Timeline and Dope Sheet")
    object_entries: CollectionProperty(type=SpatiaObjectEntry)

    # objects of the world (docs/objects.md)
    object_memory: BoolProperty(name="Object memory", default=True,
                                description="Remember moving objects and render them where they are predicted")
    objects_world: StringProperty(name="Objects of world", description="The world the object Empties were fetched from")
    objects_version: IntProperty(name="Objects version", default=-1)
    objects_up: FloatVectorProperty(name="Up", size=3, default=(0.0, 0.0, 1.0), description="The world's up axis")
    objects_next_id: IntProperty(name="Next object id", default=1, min=1,
                                 description="Above every object id seen: where new copies' ids start")
    known_objects: CollectionProperty(type=SpatiaKnownObject)

    def frame_range(self, scene) -> tuple[int, int]:
        if self.use_scene_range:
            return scene.frame_start, scene.frame_end
        return self.frame_start, self.frame_end

    def rounds_dict(self) -> dict:
        return {"first_round_frames": self.first_round_frames, "round_frames": self.round_frames, "overlap": self.overlap}


CLASSES = (SpatiaPrompt, SpatiaVersion, SpatiaClip, SpatiaWorldEntry, SpatiaKnownObject, SpatiaObjectEntry,
           SpatiaObjectSettings, SpatiaSceneSettings)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.spatia = PointerProperty(type=SpatiaSceneSettings)
    bpy.types.Object.spatia_object = PointerProperty(type=SpatiaObjectSettings)


def unregister():
    del bpy.types.Object.spatia_object
    del bpy.types.Scene.spatia
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
