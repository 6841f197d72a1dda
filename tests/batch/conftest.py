import pytest
from shot_blends import build_blends


@pytest.fixture(scope="session")
def shot_blends(tmp_path_factory):
    """alpha.blend and beta.blend (perspective cameras) and gamma.blend (orthographic: cannot be generated)."""
    pytest.importorskip("bpy")
    return build_blends(tmp_path_factory.mktemp("shots"), "alpha", "beta", "gamma:broken")
