"""Exceptions raised by the spatial memory package."""

from __future__ import annotations


class MemoryFormatError(ValueError):
    """Arrays or arguments handed to the memory are malformed; the message names the field."""


class VoxelRangeError(MemoryFormatError):
    """Points span more voxels than a packed voxel key can address."""


class MemoryIntegrityError(MemoryFormatError):
    """A stored snapshot is truncated, tampered with or of an unknown schema."""
