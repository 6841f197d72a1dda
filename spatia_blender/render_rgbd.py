"""Render a Blender camera's view as colour plus exact depth, with the camera it was seen by.

The depth comes from a second render in which every surface emits its own camera-space Z
(Camera Data > View Z Depth), one sample per pixel with a near-zero filter width, so each
pixel holds the depth at its centre: exactly the OpenCV pinhole depth our cameras use.
Background pixels are 0 (no surface). Scene settings are restored afterwards.

With `instances=True` the same depth render also writes each surface's object pass index
(Object Properties > Relations > Pass Index) into a second channel, giving an exact int32
instance map at the pixel centres (0 = an object whose pass index is 0, and the sky).
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

from .camera_export import camera_at_current_frame, check_camera
from .compat import ensure_node_tree

DEPTH_MATERIAL = "Spatia Depth Override"
DEPTH_INDEX_MATERIAL = "Spatia Depth Index Override"


@contextlib.contextmanager
def _temporarily(obj, **values):
    saved = {name: getattr(obj, name) for name in values}
    try:
        for name, value in values.items():
            setattr(obj, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(obj, name, value)


def remove_override_materials() -> None:
    """Remove the depth override materials once no render uses them (they exist only during one)."""
    import bpy

    for name in (DEPTH_MATERIAL, DEPTH_INDEX_MATERIAL):
        material = bpy.data.materials.get(name)
        if material is not None and material.users == 0:
            bpy.data.materials.remove(material)


def _depth_material(bpy):
    mat = bpy.data.materials.get(DEPTH_MATERIAL)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(DEPTH_MATERIAL)
    tree = ensure_node_tree(mat)
    nodes, links = tree.nodes, tree.links
    nodes.clear()
    camera_data = nodes.new("ShaderNodeCameraData")
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(camera_data.outputs["View Z Depth"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return mat


def _depth_index_material(bpy):
    """Emits (View Z Depth, Object Index, 0): the depth override plus each object's pass index."""
    mat = bpy.data.materials.get(DEPTH_INDEX_MATERIAL)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(DEPTH_INDEX_MATERIAL)
    tree = ensure_node_tree(mat)
    nodes, links = tree.nodes, tree.links
    nodes.clear()
    camera_data = nodes.new("ShaderNodeCameraData")
    object_info = nodes.new("ShaderNodeObjectInfo")
    combine = nodes.new("ShaderNodeCombineXYZ")
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(camera_data.outputs["View Z Depth"], combine.inputs["X"])
    links.new(object_info.outputs["Object Index"], combine.inputs["Y"])
    links.new(combine.outputs["Vector"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return mat


def _read_image(bpy, path: str) -> np.ndarray:
    """Pixels of an image file as float32 [H, W, C], top row first."""
    image = bpy.data.images.load(path, check_existing=False)
    try:
        width, height = image.size
        channels = image.channels
        buffer = np.empty(width * height * channels, dtype=np.float32)
        image.pixels.foreach_get(buffer)
    finally:
        bpy.data.images.remove(image)
    return buffer.reshape(height, width, channels)[::-1]


@contextlib.contextmanager
def _quiet_stdout():
    """Silence Blender's per-render log lines (printed by C code straight to fd 1) when
    running as a module; inside the Blender application its console is left alone."""
    import bpy

    if not bpy.app.background:
        yield
        return
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def _hidden_from_render(objects):
    saved = [(obj, obj.hide_render) for obj in objects]
    try:
        for obj, _ in saved:
            obj.hide_render = True
        yield
    finally:
        for obj, value in saved:
            obj.hide_render = value


def _output(scene, path: str, file_format: str, color_depth: str, stack: contextlib.ExitStack) -> None:
    settings = scene.render.image_settings
    stack.enter_context(_temporarily(settings, file_format=file_format))
    stack.enter_context(_temporarily(settings, color_depth=color_depth))
    stack.enter_context(_temporarily(scene.render, filepath=path, use_file_extension=False))


class RGBDPasses:
    """The two renders of `render_rgbd` (colour, then depth) as steps, so that an operator can run
    each one as Blender's own render job and keep the interface responsive:

        passes = RGBDPasses(scene, camera, samples=16, hide=[...])
        for index in range(len(passes)):
            with passes.setup(index):   # the scene settings of this pass, restored on exit
                bpy.ops.render.render(write_still=True, scene=scene.name)
        shot = passes.finish()          # also restores the scene; passes.close() alone on cancel
    """

    NAMES = ("colour", "depth")

    def __init__(self, scene, camera=None, *, samples: int = 16, engine: str = "CYCLES", hide=(),
                 instances: bool = False):
        self.instances = bool(instances)
        camera = camera if camera is not None else scene.camera
        check_camera(camera)
        if engine not in ("CYCLES", "BLENDER_WORKBENCH"):
            raise ValueError(f"engine must be CYCLES or BLENDER_WORKBENCH, got {engine!r}")
        self.scene, self.samples, self.engine = scene, samples, engine
        self.intrinsics, self.w2c, self.width, self.height = camera_at_current_frame(scene, camera)
        self._tmp = tempfile.TemporaryDirectory(prefix="spatia-rgbd-")
        self.paths = (os.path.join(self._tmp.name, "rgb.png"), os.path.join(self._tmp.name, "depth.exr"))
        self._outer = contextlib.ExitStack()  # for the whole shot: camera, hidden objects, engine
        try:
            self._outer.enter_context(_hidden_from_render(list(hide)))
            self._outer.enter_context(_temporarily(scene, camera=camera))
            self._outer.enter_context(_temporarily(scene.render, engine=engine))
            # the camera's view, not the sequencer's strips (the clips imported so far are there)
            self._outer.enter_context(_temporarily(scene.render, use_sequencer=False))
        except Exception:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.NAMES)

    def setup(self, index: int) -> contextlib.ExitStack:
        import bpy

        scene, stack = self.scene, contextlib.ExitStack()
        try:
            if index == 0:
                if self.engine == "CYCLES":
                    stack.enter_context(_temporarily(scene.cycles, samples=self.samples))
                _output(scene, self.paths[0], "PNG", "8", stack)
            else:
                view_layer = scene.view_layers[0] if bpy.context.view_layer is None else bpy.context.view_layer
                stack.enter_context(_temporarily(scene.render, engine="CYCLES"))
                stack.enter_context(_temporarily(scene.cycles, samples=1, use_denoising=False, filter_width=0.01,
                                                 use_adaptive_sampling=False))
                stack.enter_context(_temporarily(scene.view_settings, view_transform="Raw", look="None", exposure=0.0,
                                                 gamma=1.0))
                stack.enter_context(_temporarily(scene.render, film_transparent=False, use_compositing=False))
                stack.enter_context(_temporarily(scene, world=None))
                override = _depth_index_material(bpy) if self.instances else _depth_material(bpy)
                stack.enter_context(_temporarily(view_layer, material_override=override))
                _output(scene, self.paths[1], "OPEN_EXR", "32", stack)
        except Exception:
            stack.close()
            raise
        return stack

    def finish(self) -> dict:
        """The shot from the two rendered files; restores the scene."""
        import bpy

        try:
            for path, name in zip(self.paths, self.NAMES):
                if not os.path.isfile(path):
                    raise RuntimeError(f"the {name} render did not write {os.path.basename(path)}")
            rgb = _read_image(bpy, self.paths[0])
            depth_pass = _read_image(bpy, self.paths[1])
            depth = depth_pass[..., 0]
        finally:
            self.close()
        # PNG values are display-referred sRGB in [0, 1]; images load them unconverted as floats.
        rgb8 = np.clip(np.round(rgb[..., :3] * 255.0), 0, 255).astype(np.uint8)
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
        shot = {"rgb": rgb8, "depth": depth, "intrinsics": self.intrinsics, "w2c": self.w2c, "width": self.width,
                "height": self.height}
        if self.instances:
            index = np.nan_to_num(depth_pass[..., 1], nan=0.0, posinf=0.0, neginf=0.0)
            shot["instances"] = np.where(depth > 0, np.round(index), 0).astype(np.int32)
        return shot

    def close(self) -> None:
        """Restore the scene, remove the depth override materials and the temporary files (safe
        to call twice): nothing of the render is left in the artist's file."""
        self._outer.close()
        self._tmp.cleanup()
        remove_override_materials()


def render_rgbd(scene, camera=None, *, samples: int = 16, engine: str = "CYCLES", hide=(),
                instances: bool = False) -> dict:
    """Render `camera` (default: the scene camera) at the current frame, without the objects in
    `hide` (e.g. the memory object: the world must not see its own points). Blocking.

    Returns {"rgb": uint8 [H,W,3], "depth": float32 [H,W] (0 = background),
    "intrinsics": [4] pixels, "w2c": [4,4], "width", "height"}. `engine` is CYCLES or
    BLENDER_WORKBENCH for the colour; depth always comes from Cycles, which renders it exactly.
    `instances=True` adds "instances": int32 [H,W], each pixel's object pass index (0 = background).
    """
    import bpy

    passes = RGBDPasses(scene, camera, samples=samples, engine=engine, hide=hide, instances=instances)
    try:
        for index in range(len(passes)):
            with passes.setup(index), _quiet_stdout():
                bpy.ops.render.render(write_still=True, scene=scene.name)
    except BaseException:
        passes.close()
        raise
    return passes.finish()
