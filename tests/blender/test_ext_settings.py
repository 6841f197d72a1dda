"""Shot settings live in the .blend and survive a save and reload by name."""

import pytest

pytestmark = pytest.mark.bpy


def test_preset_choices_are_saved_by_name(addon, tmp_path):
    bpy = addon
    settings = bpy.context.scene.spatia
    assert (settings.generator, settings.quality, settings.vram) == ("preview", "standard", "auto")
    settings.generator, settings.quality, settings.seed = "wan-vace-1.3b", "final", 7
    settings.prompts.add().text = "a harbour at dawn"
    path = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_homefile(use_empty=True)  # a different file in between
    assert bpy.context.scene.spatia.seed == 0
    bpy.ops.wm.open_mainfile(filepath=str(path))
    settings = bpy.context.scene.spatia
    assert (settings.generator, settings.quality, settings.seed) == ("wan-vace-1.3b", "final", 7)
    assert [p.text for p in settings.prompts] == ["a harbour at dawn"]
