"""`spatia demo`: the whole loop on a built-in Blender scene (run.py), and that scene (scene.py)."""
