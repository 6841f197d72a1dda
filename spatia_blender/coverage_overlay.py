"""Coverage as bars along the bottom of the Timeline and Dope Sheet: how much of each frame
the memory already knows, so the artist sees where the model must invent.

The bars come from the scene's `spatia_coverage` F-curve, so they are saved with the .blend
and drawn again when it is reopened.
"""

import bpy

from . import payloads, scene_data

BAR_HEIGHT = 18  # pixels at UI scale 1
BOTTOM_MARGIN = 16  # above the horizontal scroll bar

_handle = None


def _frame_axis(region) -> tuple[float, float]:
    """(scale, offset) of the linear frame -> region x mapping of this view."""
    x0, _ = region.view2d.view_to_region(0.0, 0.0, clip=False)
    x1, _ = region.view2d.view_to_region(1000.0, 0.0, clip=False)
    return (x1 - x0) / 1000.0, float(x0)


def draw() -> None:
    context = bpy.context
    scene, region = context.scene, context.region
    if scene is None or region is None or not scene.spatia.show_coverage:
        return
    frames, coverage = scene_data.read_coverage_curve(scene)
    if not len(frames):
        return
    import gpu
    from gpu_extras.batch import batch_for_shader

    ui_scale = context.preferences.system.ui_scale
    verts, colours, indices = payloads.coverage_bars(
        frames, coverage, frame_to_x=_frame_axis(region), bottom=BOTTOM_MARGIN * ui_scale, height=BAR_HEIGHT * ui_scale)
    shader = gpu.shader.from_builtin("SMOOTH_COLOR")
    batch = batch_for_shader(shader, "TRIS", {"pos": verts, "color": colours}, indices=indices)
    gpu.state.blend_set("ALPHA")
    batch.draw(shader)
    gpu.state.blend_set("NONE")


def register():
    global _handle
    if _handle is None:
        _handle = bpy.types.SpaceDopeSheetEditor.draw_handler_add(draw, (), "WINDOW", "POST_PIXEL")


def unregister():
    global _handle
    if _handle is not None:
        bpy.types.SpaceDopeSheetEditor.draw_handler_remove(_handle, "WINDOW")
        _handle = None


def installed() -> bool:
    return _handle is not None
