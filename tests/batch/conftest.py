import subprocess
import sys
from pathlib import Path

import pytest

BUILDER = Path(__file__).with_name("shot_blends.py")


def build_blends(folder: Path, *specs: str) -> Path:
    """Shot .blend files built in a fresh process (see shot_blends.py): "name" or "name:broken"."""
    subprocess.run([sys.executable, str(BUILDER), str(folder), *specs], check=True, capture_output=True, timeout=120)
    return folder


@pytest.fixture(scope="session")
def shot_blends(tmp_path_factory):
    """alpha.blend and beta.blend (perspective cameras) and gamma.blend (orthographic: cannot be generated)."""
    pytest.importorskip("bpy")
    return build_blends(tmp_path_factory.mktemp("shots"), "alpha", "beta", "gamma:broken")
