import importlib.util

import numpy as np
import pytest

HAS_BPY = importlib.util.find_spec("bpy") is not None


def pytest_collection_modifyitems(config, items):
    import torch

    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    skip_bpy = pytest.mark.skip(reason="needs the bpy module (pip install bpy==5.0.1)")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
        if "bpy" in item.keywords and not HAS_BPY:
            item.add_marker(skip_bpy)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
