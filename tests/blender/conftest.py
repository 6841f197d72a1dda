import pytest


@pytest.fixture
def addon(tmp_path, monkeypatch):
    """A factory-fresh Blender with the extension enabled through Blender's add-on system;
    user data goes to a temporary folder."""
    bpy = pytest.importorskip("bpy")
    import addon_utils

    monkeypatch.setenv("SPATIA_BLENDER_USER_DIR", str(tmp_path / "user"))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    module = addon_utils.enable("spatia_blender", default_set=True, handle_error=None)
    assert module is not None
    from spatia_blender import runtime

    runtime.connection.set_error("", "")
    yield bpy
    addon_utils.disable("spatia_blender", default_set=True, handle_error=None)
