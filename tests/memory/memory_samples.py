"""A small memory with every field varied, shared by the snapshot and version-store tests."""

import numpy as np
import torch

from spatia.engine.memory import SpatialMemory


def sample_memory(count: int = 50, seed: int = 0) -> SpatialMemory:
    rng = np.random.default_rng(seed)
    memory = SpatialMemory.from_points(
        rng.normal(size=(count, 3)), rng.integers(0, 256, (count, 3)), rng.uniform(0.1, 5, count),
        voxel_size=0.05, first_id=7,
    )
    return memory.replace(
        first_frame=torch.from_numpy(rng.integers(0, 10, count).astype(np.int32)),
        last_frame=torch.from_numpy(rng.integers(10, 20, count).astype(np.int32)),
        side=torch.from_numpy(rng.integers(0, 6, count).astype(np.uint8)),
    )
