"""Spatia: camera-controlled video generation with an updatable 3D spatial memory."""

__version__ = "0.1.0"
