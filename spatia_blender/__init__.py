"""Spatia for Blender: direct generative video with your camera and a persistent world.

Submodules that touch Blender are imported in register(), so the pure-math modules of
this package (camera_math) can be used without Blender.
"""

_modules = []


def register():
    pass


def unregister():
    pass
