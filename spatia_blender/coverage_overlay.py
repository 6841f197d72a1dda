"""Coverage as bars along the bottom of the Timeline and Dope Sheet: how much of each frame
the memory already knows, so the artist sees where the model must invent; above them, a
triangle with the object's name at each frame where a remembered object is expected to come
back into view.

The bars come from the scene's `spatia_coverage` F-curve and the marks from
`scene.spatia.object_entries`, so both are saved with the .blend and drawn again when it is
reopened.
"""

import bpy

from . import payloads, scene_data

BAR_HEIGHT = 18  # pixels at UI scale 1
BOTTOM_MARGIN = 16  # above the horizontal scroll bar
MARK_SIZE = 9  # re-entry triangles, just above the bars

_handle = None


def _frame_axis(region) -> tuple[float, float]:
    """(scale, offset) of the linear frame -> region x mapping of this view."""
    x0, _ = region.view2d.view_to_region(0.0, 0.0, clip=False)
    x1, _ = region.view2d.view_to_region(1000.0, 0.0, clip=False)
    return (x1 - x0) / 1000.0, float(x0)


def _triangles(verts, colours, indices) -> None:
    import gpu
    from gpu_extras.batch import batch_for_shader

    shader = gpu.shader.from_builtin("SMOOTH_COLOR")
    batch = batch_for_shader(shader, "TRIS", {"pos": verts, "color": colours}, indices=indices)
    gpu.state.blend_set("ALPHA")
    batch.draw(shader)
    gpu.state.blend_set("NONE")


def _draw_entries(scene, axis, bottom: float, ui_scale: float) -> None:
    import blf

    entries = scene.spatia.object_entries
    frames = [item.frame for item in entries]
    ids = [item.object_id for item in entries]
    size = MARK_SIZE * ui_scale
    _triangles(*payloads.entry_marks(frames, ids, frame_to_x=axis, bottom=bottom, size=size))
    font = 0
    blf.size(font, 11 * ui_scale)
    names = [f"{item.label} {item.object_id}" for item in entries]
    xs = [frame * axis[0] + axis[1] + size * 0.7 for frame in frames]
    fits = payloads.label_fits(xs, [blf.dimensions(font, name)[0] for name in names])
    for x, name, object_id, fit in zip(xs, names, ids, fits):
        if fit:
            blf.color(font, *payloads.object_colour(object_id))
            blf.position(font, x, bottom + 1.0 * ui_scale, 0)
            blf.draw(font, name)


def draw() -> None:
    context = bpy.context
    scene, region = context.scene, context.region
    if scene is None or region is None or not scene.spatia.show_coverage:
        return
    ui_scale = context.preferences.system.ui_scale
    axis = _frame_axis(region)
    frames, coverage = scene_data.read_coverage_curve(scene)
    if len(frames):
        _triangles(*payloads.coverage_bars(frames, coverage, frame_to_x=axis, bottom=BOTTOM_MARGIN * ui_scale,
                                           height=BAR_HEIGHT * ui_scale))
    if len(scene.spatia.object_entries):
        _draw_entries(scene, axis, (BOTTOM_MARGIN + BAR_HEIGHT + 2) * ui_scale, ui_scale)


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
