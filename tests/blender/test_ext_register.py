"""Registration, operators, preferences and the sidebar panels' draw code in every state."""

import pytest

pytestmark = pytest.mark.bpy

OPERATORS = ["test_connection", "backend_start", "backend_stop", "backend_log", "world_from_render", "world_from_image",
             "world_refresh", "memory_import", "memory_revert", "memory_push", "prompt_add", "prompt_remove",
             "camera_path", "coverage", "generate", "follow", "resume", "cancel", "objects_fetch", "object_forget"]
UNDOABLE = ["prompt_add", "prompt_remove", "camera_path", "coverage"]
# they change the backend's state: a redo (Adjust Last Operation) would do it again; their Blender
# changes get an undo step of their own when they land
NO_REDO = ["world_from_render", "world_from_image", "memory_import", "memory_revert", "memory_push", "generate",
           "follow", "resume", "cancel", "backend_start", "backend_stop", "objects_fetch", "object_forget"]


def _registered(bpy):
    return hasattr(bpy.types.Scene, "spatia") and hasattr(bpy.types, "SPATIA_PT_main")


def test_register_unregister_reregister(addon):
    bpy = addon
    import addon_utils

    import spatia_blender
    from spatia_blender import coverage_overlay

    assert _registered(bpy) and coverage_overlay.installed()
    for name in OPERATORS:
        op = getattr(bpy.ops.spatia, name)
        rna = op.get_rna_type()
        assert rna.name, name  # a label: searchable with F3
        assert rna.description, name
    for name in UNDOABLE:
        cls = getattr(bpy.types, "SPATIA_OT_" + name)
        assert {"REGISTER", "UNDO"} <= set(cls.bl_options), name
    for name in NO_REDO:
        cls = getattr(bpy.types, "SPATIA_OT_" + name)
        assert "UNDO" not in getattr(cls, "bl_options", set()), name
    assert bpy.context.preferences.addons["spatia_blender"].preferences.backend_url.startswith("http://127.0.0.1")
    # every operator is in the Render > Spatia menu, where menu search (F3) finds it
    from spatia_blender import ui

    log = []
    ui.SPATIA_MT_menu.draw(type("M", (), {"layout": FakeLayout(bpy, log)})(), bpy.context)
    assert {entry[1] for entry in log if entry[0] == "operator"} >= {
        "spatia." + name for name in OPERATORS if not name.startswith("prompt_")}
    assert ui._menu_entry in bpy.types.TOPBAR_MT_render._dyn_ui_initialize()

    addon_utils.disable("spatia_blender", default_set=True, handle_error=None)
    assert not _registered(bpy) and not coverage_overlay.installed()
    assert ui._menu_entry not in bpy.types.TOPBAR_MT_render._dyn_ui_initialize()
    assert not hasattr(bpy.ops.spatia, "generate") or "generate" not in dir(bpy.ops.spatia)
    spatia_blender.register()  # directly, as a script would
    assert _registered(bpy)
    spatia_blender.register()  # idempotent
    spatia_blender.unregister()
    assert not _registered(bpy)
    addon_utils.enable("spatia_blender", default_set=True, handle_error=None)
    assert _registered(bpy)
    assert bpy.types.TOPBAR_MT_render._dyn_ui_initialize().count(ui._menu_entry) == 1
    scene = bpy.context.scene
    scene.spatia.prompts.add().text = "a room"
    assert bpy.ops.spatia.prompt_add(text="later") == {"FINISHED"}
    assert [p.text for p in scene.spatia.prompts] == ["a room", "later"]
    assert bpy.ops.spatia.prompt_remove() == {"FINISHED"}
    assert [p.text for p in scene.spatia.prompts] == ["a room"]


def test_pure_modules_do_not_need_blender():
    import subprocess
    import sys

    code = ("import sys; sys.modules['bpy'] = None\n"
            "import spatia_blender, spatia_geometry.camera_math, spatia_blender.payloads, spatia_blender.plan, "
            "spatia_blender.presets, spatia_blender.safetensors_io, spatia_blender.client, spatia_blender.tasks, "
            "spatia_blender.backend_process, spatia_blender.directing\n"
            "assert 'torch' not in sys.modules and 'spatia' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_extension_never_imports_torch_or_backend():
    import ast
    from pathlib import Path

    import spatia_blender

    paths = list(Path(spatia_blender.__file__).parent.rglob("*.py"))
    assert any(path.parent.name == "operators" for path in paths)
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                assert top not in {"torch", "spatia", "safetensors", "PIL", "scipy"}, (path.name, name)


class FakeLayout:
    """Records what the draw code asks for and checks it exists."""

    def __init__(self, bpy, log):
        self.bpy, self.log = bpy, log
        self.alert = self.enabled = self.active = False
        self.scale_y = 1.0

    def _child(self, *args, **kwargs):
        return FakeLayout(self.bpy, self.log)

    row = column = box = split = column_flow = _child

    def label(self, text="", icon="NONE", **kwargs):
        self.log.append(("label", text, self.alert))

    def separator(self, **kwargs):
        pass

    def menu(self, idname, **kwargs):
        assert hasattr(self.bpy.types, idname), idname

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, name
        self.log.append(("prop", name))

    def prop_search(self, data, name, search_data, search_name, **kwargs):
        assert name in data.bl_rna.properties and search_name in search_data.bl_rna.properties
        self.log.append(("prop", name))

    def operator(self, idname, **kwargs):
        category, name = idname.split(".")
        rna = getattr(getattr(self.bpy.ops, category), name).get_rna_type()
        self.log.append(("operator", idname))

        class Props:
            def __setattr__(self, key, value):
                assert key in rna.properties, (idname, key)
        return Props()

    def template_list(self, list_type, list_id, data, name, active_data, active_name, **kwargs):
        assert hasattr(self.bpy.types, list_type), list_type
        assert name in data.bl_rna.properties and active_name in active_data.bl_rna.properties
        self.log.append(("list", list_type))

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0
        self.log.append(("progress", text))


def _draw_all(bpy, context):
    from spatia_blender import ui

    log = []
    for panel in ui.PANELS:
        assert panel.poll(context)
        fake_self = type("P", (), {"layout": FakeLayout(bpy, log)})()
        panel.draw(fake_self, context)
    return log


def test_panels_draw_in_every_state(addon):
    bpy = addon
    from spatia_blender import runtime, ui

    context = bpy.context
    settings = context.scene.spatia

    runtime.connection.set_error("http://127.0.0.1:1", "cannot reach the Spatia backend")
    assert ui.panel_state(settings) == "disconnected"
    log = _draw_all(bpy, context)
    assert ("operator", "spatia.test_connection") in log and ("operator", "spatia.generate") in log
    assert ("label", "cannot reach the Spatia backend", True) in log
    assert ("list", "SPATIA_UL_prompts") in log

    runtime.connection.set_ok("http://127.0.0.1:1", {"version": "0.1", "api_version": 1, "device": "cuda",
                                                    "gpu_name": "RTX", "vram_free_gb": 20.0})
    settings.world_id = "w1"
    settings.memory_version = 2
    for v in (1, 2):
        settings.versions.add().version = v
    settings.clips.add().name = "Spatia j1"
    settings.prompts.add().text = "a room"
    assert ui.panel_state(settings) == "idle"
    log = _draw_all(bpy, context)
    labels = [entry[1] for entry in log if entry[0] == "label"]
    assert any("RTX" in text and "20.0 GB" in text for text in labels)
    assert ("list", "SPATIA_UL_versions") in log and ("list", "SPATIA_UL_clips") in log
    assert ("operator", "spatia.memory_revert") in log and ("operator", "spatia.cancel") not in log
    assert any("round" in text for text in labels)

    settings.job_id, settings.job_status, settings.job_stage, settings.job_fraction = "j2", "running", "round 1/2", 0.25
    assert ui.panel_state(settings) == "running"
    log = _draw_all(bpy, context)
    assert ("operator", "spatia.cancel") in log and ("operator", "spatia.generate") not in log
    assert any(entry[0] == "progress" and "round 1/2" in entry[1] and "25%" in entry[1] for entry in log)

    settings.job_status, settings.job_error = "failed", "RuntimeError: out of memory"
    assert ui.panel_state(settings) == "failed"
    log = _draw_all(bpy, context)
    assert ("operator", "spatia.generate") in log and ("operator", "spatia.follow") in log
    assert any(entry[0] == "label" and "out of memory" in entry[1] for entry in log)
    assert ("operator", "spatia.objects_fetch") in log and ("prop", "condition") not in log

    # an object's Empty active: its switches, what drives it, Forget; a deleted one is counted
    empty = bpy.data.objects.new("car 3", None)
    context.scene.collection.objects.link(empty)
    empty.spatia_object.object_id, empty.spatia_object.label, empty.spatia_object.state = 3, "car", "parked"
    settings.objects_world, settings.objects_version = "w1", 4
    for object_id in (3, 5):
        settings.known_objects.add().object_id = object_id
    context.view_layer.objects.active = empty
    log = _draw_all(bpy, context)
    labels = [entry[1] for entry in log if entry[0] == "label"]
    assert ("prop", "condition") in log and ("prop", "reference") in log and ("operator", "spatia.object_forget") in log
    assert "2 objects, version 4; 1 deleted: forgotten with the next shot" in labels
    assert any(text.startswith("unkeyed") for text in labels)
    twin = empty.copy()  # Shift+D
    context.scene.collection.objects.link(twin)
    context.view_layer.objects.active = twin
    labels = [entry[1] for entry in _draw_all(bpy, context) if entry[0] == "label"]
    assert "a duplicate: becomes a copy of object 3 with the next shot" in labels

    from spatia_blender.preferences import draw_preferences

    log = []
    draw_preferences(FakeLayout(bpy, log), context.preferences.addons["spatia_blender"].preferences)
    assert ("operator", "spatia.backend_start") in log and ("prop", "python_path") in log


def test_plan_text_flags_missing_prompts(addon):
    bpy = addon
    from spatia_blender import ui

    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 265  # 121 + 72 + 72 -> 3 rounds
    settings = scene.spatia
    for text in ("a", "b"):
        settings.prompts.add().text = text
    text, ok = ui.plan_text(scene, settings)
    assert "265 frames" in text and "3 rounds" in text and not ok
    assert text.endswith("needs 3 prompts (one per round; 2 given) or a single prompt for all")
    settings.prompts.add().text = "c"
    assert ui.plan_text(scene, settings)[1]
    settings.prompts.clear()
    scene.frame_start, scene.frame_end = 1, 100  # one round, no prompt yet
    text, ok = ui.plan_text(scene, settings)
    assert text.endswith("1 round - needs a prompt") and not ok


def test_offline_operators_fail_clearly(addon):
    bpy = addon
    import socket

    from spatia_blender import runtime

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefs = bpy.context.preferences.addons["spatia_blender"].preferences
    prefs.backend_url = f"http://127.0.0.1:{port}"
    with pytest.raises(RuntimeError, match="cannot reach the Spatia backend"):
        bpy.ops.spatia.test_connection()
    assert not runtime.connection.connected and "cannot reach" in runtime.connection.error
    prefs.backend_url = "http://203.0.113.7:8765"  # not loopback, online access off in the bpy module
    assert not bpy.app.online_access
    with pytest.raises(RuntimeError, match="online access"):
        bpy.ops.spatia.test_connection()
    # generate with no camera is refused by poll; with a world but no prompt, a clear error
    data = bpy.data.cameras.new("cam")
    cam = bpy.data.objects.new("cam", data)
    bpy.context.scene.collection.objects.link(cam)
    bpy.context.scene.camera = cam
    bpy.context.scene.spatia.world_id = "w"
    bpy.context.scene.spatia.world_frame_start = bpy.context.scene.frame_start
    with pytest.raises(RuntimeError, match="prompt"):
        bpy.ops.spatia.generate()
    data.type = "ORTHO"
    bpy.context.scene.spatia.prompts.add().text = "x"
    with pytest.raises(RuntimeError, match="orthographic"):
        bpy.ops.spatia.generate()


def test_backend_log_opens_in_text_editor(addon, tmp_path):
    bpy = addon
    from spatia_blender import runtime

    path = runtime.log_path()
    with open(path, "w") as handle:
        handle.write("INFO started\nERROR something broke\n")
    assert bpy.ops.spatia.backend_log() == {"FINISHED"}
    text = bpy.data.texts["Spatia backend log"]
    assert "something broke" in text.as_string()


def test_every_operator_in_object_and_edit_mode_refuses_or_runs_without_a_traceback(addon):
    """With no backend, no world and a scene that lacks what each operator needs, in Object Mode
    and in Edit Mode (of a mesh and of the memory object): every operator is either greyed out
    with a reason (poll) or ends with a message, never a Python traceback."""
    bpy = addon
    import socket

    import numpy as np
    from spatia_blender import memory_object

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bpy.context.preferences.addons["spatia_blender"].preferences.backend_url = f"http://127.0.0.1:{port}"
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    memory_object.import_memory(scene, np.zeros((4, 3), np.float32), np.zeros((4, 3), np.uint8), np.arange(4),
                                radius=0.01, version=1, world="w")
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.active_object
    outcomes = []
    for mode, active in (("OBJECT", cube), ("EDIT", cube), ("EDIT", bpy.data.objects[memory_object.OBJECT_NAME])):
        bpy.ops.object.mode_set(mode="OBJECT")
        bpy.context.view_layer.objects.active = active
        active.select_set(True)
        bpy.ops.object.mode_set(mode=mode)
        for name in OPERATORS:
            if name == "backend_start":  # would start a real backend process
                continue
            op = getattr(bpy.ops.spatia, name)
            if not op.poll():
                outcomes.append((mode, name, "greyed out"))
                continue
            try:
                result = op()
                outcomes.append((mode, name, str(result)))
            except RuntimeError as err:  # Blender's way of raising an operator's reported error
                message = str(err)
                assert "Traceback" not in message and message.strip(), (mode, name, message)
                outcomes.append((mode, name, message.splitlines()[0][:60]))
        assert bpy.context.mode.startswith(mode if mode == "OBJECT" else "EDIT"), (mode, name, bpy.context.mode)
    bpy.ops.object.mode_set(mode="OBJECT")
    assert len(outcomes) == 3 * (len(OPERATORS) - 1)
