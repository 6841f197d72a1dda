import importlib.util
import os

import numpy as np
import pytest
from hypothesis import settings

HAS_BPY = importlib.util.find_spec("bpy") is not None

# The suite draws the same examples on every run, so a red run is reproducible and a green
# one means something; SPATIA_HYPOTHESIS=explore draws fresh ones to hunt for new failures.
settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("explore" if os.environ.get("SPATIA_HYPOTHESIS") == "explore" else "repeatable")


def pytest_configure(config):
    """Run records (spatia.formats.runs) of the CLI and batch runs the tests make go to a folder of
    the test session, not the user's ~/.spatia/runs; services the tests start read the same one."""
    if "SPATIA_RUNS_DIR" not in os.environ:
        import tempfile

        os.environ["SPATIA_RUNS_DIR"] = tempfile.mkdtemp(prefix="spatia-runs-")


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
