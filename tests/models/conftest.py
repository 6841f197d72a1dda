import huggingface_hub.constants
import pytest


@pytest.fixture(autouse=True)
def offline_empty_model_cache(tmp_path, monkeypatch):
    """No network, an empty Hugging Face cache and no user model folder, whatever this machine has."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SPATIA_MODELS_DIR", raising=False)
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache
