"""Spatia for Blender: direct generative video with your camera and a persistent world.

Submodules that touch Blender are imported in register(), so the pure modules of this
package (directing, payloads, plan, presets, safetensors_io, client, tasks) can be used
without Blender. The camera math is the neutral package spatia_geometry, shared with the
backend and bundled in the extension's zip as a wheel.
"""

_modules = []


def _submodules():
    from . import coverage_overlay, operators, preferences, properties, shot_files, ui

    return [properties, preferences, operators, ui, coverage_overlay, shot_files]


def register():
    global _modules
    if _modules:  # registered already
        return
    modules = _submodules()
    from . import runtime

    runtime.user_dir()  # resolve the user folder on the main thread
    done = []
    try:
        for module in modules:
            module.register()
            done.append(module)
    except Exception:
        for module in reversed(done):
            module.unregister()
        raise
    _modules = modules


def unregister():
    global _modules
    from . import runtime

    runtime.shutdown()
    for module in reversed(_modules):
        module.unregister()
    _modules = []
