"""The live denoising preview in Blender: the newest preview sheet a job sent, loaded as the image
"Spatia Preview" and shown behind the scene camera while the clip denoises (the sidebar says
which step it is). Main thread only; the worker thread only writes the PNG file."""

from __future__ import annotations

import bpy

IMAGE_NAME = "Spatia Preview"


def show(scene, path: str, step: int, steps: int) -> None:
    image = bpy.data.images.get(IMAGE_NAME)
    if image is None or bpy.path.abspath(image.filepath) != path:
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.load(path, check_existing=False)
        image.name = IMAGE_NAME
    else:
        image.reload()
    scene.spatia.preview_note = f"denoising preview: step {step} of {steps}"
    camera = scene.camera
    if camera is None or camera.type != "CAMERA":
        return
    camera.data.show_background_images = True
    for background in camera.data.background_images:
        if background.image == image:
            break
    else:
        background = camera.data.background_images.new()
        background.image = image
        background.alpha = 0.9
    background.show_background_image = True


def hide(scene) -> None:
    """The clip arrived: the preview steps aside for it."""
    image = bpy.data.images.get(IMAGE_NAME)
    scene.spatia.preview_note = ""
    camera = scene.camera
    if image is None or camera is None or camera.type != "CAMERA":
        return
    for background in camera.data.background_images:
        if background.image == image:
            background.show_background_image = False
