"""The points a generator is given: the memory as the authors' map build leaves it.

The reference builds its memory by back-projecting every pixel of the frames so far and
averaging them per voxel of MAP_VOXEL (Open3D's voxel_down_sample, 0.01 m), saved as a PLY
with 8-bit colours; its renderer then downsamples that map again (0.01 + 0.005 x round). The
memory here keeps the user's images pixel for pixel (pinned) and generated frames in cells about
a pixel's footprint (at least the world's voxel), so averaging it per MAP_VOXEL gives the
generator the map the model was trained on: at round 0, the reference's density.
"""

from __future__ import annotations

import numpy as np
import torch

from spatia.engine.render_control import voxel_downsample

MAP_VOXEL = 0.01  # metres: the reference's map_voxel_size


def map_points(memory, voxel_size: float = MAP_VOXEL) -> tuple[np.ndarray, np.ndarray]:
    """(xyz float32 [M,3], rgb uint8 [M,3]): the memory's points averaged per voxel of
    `voxel_size`, colours rounded to 8 bits as the reference's PLY stores them."""
    xyz, rgb = memory.xyz, memory.rgb
    if len(xyz) == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    xyz, colour = voxel_downsample(xyz, rgb, voxel_size)
    rgb8 = torch.round(colour * 255).clamp_(0, 255).to(torch.uint8)
    return xyz.detach().cpu().numpy().astype(np.float32, copy=False), rgb8.cpu().numpy()


__all__ = ["MAP_VOXEL", "map_points"]
