"""Small differences between the Blender versions the extension supports (4.2 LTS to 5.0),
kept in one place so the rest of the code has a single path."""

from __future__ import annotations


def blend_relative_path_options() -> set:
    """Options for a path property that may hold a `//` path (declared from Blender 4.5 on)."""
    import bpy

    supported = "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties
    return {"PATH_SUPPORTS_BLEND_RELATIVE"} if supported else set()


def _has_property(struct, name: str) -> bool:
    return name in struct.bl_rna.properties


def strips(editor):
    """The sequencer's top-level strips: `SequenceEditor.strips` from Blender 4.4, `sequences` before."""
    return editor.strips if _has_property(editor, "strips") else editor.sequences


def all_strips(editor):
    """Every strip, inside meta strips too (`strips_all` from 4.4, `sequences_all` before)."""
    return editor.strips_all if _has_property(editor, "strips_all") else editor.sequences_all


def poll_message(cls, text: str) -> bool:
    """Say why an operator is greyed out (Blender's tooltip); returns False for use in poll()."""
    setter = getattr(cls, "poll_message_set", None)
    if setter is not None:
        setter(text)
    return False


def ensure_node_tree(material):
    """A material's node tree: Blender 5 always has one, earlier versions create it on use_nodes."""
    if material.node_tree is None:
        material.use_nodes = True
    return material.node_tree


def action_fcurves(id_data) -> list:
    """The F-curves animating `id_data` (an object, a scene): those of the ID's slot of a layered
    action from Blender 4.4 on (an action may animate several IDs, and 5.0 has no
    `Action.fcurves`), a legacy action's own F-curves before."""
    animation = getattr(id_data, "animation_data", None)
    action = animation.action if animation is not None else None
    if action is None:
        return []
    if not _has_property(animation, "action_slot"):
        return list(action.fcurves)
    from bpy_extras import anim_utils

    channelbag = anim_utils.action_get_channelbag_for_slot(action, animation.action_slot)
    return list(channelbag.fcurves) if channelbag is not None else []
